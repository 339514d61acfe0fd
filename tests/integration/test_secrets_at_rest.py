"""No secret at rest outside its KMS envelope: a realistic scenario, then every DynamoDB item
and every S3 object in moto is scanned for every secret the session registered
(tests/support/secrets.py) in plain, base64 and URL-encoded form.

The scenario: a tenant API key minted through the API; an IMAP account connected, synced and
sending over SMTP; a Google account connected by OAuth, synced and pushed to; a Microsoft
account connected by OAuth (with its Graph subscription and ``clientState``), synced and
notified. The credential envelopes (AES-GCM ciphertext under a KMS data key) are scanned
too: what they hold is ciphertext, so a find there would be a real leak as well.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

import boto3
import pytest

from mailsync.config import get_settings
from mailsync.store import accounts as repo
from mailsync.usecases.sync_account import sync_account
from tests.support import secrets as leakscan
from tests.support.api import ApiClient
from tests.support.dovecot import make_mail
from tests.support.google import PUSH_AUDIENCE, connect_google
from tests.support.microsoft import connect_microsoft, post_webhook
from tests.support.secrets import Registry

pytestmark = pytest.mark.integration

GOOGLE_EMAIL = "petra@makler.example"
MS_EMAIL = "petra@contoso.test"


def _text(data: bytes) -> list[str]:
    """``data`` as text, and unpacked if it is gzip/zlib (a compressed body hides nothing)."""
    out = [data.decode("latin-1"), base64.b64encode(data).decode()]
    for unpack in (gzip.decompress, zlib.decompress):
        try:
            out.append(unpack(data).decode("latin-1"))
        except (OSError, zlib.error, EOFError):
            pass
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return _text(bytes(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def scan_at_rest(reg: Registry) -> dict[str, int]:
    """Feed every DynamoDB item of every table and every S3 object of every bucket."""
    counts = {"dynamodb items": 0, "s3 objects": 0}
    ddb = boto3.client("dynamodb")
    for table in ddb.list_tables()["TableNames"]:
        for page in ddb.get_paginator("scan").paginate(TableName=table):  # a test's dump, not an API read
            for item in page["Items"]:
                where = (
                    f"dynamodb {table} {item.get('pk', {}).get('S', '?')} {item.get('sk', {}).get('S', '')}"
                )
                reg.feed(json.dumps(_plain(item)), where)
                counts["dynamodb items"] += 1
    s3 = boto3.client("s3")
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket, Key=obj["Key"])
                meta = json.dumps(got.get("Metadata", {}))
                for text in [obj["Key"], meta, *_text(got["Body"].read())]:
                    reg.feed(text, f"s3 {bucket}/{obj['Key']}")
                counts["s3 objects"] += 1
    return counts


def test_no_secret_at_rest_in_dynamodb_or_s3(tenant, dovecot, imap_user, smtp_server, google, microsoft):
    api = ApiClient("key-t1", "alice")
    key = ApiClient("key-t1", None).post("/v1/api-keys", {"name": "ci"})
    assert key.status == 201, key.body

    # IMAP: connect, sync, send
    user, pw = imap_user
    imap = {"host": dovecot.host, "port": dovecot.port, "security": "none", "username": user, "password": pw}
    smtp = {**imap, "host": smtp_server.host, "port": smtp_server.port}
    r = api.post("/v1/accounts", {"email": f"{user}@example.test", "imap": imap, "smtp": smtp})
    assert r.status == 201, r.body
    imap_id = r.body["id"]
    dovecot.append(user, "INBOX", make_mail("hello"))
    assert sync_account("t1", imap_id)["status"] == "ok"
    sent = api.post(
        f"/v1/accounts/{imap_id}/send",
        {"to": [{"email": smtp_server.address(user)}], "subject": "Angebot", "text": "Hallo"},
    )
    assert sent.status == 202, sent.body

    # Google: OAuth connect, sync, push
    status, q = connect_google(api, google, GOOGLE_EMAIL)
    assert status == 302 and "account_id" in q, q
    google.deliver(GOOGLE_EMAIL, make_mail("Neu", "kunde@example.org", GOOGLE_EMAIL))
    assert sync_account("t1", q["account_id"])["status"] == "ok"
    push = ApiClient(None, None).call(
        "POST",
        "/v1/webhooks/google",
        google.push_envelope(GOOGLE_EMAIL),
        headers={"Authorization": f"Bearer {google.push_token(PUSH_AUDIENCE)}"},
    )
    assert push.status == 204

    # Microsoft: OAuth connect (subscription with clientState), sync, notification
    status, q = connect_microsoft(api, microsoft, MS_EMAIL)
    assert status == 302 and "account_id" in q, q
    ms_id = q["account_id"]
    mid = microsoft.deliver(MS_EMAIL, make_mail("Police", "kunde@example.org", MS_EMAIL))
    assert sync_account("t1", ms_id)["status"] == "ok"
    (sub,) = [s for s in microsoft.subscriptions.values() if s.user == MS_EMAIL]
    assert post_webhook(microsoft.notification(sub.id, "created", mid)).status == 202

    # The scenario's secrets are registered, and stored: encrypted.
    reg = Registry()
    for secret, kind in leakscan.registry.secrets.items():
        reg.register(kind, secret)
    kinds = set(reg.secrets.values())
    assert {"imap/smtp password", "access token", "refresh token", "client secret"} <= kinds, kinds
    assert {"webhook clientState", "tenant api key"} <= kinds, kinds
    assert pw in reg.secrets and key.body["key"] in reg.secrets and sub.client_state in reg.secrets
    acc = repo.get_account("t1", imap_id)
    assert acc is not None and repo.load_secrets(acc)["imap_password"] == pw  # it is there, sealed

    counts = scan_at_rest(reg)
    assert counts["dynamodb items"] > 20 and counts["s3 objects"] >= 3, counts
    found = reg.findings()
    assert found == [], "\n".join(map(str, found))
    print(f"secrets at rest: {len(reg.secrets)} secrets, {counts}, found: 0")
    assert get_settings().kms_key_id  # the envelopes were made under the deployed key
