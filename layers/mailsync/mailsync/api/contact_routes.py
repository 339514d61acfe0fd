"""Routes of the CRM side: contacts, their histories, and manual thread links."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from mailsync.api import schemas
from mailsync.api.params import ContactId, Cursor, Id, Limit, caller, error_response, json_response
from mailsync.api.router import ApiRouter
from mailsync.domain.contact_search import MAX_QUERY_CHARS
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import contacts
else:
    contacts = lazy_module("mailsync.usecases.contacts")

router = ApiRouter()


@router.put(
    "/v1/contacts/<contact_id>",
    tags=["contacts"],
    summary="Create (201) or replace (200) a contact; links follow its addresses",
    responses={
        200: {"description": "Replaced", "content": {"application/json": {"model": schemas.Contact}}},
        201: {"description": "Created", "content": {"application/json": {"model": schemas.Contact}}},
        422: error_response(
            "Invalid body or id (`invalid_request`), or `invalid_address`: an email is not a bare "
            "RFC 5322 addr-spec"
        ),
    },
)
def put_contact(contact_id: ContactId, body: schemas.ContactIn) -> Response[Any]:
    t, _ = caller(router)
    view, created = contacts.put_contact(t, contact_id, body.model_dump())
    return json_response(201 if created else 200, view)


@router.post(
    "/v1/contacts:batch",
    tags=["contacts"],
    summary="Upsert up to 500 contacts (initial import)",
    responses={
        422: error_response(
            "Invalid body (`invalid_request`), or `invalid_address`: an email is not a bare RFC 5322 addr-spec"
        )
    },
)
def batch_contacts(body: schemas.ContactBatchIn) -> schemas.ContactBatchOut:
    t, _ = caller(router)
    items = contacts.batch_put(t, [c.model_dump() for c in body.contacts])
    return schemas.ContactBatchOut.model_validate({"items": items})


@router.get(
    "/v1/contacts",
    tags=["contacts"],
    summary="Find contacts the caller may see by the start of their name, a word of it, or an address",
    description=(
        "Prefix search for a contact picker. `q` is compared accent- and case-blind "
        '("mül", "MUL" and "Mül" all find "Hans Müller"; "hans mü" the full name; "erika@" an '
        "address). Only contacts whose `visible_to` holds the caller or `*` are searched: two "
        "Queries, never a Scan. No cursor: `has_more` says a longer `q` narrows the list."
    ),
    responses={
        422: error_response("`invalid_request`: `q` missing, empty or over 100 characters, or a bad `kind`")
    },
)
def search_contacts(
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="The prefix")],
    kind: Annotated[Literal["customer", "intermediary"] | None, Query(description="Only this kind")] = None,
    limit: Annotated[int, Query(ge=1, le=50, description="At most this many (default 20, max 50)")] = 20,
) -> schemas.ContactSearchOut:
    t, u = caller(router)
    return schemas.ContactSearchOut.model_validate(contacts.search_contacts(t, u, q, kind=kind, limit=limit))


@router.get("/v1/contacts/<contact_id>", tags=["contacts"], summary="A contact the caller may see")
def get_contact(contact_id: ContactId) -> schemas.Contact:
    t, u = caller(router)
    return schemas.Contact.model_validate(contacts.get_contact(t, u, contact_id))


@router.delete(
    "/v1/contacts/<contact_id>",
    tags=["contacts"],
    summary="Delete a contact and its links (mails stay)",
    status_code=204,
    response_description="Deleted",
)
def delete_contact(contact_id: ContactId):  # noqa: ANN201 - 204, no body
    t, _ = caller(router)
    contacts.delete_contact(t, contact_id)
    return Response(status_code=204, body=None)


@router.get(
    "/v1/contacts/<contact_id>/messages", tags=["contacts"], summary="The contact's history, newest first"
)
def contact_messages(contact_id: ContactId, limit: Limit = 50, cursor: Cursor = None) -> schemas.MessageList:
    t, u = caller(router)
    return schemas.MessageList.model_validate(
        contacts.contact_messages(t, u, contact_id, limit=limit, cursor=cursor)
    )


@router.get(
    "/v1/contacts/<contact_id>/threads", tags=["contacts"], summary="The contact's threads, newest first"
)
def contact_threads(contact_id: ContactId, limit: Limit = 50, cursor: Cursor = None) -> schemas.ThreadList:
    t, u = caller(router)
    return schemas.ThreadList.model_validate(
        contacts.contact_threads(t, u, contact_id, limit=limit, cursor=cursor)
    )


@router.post(
    "/v1/threads/<thread_id>/links",
    tags=["contacts"],
    summary="Link the thread's current messages to a contact (snapshot; follow=true links later ones too)",
    responses={
        201: {"description": "Linked", "content": {"application/json": {"model": schemas.ThreadLinkOut}}}
    },
)
def link_thread(thread_id: Id, body: schemas.ThreadLinkIn) -> Response[Any]:
    t, u = caller(router)
    return json_response(201, contacts.link_thread(t, u, thread_id, body.contact_id, body.follow))


@router.delete(
    "/v1/threads/<thread_id>/links/<contact_id>",
    tags=["contacts"],
    summary="Remove the thread's manual links to a contact",
    status_code=204,
    response_description="Unlinked",
)
def unlink_thread(thread_id: Id, contact_id: ContactId):  # noqa: ANN201 - 204, no body
    t, u = caller(router)
    contacts.unlink_thread(t, u, thread_id, contact_id)
    return Response(status_code=204, body=None)
