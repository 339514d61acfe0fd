"""Sending mail: compose, deliver over the account's SMTP, file in Sent, show at once.

Invariants:

* Nothing is stored as sent unless the SMTP server accepted the message for at
  least one recipient (``smtp_rejected`` otherwise, with the server's reply).
* The copy filed in Sent (APPEND with ``\\Seen``; skipped for providers that file
  sent mail themselves) is stored in the mirror at once. Its id derives from its
  Message-ID, so when a later sync sees the Sent copy it is the same message:
  no duplicate.
* ``reply_to`` sets In-Reply-To/References (RFC 5322 §3.6.4), so the reply joins
  the parent's thread.
* A retry with the same ``Idempotency-Key`` sends once and answers the first
  result (Powertools idempotency, DynamoDB persistence). Reusing a key for a
  different request is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mailsync import connectors
from mailsync.config import get_settings
from mailsync.connectors.imap import recipient_list as _recipient_list
from mailsync.domain import compose as compose_mod
from mailsync.domain import mime
from mailsync.domain.account import Account
from mailsync.domain.clock import iso, utcnow
from mailsync.domain.ports import PENDING, MailClient, Outgoing, ProviderError, Upsert
from mailsync.domain.sync import SyncEngine, message_id_for
from mailsync.errors import Conflict, MailsyncError, NotFound, Unprocessable
from mailsync.observability import logger
from mailsync.providers import smtp
from mailsync.store import accounts as repo
from mailsync.store import keys, sends
from mailsync.store.accounts import load_secrets
from mailsync.store.idempotency import persistence_layer
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.usecases.accounts import ProviderFactory, account_context
from mailsync.usecases.client import own_message
from mailsync.usecases.reading import summary

SmtpSend = Callable[..., dict[str, dict[str, Any]]]


class TooLarge(MailsyncError):
    status, code = 413, "too_large"


def _sent_folder(states: dict[str, Any]) -> str | None:
    for name, st in states.items():
        if st.role == "sent":
            return name
    for name in states:
        if name.rsplit("/", 1)[-1].lower() in (
            "sent",
            "sent items",
            "sent messages",
            "gesendet",
            "gesendete elemente",
        ):
            return name
    return None


def _decode_attachments(items: list[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
    out = []
    for i, a in enumerate(items):
        try:
            data = base64.b64decode(a["content_base64"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise Unprocessable(
                f"attachments[{i}].content_base64 is not valid base64", code="invalid_request"
            ) from e
        out.append((a["filename"], a.get("content_type") or "application/octet-stream", data))
    return out


def send(
    tenant_id: str,
    user_id: str,
    account_id: str,
    request: dict[str, Any],
    *,
    provider_factory: ProviderFactory = connectors.open_provider,
    smtp_send: SmtpSend = smtp.send,
) -> dict[str, Any]:
    acc = repo.get_account(tenant_id, account_id)
    if acc is None or acc.owner != user_id or acc.state == "deleting":
        raise NotFound("account not found")
    settings = acc.settings
    try:
        sender = compose_mod.parse_address({"name": None, "email": acc.email})
        to = [compose_mod.parse_address(a) for a in request.get("to") or []]
        cc = [compose_mod.parse_address(a) for a in request.get("cc") or []]
        bcc = [compose_mod.parse_address(a) for a in request.get("bcc") or []]
    except compose_mod.InvalidAddress as e:
        raise Unprocessable(str(e), code="invalid_address") from e
    if not (to or cc or bcc):
        raise Unprocessable("at least one recipient (to, cc or bcc) is required", code="invalid_address")

    reply_headers = None
    parent: dict[str, Any] = {}
    if request.get("reply_to"):
        parent = own_message(tenant_id, user_id, request["reply_to"])
        if not parent.get("header_message_id"):
            raise Unprocessable("the message replied to has no Message-ID", code="invalid_request")
        reply_headers = (parent["header_message_id"], list(parent.get("references") or []))

    attachments = _decode_attachments(request.get("attachments") or [])
    if sum(len(d) for _, _, d in attachments) > compose_mod.MAX_MESSAGE_BYTES:
        raise TooLarge("attachments exceed 25 MB in total")
    try:
        _msg, raw, header_id = compose_mod.compose(
            sender=sender,
            to=to,
            cc=cc,
            bcc=bcc,
            subject=request.get("subject") or "",
            text=request.get("text"),
            html=request.get("html"),
            signature=settings.signature,
            reply_to_headers=reply_headers,
            attachments=attachments,
            message_id_domain=acc.email.rsplit("@", 1)[-1],
        )
    except compose_mod.TooLarge as e:
        raise TooLarge(f"the message exceeds {compose_mod.MAX_MESSAGE_BYTES // (1024 * 1024)} MB") from e
    except compose_mod.InvalidAddress as e:
        raise Unprocessable(str(e), code="invalid_address") from e

    recipients = compose_mod.envelope_recipients(to, cc, bcc)
    mail = Outgoing(raw, compose_mod.smtp_address(sender), recipients, parent, provider_factory, smtp_send)
    try:
        delivered = connectors.for_account(acc).send(acc, mail)
    except MailsyncError as e:
        details = e.details if isinstance(e.details, dict) else {}
        _record(acc, "failed", header_id, details.get("recipients") or [], e)
        raise
    results, sent_ref, thread_hint = delivered.recipients, delivered.sent_ref, delivered.thread_hint
    _record(acc, "succeeded", header_id, _recipient_list(results), None)
    logger.info(
        "mail sent", extra={"tenant_id": tenant_id, "account_id": account_id, "recipients": len(recipients)}
    )

    stored = _file_and_store(acc, raw, header_id, provider_factory, sent_ref, thread_hint)
    mid = message_id_for(tenant_id, account_id, mime.message_key(mime.parse_message(raw), raw))
    try:
        view = summary(own_message(tenant_id, user_id, mid)) if stored else None
    except NotFound:
        view = None
    now = iso(utcnow())
    if view is None:  # Sent is not mirrored: still answer with what was sent
        view = {
            "id": mid,
            "account_id": account_id,
            "thread_id": None,
            "folder": None,
            "subject": request.get("subject") or "",
            "from": [sender.as_dict()],
            "to": [a.as_dict() for a in to],
            "cc": [a.as_dict() for a in cc],
            "date": now,
            "received_at": now,
            "snippet": "",
            "unread": False,
            "has_attachments": bool(attachments),
            "visibility": settings.visibility,
        }
    return {
        **view,
        "message_id": header_id,
        "mirrored": stored,
        "recipients": _recipient_list(results),
    }


def _record(
    acc: Account, status: str, message_id: str, recipients: list[dict[str, Any]], e: MailsyncError | None
) -> None:
    """The send record (``store/sends.py``): its write is the ``send.*`` event. The message
    of a failure is the one the API answered (already scrubbed of secrets)."""
    error = None if e is None else {"code": e.code, "message": e.message}
    recipients = [
        {"email": r.get("email"), "status": r.get("status"), "code": r.get("code"), "reply": r.get("reply")}
        for r in recipients
    ]  # as the send's answer lists them
    sends.record_send(
        acc.tenant_id,
        acc.account_id,
        acc.owner,
        status=status,
        message_id=message_id,
        recipients=recipients,
        error=error,
        at=iso(utcnow()),
    )


def _file_and_store(
    acc: Account,
    raw: bytes,
    header_id: str,
    provider_factory: ProviderFactory,
    sent_ref: str | None = None,
    thread_hint: str | None = None,
) -> bool:
    """APPEND to Sent (unless the provider does it) and mirror the copy. Never raises:
    the mail is already delivered, and a later sync will pick up the Sent copy."""
    store = DynamoMirrorStore(acc.tenant_id, acc.account_id)
    states = store.get_folders()
    sent = _sent_folder(states)
    if sent is None:
        return False
    now = datetime.now(UTC)
    ref: str | None = None
    try:
        if sent_ref is not None:
            ref = sent_ref  # the provider filed it and told us where
        elif acc.saves_sent:
            ref = PENDING + header_id.strip("<>")  # the provider finds it by Message-ID
        else:
            with provider_factory(acc, load_secrets(acc)) as provider:
                client: MailClient = provider  # type: ignore[assignment]
                uid = client.append(sent, raw, flags=("\\Seen",), date=now)
            ref = str(uid) if uid is not None else None
    except ProviderError as e:
        logger.warning("could not file the sent mail in Sent", extra={"error": str(e)})
        return False
    st = states[sent]
    if ref is None or not st.synced or st.cursor is None:
        return False
    engine = SyncEngine(store, account_context(acc, get_settings()))
    engine.apply_local([Upsert(sent, ref, raw, False, now, thread_hint=thread_hint)])
    return True


# ---------------------------------------------------------------- idempotency
def send_idempotent(
    tenant_id: str,
    user_id: str,
    account_id: str,
    request: dict[str, Any],
    idempotency_key: str | None,
    lambda_context: Any | None = None,
    **deps: Any,
) -> dict[str, Any]:
    """``send`` once per ``Idempotency-Key`` (scoped to tenant, user and account).

    With the invocation's ``lambda_context``, the in-progress record expires when the
    invocation's time is up: a send killed by a Lambda timeout (no exception handler ran, so
    Powertools could not delete the record) can be retried with the same key once the dead
    invocation's deadline has passed, instead of answering 409 ``request_in_progress`` until
    the record's 24 h expiry (Powertools idempotency, "Lambda timeouts").
    """
    if not idempotency_key:
        return send(tenant_id, user_id, account_id, request, **deps)
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    persistence = persistence_layer(DynamoDBPersistenceLayer, partition=keys.account(tenant_id, account_id))
    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="fingerprint",
        expires_after_seconds=24 * 3600,
    )
    if lambda_context is not None:
        config.register_lambda_context(lambda_context)

    @idempotent_function(data_keyword_argument="envelope", persistence_store=persistence, config=config)
    def _once(envelope: dict[str, Any]) -> dict[str, Any]:
        return send(tenant_id, user_id, account_id, request, **deps)

    fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
    try:
        return _once(
            envelope={
                "key": keys.send_idempotency(tenant_id, account_id, user_id, idempotency_key),
                "fingerprint": fingerprint,
            }
        )
    except IdempotencyValidationError as e:
        raise Unprocessable(
            "this Idempotency-Key was already used for a different request", code="idempotency_key_reused"
        ) from e
    except IdempotencyAlreadyInProgressError as e:
        raise Conflict(
            "a request with this Idempotency-Key is in progress", code="request_in_progress"
        ) from e
