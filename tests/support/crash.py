"""Crash injection for the crash-safety matrix (tests/integration/test_crash_safety.py and
test_crash_matrix.py): a fault at the n-th AWS write (botocore level, so boto3 and pynamodb
alike) or at the n-th HTTP request to a provider (``requests.Session.send``, the transport
of the REST providers, of google-auth and of msal), and the mirror's integrity checks.

A :class:`Point` names one fault:

* ``aws before`` / ``aws after``: the process dies just before the n-th AWS write is sent,
  or right after it succeeded (the write is done, the step never learns it);
* ``http before`` / ``http after``: the process dies before the n-th provider request is
  sent, or after its answer was read (between that call and the next step);
* ``http refused``: the provider becomes unreachable from the n-th request on (every request
  raises ``requests.ConnectionError``, as a dropped network does): the run ends with the
  provider's typed connection error, and what it stored must be consistent.

A crash (``before``/``after``) is a kill: once it fired, every later AWS call and provider
request of the run raises :class:`Crash` too, so no ``finally`` gets to clean up (a lock
held stays held until its lease runs out, as after a real kill).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.client
import pytest
import requests

from mailsync.config import get_settings
from mailsync.store import keys
from mailsync.store.models import MessageItem, ThreadItem
from tests.support.accounts import mirror

WRITES = frozenset(
    {
        "PutItem",
        "BatchWriteItem",
        "DeleteItem",
        "UpdateItem",
        "TransactWriteItems",
        "PutObject",
        "DeleteObjects",
        "DeleteObject",
    }
)
AWS_MODES = ("before", "after")
HTTP_MODES = ("before", "after", "refused")


class Crash(Exception):
    """The process died here (raised by the injection, never by our code)."""


@dataclass(frozen=True, order=True)
class Point:
    layer: str  # "aws" (a write) or "http" (a provider request)
    n: int  # 1-based, counted from the start of the run
    mode: str  # see the module docstring

    def __str__(self) -> str:
        return f"{self.mode} {self.layer} call {self.n}"


def points(writes: int, requests_: int) -> list[Point]:
    """Every point of a run that made ``writes`` AWS writes and ``requests_`` provider requests."""
    out = [Point("aws", n, m) for n in range(1, writes + 1) for m in AWS_MODES]
    out += [Point("http", n, m) for n in range(1, requests_ + 1) for m in HTTP_MODES]
    return out


def sample(all_points: list[Any], size: int, seed: str) -> list[Any]:
    """A deterministic sample of ``size`` (all of them when there are fewer), in order."""
    if size >= len(all_points):
        return list(all_points)
    picked = random.Random(seed).sample(range(len(all_points)), size)  # noqa: S311 - not crypto
    return [all_points[i] for i in sorted(picked)]


class Faults:
    """Counts AWS writes and provider requests, and fires the armed :class:`Point`.

    ``hosts`` are the ``host:port`` of the provider (the fake); requests elsewhere are not
    counted. Counting starts at :meth:`run`; outside a run nothing is injected.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hosts: Iterable[str] = ()) -> None:
        self.hosts = set(hosts)
        self.counts: Counter[str] = Counter()  # "aws" writes and "http" requests of the run
        self.point: Point | None = None
        self.fired: Point | None = None
        self.dead = False  # a crash fired: every later call of the run dies too
        self.outage = False  # "refused" fired: the provider is unreachable
        self._lock = threading.Lock()  # Graph fetches MIME from a thread pool
        original = botocore.client.BaseClient._make_api_call
        send = requests.Session.send

        def aws_call(client: Any, op: str, params: dict[str, Any]) -> Any:
            if self.dead:
                raise Crash(f"dead: {op} after the crash at {self.fired}")
            hit = False
            if op in WRITES:
                self.counts["aws"] += 1
                hit = self._hit("aws")
            if hit and self.point is not None and self.point.mode == "before":
                self._crash()
            result = original(client, op, params)
            if hit:
                self._crash()
            return result

        def http_send(session: requests.Session, request: Any, **kwargs: Any) -> Any:
            if urlsplit(request.url).netloc not in self.hosts:
                return send(session, request, **kwargs)
            if self.dead:
                raise Crash(f"dead: {request.method} after the crash at {self.fired}")
            if self.outage:
                raise requests.ConnectionError("injected: provider unreachable")
            with self._lock:
                self.counts["http"] += 1
                hit = self._hit("http")
                mode = self.point.mode if hit and self.point is not None else None
                if mode == "refused":
                    self.fired, self.outage = self.point, True
            if mode == "refused":
                raise requests.ConnectionError("injected: provider unreachable")
            if mode == "before":
                self._crash()
            response = send(session, request, **kwargs)
            _ = response.content  # the answer is read in full
            if mode == "after":
                self._crash()
            return response

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", aws_call)
        monkeypatch.setattr(requests.Session, "send", http_send)

    def _hit(self, layer: str) -> bool:
        p = self.point
        return p is not None and self.fired is None and p.layer == layer and self.counts[layer] == p.n

    def _crash(self) -> None:
        self.fired, self.dead = self.point, True
        raise Crash(f"crash at {self.point}")

    @contextmanager
    def run(self, point: Point | None = None) -> Iterator[Faults]:
        """Count (and fire ``point``) within the block; then the process is alive again."""
        self.counts.clear()
        self.point, self.fired, self.dead, self.outage = point, None, False, False
        try:
            yield self
        finally:
            self.point, self.dead, self.outage = None, False, False


def run_crashing(faults: Faults, point: Point | None, fn: Any) -> Any:
    """``fn()`` with ``point`` armed; a :class:`Crash` ends it (returns None). Asserts the
    point fired: a point that is never reached tests nothing."""
    with faults.run(point):
        try:
            result = fn()
        except Crash:
            result = None
        assert point is None or faults.fired == point, f"{point} was never reached"
    return result


def check_integrity(acc: dict[str, Any], tenant_id: str = "t1") -> list[dict[str, Any]]:
    """The account's visible mirror, after checking what holds at every instant: no duplicate,
    no dangling thread, thread items counting exactly their members, S3 holding exactly the
    mirrored mails, no hidden orphan left."""
    msgs = mirror(acc, tenant_id)
    assert len({m["id"] for m in msgs}) == len(msgs)
    for thid in {m["thread_id"] for m in msgs}:
        th = ThreadItem.get(keys.thread(tenant_id, thid), "TH")  # raises if dangling
        members = {m["id"] for m in msgs if m["thread_id"] == thid}
        assert th.message_count == len(members) and set(th.members) == members
    s3 = boto3.client("s3").list_objects_v2(
        Bucket=get_settings().bucket, Prefix=f"t/{tenant_id}/a/{acc['id']}/"
    )
    assert {o["Key"] for o in s3.get("Contents", [])} == {m["raw_key"] for m in msgs}, (
        "S3 holds exactly the mirrored mails"
    )
    items = MessageItem.batch_get([(keys.message(tenant_id, m["id"]), "M") for m in msgs])
    assert [i.mid for i in items if i.orphan] == []
    return msgs


def host_of(url: str) -> str:
    return urlsplit(url).netloc
