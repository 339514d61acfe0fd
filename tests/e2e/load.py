"""The load driver of tests/e2e/test_load.py: mail flowing into many Dovecot users, API readers,
and the figures read back from the runner's ``local_report`` lines (devtools runner).

* :class:`MailFlow` appends mails to random users' INBOX and ``Archive`` at a steady rate,
  and flags and deletes some of them, as other mail clients would. Every mail's subject
  carries its Message-ID (``load <mid>``), so the API's summaries name it.
* :class:`Readers` are a few API clients listing accounts and messages and reading mails
  while the workers run; they keep every latency and status.
* :func:`mailbox_state` and :func:`mirror_state` give ``{Message-ID: (folders, seen)}`` of a
  mailbox (IMAP) and of its mirror (the API), and the number of summaries per Message-ID.
* :func:`runner_figures` turns the runner's log into worker latency percentiles, queue
  waits and the sampled age of the oldest due job.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from tests.support.dovecot import make_mail

if TYPE_CHECKING:
    from tests.e2e.conftest import Service
    from tests.support.dovecot import Dovecot

FOLDERS = ("INBOX", "Archive")  # both synced in folder_mode "all"
SUBJECT_PREFIX = "load "


def new_mail(folder: str) -> tuple[str, bytes]:
    mid = f"{uuid.uuid4().hex}@load.example"
    return mid, make_mail(f"{SUBJECT_PREFIX}{mid}", message_id=mid, body=f"Mail for {folder}.\n")


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return round(ordered[int(rank) - 1], 3)


@dataclass
class MailFlow:
    """A background client changing the mailboxes of ``users`` at ``rate`` actions per
    second: 80 % appends (INBOX or Archive), 12 % ``\\Seen`` flag changes, 8 % deletes."""

    dovecot: Dovecot
    users: list[str]
    rate: float
    seed: int = 14
    appended: int = 0
    flagged: int = 0
    deleted: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._rng = random.Random(self.seed)
        self._uids: dict[tuple[str, str], list[int]] = {}
        self._thread = threading.Thread(target=self._run, name="mail-flow", daemon=True)

    def start(self) -> MailFlow:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        interval, next_at = 1 / self.rate, time.monotonic()
        while not self._stop.is_set():
            try:
                self._one()
            except Exception as e:  # noqa: BLE001 - reported: a failed change is no mail of ours
                self.errors.append(repr(e))
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _one(self) -> None:
        user = self._rng.choice(self.users)
        folder = "INBOX" if self._rng.random() < 0.7 else "Archive"
        known = self._uids.setdefault((user, folder), [])
        roll = self._rng.random()
        if roll < 0.12 and known:
            self.dovecot.set_seen(user, folder, [self._rng.choice(known)], self._rng.random() < 0.8)
            self.flagged += 1
        elif roll < 0.20 and known:
            uid = known.pop(self._rng.randrange(len(known)))
            self.dovecot.delete(user, folder, [uid])
            self.deleted += 1
        else:
            _mid, raw = new_mail(folder)
            known.append(self.dovecot.append(user, folder, raw))
            self.appended += 1


class Readers:
    """``n`` API clients in parallel, each looping: list a user's accounts, list one
    account's messages, read one of them. Latencies (s) and statuses are kept."""

    def __init__(self, service: Service, accounts: dict[str, list[str]], n: int = 3) -> None:
        self.service, self.accounts = service, accounts
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def start(self) -> Readers:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _get(self, http: requests.Session, path: str, **params: Any) -> Any:
        started = time.monotonic()
        r = http.get(self.service.url + path, params=params, timeout=60)
        with self._lock:
            self.latencies.append(time.monotonic() - started)
            self.statuses[r.status_code] += 1
            if r.status_code >= 500:
                self.failures.append(f"{r.status_code} GET {path}: {r.text[:300]}")
        return r.json() if r.status_code == 200 else None

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        sessions = {user: self.service.session(user) for user in self.accounts}
        while not self._stop.is_set():
            user = rng.choice(list(self.accounts))
            http = sessions[user]
            try:
                self._get(http, "/v1/accounts", limit=50)
                page = self._get(http, "/v1/messages", account_id=rng.choice(self.accounts[user]), limit=50)
                if page and page["items"]:
                    self._get(http, f"/v1/messages/{rng.choice(page['items'])['id']}")
            except requests.RequestException as e:
                with self._lock:
                    self.failures.append(repr(e))
            self._stop.wait(0.2)


State = dict[str, tuple[frozenset[str], bool]]  # Message-ID -> (folders, seen)


def mailbox_state(dovecot: Dovecot, user: str) -> State:
    """The user's mails at Dovecot, by Message-ID (every folder that holds mail)."""
    folders: dict[str, set[str]] = {}
    seen: dict[str, bool] = {}
    with dovecot.client(user) as c:
        for folder in FOLDERS:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                continue
            for data in c.fetch(uids, ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).values():
                header = data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split(":", 1)[1]
                mid = header.strip().strip("<>")
                folders.setdefault(mid, set()).add(folder)
                seen[mid] = seen.get(mid, True) and b"\\Seen" in data[b"FLAGS"]
    return {mid: (frozenset(fs), seen[mid]) for mid, fs in folders.items()}


