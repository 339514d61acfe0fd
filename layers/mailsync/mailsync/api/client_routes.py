"""Routes of the built-in mail client: read state, move, delete (written through)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response

from mailsync.api import schemas
from mailsync.api.params import Id, caller, error_response
from mailsync.api.router import ApiRouter
from mailsync.errors import InvalidRequest
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import client
else:
    client = lazy_module("mailsync.usecases.client")

router = ApiRouter()

ATTACHMENT_CSP = "default-src 'none'; sandbox"
"""Content-Security-Policy of a served attachment: an ``.html`` attachment opened in the
browser anyway (a download manager, a preview) runs no script, loads nothing and gets a
unique origin (CSP Level 3 ``sandbox``), so it cannot read the API's origin."""


#: What a write-through change (mark, move, delete) may answer beyond the defaults.
_WRITE_THROUGH = {
    422: error_response("Invalid body (`invalid_request`), or `unknown_folder`: no such folder"),
    502: error_response("`provider_error`: the mail server refused or failed; nothing changed here"),
}


def _require_change(body: schemas.MessagePatchIn) -> None:
    if body.unread is None and body.folder is None and body.visibility is None:
        raise InvalidRequest("nothing to change: give unread, folder and/or visibility")


@router.patch(
    "/v1/messages/<message_id>",
    tags=["mail client"],
    summary="Mark read/unread and/or move",
    responses=_WRITE_THROUGH,
)
def patch_message(message_id: Id, body: schemas.MessagePatchIn) -> schemas.MessageChanged:
    _require_change(body)
    t, u = caller(router)
    if body.visibility is not None:  # local: first, so a refused move leaves it set, never half
        changed = client.set_visibility(t, u, message_id, body.visibility)
    if body.unread is not None or body.folder is not None:
        changed = client.update_message(t, u, message_id, unread=body.unread, folder=body.folder)
    return schemas.MessageChanged.model_validate(changed)


@router.delete(
    "/v1/messages/<message_id>",
    tags=["mail client"],
    summary="Move to Trash (purge if already there)",
    status_code=204,
    responses=_WRITE_THROUGH,
)
def delete_message(message_id: Id):  # noqa: ANN201 - 204, no body
    t, u = caller(router)
    client.delete_message(t, u, message_id)
    return Response(status_code=204, body=None)


@router.patch(
    "/v1/threads/<thread_id>",
    tags=["mail client"],
    summary="Apply read state / move to a whole thread",
    responses=_WRITE_THROUGH,
)
def patch_thread(thread_id: Id, body: schemas.MessagePatchIn) -> schemas.MessageChangedList:
    _require_change(body)
    if body.visibility is not None:
        raise InvalidRequest("visibility is set per message: PATCH /v1/messages/{id}")
    t, u = caller(router)
    items = client.update_thread(t, u, thread_id, unread=body.unread, folder=body.folder)
    return schemas.MessageChangedList.model_validate({"items": items})


@router.get(
    "/v1/messages/<message_id>/attachments/<attachment_id>",
    tags=["mail client"],
    summary="Download an attachment (302 to a short-lived URL when large)",
)
def get_attachment(message_id: Id, attachment_id: Id):  # noqa: ANN201 - binary body
    from email.utils import encode_rfc2231

    t, u = caller(router)
    found = client.get_attachment(t, u, message_id, attachment_id)
    if "redirect" in found:
        return Response(status_code=302, headers={"Location": found["redirect"]}, body=None)
    name = found["filename"] or "attachment"
    return Response(
        status_code=200,
        content_type=found["content_type"],
        body=found["data"],
        headers={
            # Always a download, never rendered inline; no content sniffing (a .txt that
            # looks like HTML stays text); and no script even when opened.
            "Content-Disposition": f"attachment; filename*={encode_rfc2231(name, 'utf-8')}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": ATTACHMENT_CSP,
        },
    )


@router.post(
    "/v1/accounts/<account_id>/send",
    tags=["mail client"],
    summary="Send a mail (signature appended, filed in Sent); Idempotency-Key makes retries safe",
    responses={
        202: {"description": "Sent", "content": {"application/json": {"model": schemas.SentMessage}}},
        409: error_response(
            "`request_in_progress`: a send with this Idempotency-Key has not finished; retry later"
        ),
        413: error_response("`too_large`: the message or its attachments exceed 25 MB; nothing is sent"),
        422: error_response(
            "Invalid body (`invalid_request`), or `invalid_address`: a recipient is not an RFC 5322 "
            "address, or there is none; `idempotency_key_reused`: the key was used for another "
            "request; nothing is sent"
        ),
        502: error_response(
            "Nothing was sent: `smtp_rejected`, `provider_error`, or `tls_error` (the SMTP "
            "certificate is not trusted or names another host, or no STARTTLS is offered)"
        ),
    },
)
def send_mail(account_id: Id, body: schemas.SendIn):  # noqa: ANN201 - 202 with SentMessage
    from mailsync.usecases.send import send_idempotent

    t, u = caller(router)
    resolver = router.api_resolver
    assert resolver is not None
    key = (resolver.current_event.headers.get("idempotency-key") or "").strip() or None
    if key is not None and len(key) > 200:
        raise InvalidRequest("Idempotency-Key must be at most 200 characters")
    request = body.model_dump(mode="json")
    result = send_idempotent(t, u, account_id, request, key, lambda_context=resolver.lambda_context)
    out = schemas.SentMessage.model_validate(result).model_dump(mode="json", by_alias=True)
    return Response(status_code=202, content_type="application/json", body=out)
