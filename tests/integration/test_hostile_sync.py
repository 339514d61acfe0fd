"""A sync never fails because of one mail: hostile mails among normal ones in a real
Dovecot all arrive, read normally or quarantined with a reason; an .html attachment full
of script is served as a download that cannot run."""

from __future__ import annotations

import pytest

from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.dovecot import make_mail
from tests.unit.test_mime_hostile import deep, many

pytestmark = pytest.mark.integration

XSS = b"<script>alert(1)</script><img src=x onerror=alert(1)><a href='javascript:alert(1)'>x</a>"


def test_hostile_mails_never_fail_a_sync(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    hostile = {
        "deep": deep(1000).replace(b"Subject: deep", b"Subject: hostile deep\r\nMessage-ID: <deep@x>"),
        "many": many(2000).replace(b"Subject: many", b"Subject: hostile many\r\nMessage-ID: <many@x>"),
        "long": b"From: a@example.com\r\nMessage-ID: <long@x>\r\nSubject: hostile "
        + b"A" * 200_000
        + b"\r\n\r\nb\r\n",
        "nul": b"From: a@example.com\r\nMessage-ID: <nul@x>\r\nSubject: hostile nul\r\n\r\nbo\x00dy\r\n",
    }
    for i in range(3):
        dovecot.append(user, "INBOX", make_mail(f"normal {i}"))
    for raw in hostile.values():
        dovecot.append(user, "INBOX", raw)
    dovecot.append(
        user,
        "INBOX",
        make_mail("with html", attachment=("x.html", "text/html", b"<html>" + XSS + b"</html>")),
    )
    sync(acc)
    api = ApiClient("key-t1", "alice")
    items = api.get(f"/v1/messages?account_id={acc['id']}").body["items"]
    by_subject = {m["subject"][:14]: m for m in items}
    assert len(items) == 8, [m["subject"][:20] for m in items]
    for i in range(3):
        assert by_subject[f"normal {i}"]["quarantined"] is False
    assert by_subject["hostile deep"]["quarantine_reason"] == "too_deep"
    assert by_subject["hostile many"]["quarantine_reason"] == "too_many_parts"
    assert by_subject["hostile AAAAAA"]["quarantine_reason"] == "header_too_long"
    assert by_subject["hostile nul"]["quarantined"] is False
    detail = api.get(f"/v1/messages/{by_subject['hostile deep']['id']}").body
    assert detail["quarantined"] is True and detail["text"] is None and detail["html"] is None
    assert len(mirror(acc)) == 8

    m = by_subject["with html"]
    (att,) = api.get(f"/v1/messages/{m['id']}").body["attachments"]
    status, headers, body = api.raw("GET", f"/v1/messages/{m['id']}/attachments/{att['id']}")
    assert status == 200 and XSS in body
    assert headers["Content-Disposition"].startswith("attachment;")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
