"""Mailbox change → tenant webhook received (issue 15), p50 and p95, over `mailsync run`.

Two paths, each ``samples`` times, one mail at a time:

* **Gmail push** (the fake Gmail API): a mail is delivered, and the Pub/Sub push that Gmail's
  watch would cause is POSTed to ``/v1/webhooks/google`` at once (Pub/Sub's own delivery delay
  is not ours to measure); the clock stops when our receiver has the signed
  ``message.created``. It covers the push handler, the SQS job, the sync, moto's stream, the
  events function, the webhook queue and the POST.
* **IMAP poll** (a real Dovecot): a mail is APPENDed; the runner polls every
  ``MAILSYNC_POLL_SECONDS`` (2 s here), so the figure is about half a poll interval plus the
  same pipeline. In AWS the interval is ``PollSeconds`` (300 s by default): scale accordingly.

The runner's stream pump polls moto every 0.25 s when idle, like the event source mapping's
1 s batching window at most.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from mailsync_local.dovecot import Dovecot
from mailsync_local.smtp_server import SmtpServer


def _percentiles(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    return {"p50": statistics.median(s), "p95": p95, "samples": len(s)}


def measure_push_latency(samples: int = 10) -> dict[str, Any]:
    from tests.e2e.conftest import google_env, running_service
    from tests.e2e.mailboxes import GoogleMailbox, ImapMailbox
    from tests.fakes.gmail import FakeGoogle
    from tests.support.google import PUSH_AUDIENCE, PUSH_SA
    from tests.support.webhooks import Receiver

    log = Path(tempfile.mkdtemp(prefix="bench-events-")) / "runner.log"
    receiver = Receiver()
    out: dict[str, Any] = {"poll_seconds": 2}
    try:
        with (
            FakeGoogle(push_service_account=PUSH_SA) as fake,
            Dovecot() as dovecot,
            SmtpServer(dovecot) as smtp,
            running_service(log, MAILSYNC_POLL_SECONDS="2", **google_env(fake)) as service,
        ):
            tenant = service.session(user=None)
            r = tenant.post(
                f"{service.url}/v1/webhook-endpoints",
                json={"url": receiver.url(), "events": ["message.created"], "description": "bench"},
            )
            r.raise_for_status()

            def arrival(subject: str, timeout: float = 60.0) -> float:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    for got in list(receiver.requests):
                        if subject.encode() in got.body:
                            return got.at
                    time.sleep(0.01)
                raise TimeoutError(f"no webhook for {subject!r}")

            gmail = GoogleMailbox(service, fake)
            http = service.session(gmail.user("alice"))
            gmail.connect(http)
            time.sleep(3)  # the first sync (connect) is done
            push: list[float] = []
            for i in range(samples):
                subject = f"push-{i}-{time.time_ns()}"
                t0 = time.monotonic()
                gmail.deliver(subject)
                token = fake.push_token(PUSH_AUDIENCE)
                requests.post(
                    f"{service.url}/v1/webhooks/google",
                    json=fake.push_envelope(gmail.self_address),
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                ).raise_for_status()
                push.append(arrival(subject) - t0)
            out["gmail_push_s"] = _percentiles(push)

            imap = ImapMailbox(service, dovecot, smtp, dovecot.new_user())
            http = service.session(imap.user("bob"))
            aid = imap.connect(http)["id"]
            imap.sync(http, aid)
            time.sleep(3)
            poll: list[float] = []
            for i in range(samples):
                subject = f"poll-{i}-{time.time_ns()}"
                t0 = time.monotonic()
                imap.deliver(subject)
                poll.append(arrival(subject) - t0)
            out["imap_poll_s"] = _percentiles(poll)
    finally:
        receiver.close()
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(measure_push_latency(), indent=2))
