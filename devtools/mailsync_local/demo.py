"""``mailsync demo``: the local runner plus a throwaway Dovecot with sample mail.

It starts Dovecot on a free loopback port (Debian ``dovecot-imapd``; ``make demo``
installs it), seeds a mailbox with a few threads, starts an SMTP server that delivers into it
(so a newcomer can send a mail to ``demo@example.test`` through the API and watch
it arrive), connects it through the public API as user ``demo``, and keeps delivering a new mail every ``MAILSYNC_DEMO_EVERY``
seconds (default 20) so that mail visibly flows.

Before connecting, it stores a few contacts (:data:`CONTACTS`), so the web client at ``/app``
shows mail linked to customers (auto-assigned by address), a customer's history, unassigned
mail with a suggestion (same domain as a contact), an HTML mail with an attachment and one
with a remote image that stays blocked until the reader asks.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

from mailsync_local.dovecot import Dovecot, make_mail
from mailsync_local.smtp_server import SmtpServer

SAMPLES = [
    ("Ihre Kfz-Versicherung: Angebot", "Petra Schmidt <petra.schmidt@example.org>", None),
    ("Re: Ihre Kfz-Versicherung: Angebot", "Petra Schmidt <petra.schmidt@example.org>", 0),
    ("Unterlagen Berufsunfähigkeit", "Makler Müller <mueller@makler.example>", None),
    ("Termin nächste Woche", "Jonas Weber <jonas@example.net>", None),
    ("Newsletter: Neue Tarife 2027", "Versicherer AG <news@versicherer.example>", None),
]

# Contacts of the dev tenant, visible to every user: Petra and Makler Müller get their mail
# linked by address; Karl's domain (example.com) makes him the suggestion for the unassigned
# "Neue Anfrage" mails from kunde@example.com.
CONTACTS = [
    {
        "id": "c-petra-schmidt",
        "kind": "customer",
        "name": "Petra Schmidt",
        "emails": ["petra.schmidt@example.org"],
    },
    {
        "id": "c-makler-mueller",
        "kind": "intermediary",
        "name": "Makler Müller",
        "emails": ["mueller@makler.example"],
    },
    {"id": "c-karl-kunde", "kind": "customer", "name": "Karl Kunde", "emails": ["karl@example.com"]},
    {"id": "c-jonas-weber", "kind": "customer", "name": "Jonas Weber", "emails": ["jonas@example.net"]},
]

# A remote image (blocked until the reader asks; then fetched through the API's image proxy).
NEWSLETTER_HTML = (
    '<h2>Neue Tarife 2027</h2><p><img src="https://images.versicherer.example/tarife.png" '
    'alt="Tarifübersicht" width="300" height="120"></p><p>Mehr dazu bei Ihrem Makler.</p>'
)


def _seed(dc: Dovecot, user: str) -> None:
    ids: list[str] = []
    for i, (subject, sender, parent) in enumerate(SAMPLES):
        mid = f"demo-{i}-{int(time.time())}@example.org"
        ids.append(mid)
        raw = make_mail(
            subject,
            from_=sender,
            to="Demo Broker <demo@example.test>",
            message_id=mid,
            in_reply_to=ids[parent] if parent is not None else None,
            references=[ids[parent]] if parent is not None else None,
            body=f"Guten Tag,\n\ndies ist Beispielmail {i + 1} der Demo.\n\nViele Grüße\n",
            html=NEWSLETTER_HTML
            if subject.startswith("Newsletter")
            else f"<p>Guten Tag,</p><p>dies ist <b>Beispielmail {i + 1}</b> der Demo.</p>",
            attachment=("angebot.pdf", "application/pdf", b"%PDF-1.4 demo\n") if i == 0 else None,
        )
        dc.append(user, "INBOX", raw)


def _api(base: str, key: str, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(  # noqa: S310 - loopback URL of our own runner
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "X-User-Id": "demo", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - our own loopback runner
        return json.loads(r.read() or b"null")


def run_demo(port: int | None = None) -> None:
    from mailsync_local.runner import serve

    dc = Dovecot()
    smtp: SmtpServer | None = None
    try:
        dc.start()
        user, password = "demo", "demo-password"
        dc.add_user(user, password)
        smtp = SmtpServer(dc).start()  # delivers mail for <user>@example.test into the demo Dovecot
        _seed(dc, user)
        every = int(os.environ.get("MAILSYNC_DEMO_EVERY", "20"))
        os.environ.setdefault("MAILSYNC_POLL_SECONDS", "10")

        def on_ready(info: dict[str, Any]) -> None:
            def connect() -> dict[str, Any]:
                # A busy machine can make the first login slow: try a few times, and say why.
                for attempt in range(1, 6):
                    try:
                        return _connect_once()
                    except Exception as e:  # noqa: BLE001 - the demo reports and retries
                        print(f"demo: connecting the mailbox failed (attempt {attempt}): {e!r}", flush=True)
                        time.sleep(2 * attempt)
                raise RuntimeError("demo: could not connect the demo mailbox")

            def _connect_once() -> dict[str, Any]:
                for c in CONTACTS:  # first, so that the first sync links mail by address
                    body = {k: v for k, v in c.items() if k != "id"}
                    _api(
                        info["url"],
                        info["api_key"],
                        "PUT",
                        f"/v1/contacts/{c['id']}",
                        {**body, "visible_to": ["*"]},
                    )
                existing = _api(info["url"], info["api_key"], "GET", "/v1/accounts")["items"]
                if existing:  # an earlier attempt got through after all
                    return dict(existing[0])
                return dict(
                    _api(
                        info["url"],
                        info["api_key"],
                        "POST",
                        "/v1/accounts",
                        {
                            "email": "demo@example.test",
                            "backfill_days": 1,  # the sample mail was delivered just before connecting
                            "imap": {
                                "host": dc.host,
                                "port": dc.port,
                                "security": "none",
                                "username": user,
                                "password": password,
                            },
                            "smtp": {
                                "host": smtp.host,
                                "port": smtp.port,
                                "security": "none",
                                "username": user,
                                "password": password,
                            },
                        },
                    )
                )

            def connect_and_deliver() -> None:
                acc = connect()
                print(
                    f"demo mailbox connected as account {acc['id']} (user 'demo').\n"
                    f"  try: curl -H 'Authorization: Bearer {info['api_key']}' -H 'X-User-Id: demo' "
                    f"{info['url']}/v1/threads\n"
                    f"  send yourself a mail: curl -X POST -H 'Authorization: Bearer {info['api_key']}' "
                    f"-H 'X-User-Id: demo' -H 'Content-Type: application/json' "
                    f"{info['url']}/v1/accounts/{acc['id']}/send "
                    """-d '{"to": ["demo@example.test"], "subject": "Hallo", "text": "Test"}'"""
                    f"\n  the web client: {info['url']}/app (sign in as 'demo')",
                    flush=True,
                )
                n = 0
                while True:
                    time.sleep(every)
                    n += 1
                    now = datetime.now(UTC).strftime("%H:%M:%S")
                    dc.append(
                        user,
                        "INBOX",
                        make_mail(
                            f"Neue Anfrage #{n} ({now})",
                            from_="Kunde <kunde@example.com>",
                            to="demo@example.test",
                        ),
                    )
                    print(f"demo: delivered mail #{n}", flush=True)

            threading.Thread(target=connect_and_deliver, name="demo-mail", daemon=True).start()

        serve(port, on_ready=on_ready)
    finally:
        if smtp is not None:
            smtp.stop()
        dc.stop()