def mirror_state(http: requests.Session, url: str, account_id: str) -> tuple[State, Counter[str]]:
    """The account's mirror through the API (every page), by the Message-ID in each subject,
    and how many summaries each Message-ID has (the API shows one message per Message-ID)."""
    state: State = {}
    count: Counter[str] = Counter()
    cursor = None
    while True:
        r = http.get(
            f"{url}/v1/messages",
            params={"account_id": account_id, "limit": 200, **({"cursor": cursor} if cursor else {})},
            timeout=60,
        )
        r.raise_for_status()
        page = r.json()
        for m in page["items"]:
            mid = m["subject"].removeprefix(SUBJECT_PREFIX)
            count[mid] += 1
            state[mid] = (frozenset(m["folders"] or [m["folder"]]), not m["unread"])
        cursor = page.get("next_cursor")
        if not cursor:
            return state, count


@dataclass
class Difference:
    lost: int = 0  # at the mailbox, not in the mirror
    duplicated: int = 0  # more than one message per Message-ID in the mirror
    stale: int = 0  # in the mirror, gone at the mailbox
    wrong_folders: int = 0
    wrong_seen: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, account_id: str, box: State, mirror: State, count: Counter[str]) -> None:
        def note(what: str, mid: str) -> None:
            if len(self.examples) < 10:
                self.examples.append(
                    f"{account_id}: {what} {mid} box={box.get(mid)} mirror={mirror.get(mid)}"
                )

        for mid in box.keys() - mirror.keys():
            self.lost += 1
            note("lost", mid)
        for mid in mirror.keys() - box.keys():
            self.stale += 1
            note("stale", mid)
        for mid, n in count.items():
            if n > 1:
                self.duplicated += n - 1
                note(f"duplicated x{n}", mid)
        for mid in box.keys() & mirror.keys():
            if box[mid][0] != mirror[mid][0]:
                self.wrong_folders += 1
                note("folders", mid)
            elif box[mid][1] != mirror[mid][1]:
                self.wrong_seen += 1
                note("seen", mid)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.stale or self.wrong_folders or self.wrong_seen)


def _log_lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _values(v: Any) -> list[Any]:
    """An EMF metric's value: one number, or a list when one flush carried several."""
    return v if isinstance(v, list) else [v]


def runner_figures(log: Path, start: float, end: float, sample_seconds: float = 5.0) -> dict[str, Any]:
    """Worker invocation latency, queue waits, duplicate deliveries and the age of the oldest
    due job, from the runner's ``local_report`` lines between ``start`` and ``end`` (epoch s).

    The oldest due job at time t is the oldest job that was sent to the queue and not yet
    received by a worker (each report names its jobs' send and receive times), or, when the
    scheduler had not yet sent it, the oldest due account the scheduler found
    (``OldestDueAgeSeconds``, as the deployed alarm reads it)."""
    lines = _log_lines(log)
    workers = [x for x in lines if x.get("local_report") == "sync-worker" and start <= x["at"] <= end]
    jobs = [(x["at"] - w, x["at"]) for x in workers for w in x["waits_s"]]  # (sent, received)
    due_ages = [
        (x["_aws"]["Timestamp"] / 1000, max(map(float, _values(x["OldestDueAgeSeconds"]))))
        for x in lines
        if "OldestDueAgeSeconds" in x and "_aws" in x
    ]
    samples = []
    t = start
    while t <= end:
        waiting = [t - sent for sent, received in jobs if sent <= t < received]
        ticked = [age for at, age in due_ages if at <= t]
        samples.append(max([*waiting, ticked[-1] if ticked else 0.0, 0.0]))
        t += sample_seconds
    thirds = [samples[i * len(samples) // 3 : (i + 1) * len(samples) // 3] for i in range(3)]
    durations = [x["duration_ms"] for x in workers]
    records = sum(x["records"] for x in workers)
    first = sum(1 for x in workers for c in x["receive_counts"] if c == 1)
    return {
        "worker_invocations": len(workers),
        "worker_records": records,
        "worker_p50_ms": percentile(durations, 50),
        "worker_p95_ms": percentile(durations, 95),
        "worker_p99_ms": percentile(durations, 99),
        "worker_max_ms": max(durations, default=None),
        "queue_wait_p50_s": percentile([r - s for s, r in jobs], 50),
        "queue_wait_p95_s": percentile([r - s for s, r in jobs], 95),
        "oldest_due_job_age_max_s": round(max(samples, default=0.0), 1),
        "oldest_due_job_age_p95_s": percentile(samples, 95),
        "oldest_due_job_age_by_third_max_s": [round(max(x, default=0.0), 1) for x in thirds],
        "deliveries_first": first,
        "deliveries_second": sum(1 for x in workers for c in x["receive_counts"] if c == 2),
        "redelivered_on_purpose": sum(x["redelivered"] for x in workers),
        "failed_records": sum(x["failed"] for x in workers),
    }


def runner_errors(log: Path) -> list[str]:
    """Lines where a consumer, the scheduler or a handler failed (the runner logs them)."""
    text = log.read_text(errors="replace").splitlines()
    return [
        line[:300]
        for line in text
        if line.startswith(("worker error", "scheduler error", "Traceback"))
        or '"level":"ERROR"' in line.replace(" ", "")
    ]
