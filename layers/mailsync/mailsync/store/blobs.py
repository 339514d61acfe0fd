"""Raw MIME in S3 (SSE-KMS), keyed by tenant/account/message.

Key layout: ``t/<tenant>/a/<account>/m/<mid>.eml`` (and ``…/<mid>.att/<id>`` for
large attachments handed out by presigned URL, purged with their message), so purging an account is one
prefix listing. The raw object is stored as received, so a byte range of it is a
range of the message (bodies are read that way, see ``domain.scan``).
"""

from __future__ import annotations

from typing import Any

from mailsync.config import get_settings
from mailsync.store import aws

LARGE_ATTACHMENT_BYTES = 5 * 1024 * 1024  # served through a presigned copy, not inline


def tenant_prefix(tenant_id: str) -> str:
    return f"t/{tenant_id}/"


def account_prefix(tenant_id: str, account_id: str) -> str:
    return f"{tenant_prefix(tenant_id)}a/{account_id}/"


def raw_key(tenant_id: str, account_id: str, mid: str) -> str:
    return f"{account_prefix(tenant_id, account_id)}m/{mid}.eml"


def _put(key: str, body: bytes, content_type: str, **extra: str) -> None:
    s = get_settings()
    aws.client("s3").put_object(
        Bucket=s.bucket,
        Key=key,
        Body=body,
        ContentType=content_type,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=s.kms_key_id,
        **extra,
    )


def attachment_key(raw_key: str, attachment_id: str) -> str:
    """The presigned copy of a large attachment, next to its message's raw object."""
    return f"{raw_key.rsplit('.', 1)[0]}.att/{attachment_id}"


def message_keys(doc: dict[str, Any]) -> list[str]:
    """Every object a message may have: its raw MIME and the copies of its large
    attachments (made on first download; deleting one that was never made is a no-op)."""
    raw_key = doc.get("raw_key")
    if not raw_key:
        return []
    large = [
        a["id"] for a in doc.get("attachments") or [] if int(a.get("size") or 0) > LARGE_ATTACHMENT_BYTES
    ]
    return [raw_key, *(attachment_key(raw_key, i) for i in large)]


def put_raw(key: str, raw: bytes) -> None:
    _put(key, raw, "message/rfc822")


def put_attachment(key: str, data: bytes, content_type: str, filename: str | None) -> None:
    from email.utils import encode_rfc2231

    disposition = f"attachment; filename*={encode_rfc2231(filename or 'attachment', 'utf-8')}"
    _put(key, data, content_type, ContentDisposition=disposition)


def get(key: str) -> bytes:
    return aws.client("s3").get_object(Bucket=get_settings().bucket, Key=key)["Body"].read()


def get_range(key: str, start: int, end: int) -> bytes:
    """``object[start:end]`` with one ranged GET (RFC 9110 §14.1.2: the last byte is inclusive)."""
    if end <= start:
        return b""
    response = aws.client("s3").get_object(
        Bucket=get_settings().bucket, Key=key, Range=f"bytes={start}-{end - 1}"
    )
    return response["Body"].read()


def delete_keys(keys: list[str]) -> None:
    s3 = aws.client("s3")
    bucket = get_settings().bucket
    for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        chunk = keys[i : i + 1000]
        if chunk:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})


def delete_prefix(prefix: str) -> int:
    s3 = aws.client("s3")
    bucket = get_settings().bucket
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [o["Key"] for o in page.get("Contents", [])]
        delete_keys(keys)
        n += len(keys)
    return n


def presigned_url(key: str, seconds: int = 300) -> str:
    return aws.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": get_settings().bucket, "Key": key}, ExpiresIn=seconds
    )
