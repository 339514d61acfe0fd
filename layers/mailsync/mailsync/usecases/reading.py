"""Read use cases: messages and threads, as ``usecases.visibility`` allows.

The owner sees every message of their accounts; a colleague sees a message only
through the visibility rules (public, linked to a contact they may see). A
message or thread one may not see is a 404, never a 403.

Every read is one GetItem or one Query page (plus at most one more GetItem to
authorise a filter; a message's bodies are one ranged S3 GET of its raw object),
so an API call costs at most 3 DynamoDB requests. Pages are newest first; ``cursor`` is the
encoded LastEvaluatedKey and must belong to the partition being read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailsync.domain.images import ImageLinks
from mailsync.domain.records import MessageDoc, Page, ThreadDoc, link_views
from mailsync.domain.visibility import withheld
from mailsync.errors import NotFound
from mailsync.store import accounts as accounts_repo
from mailsync.store import blobs
from mailsync.store.messages import MessageRepository
from mailsync.usecases.visibility import visible_to_user

__all__ = ["get_message", "get_thread", "list_messages", "list_threads", "summary"]


def summary(doc: MessageDoc, viewer: str | None = None) -> dict[str, Any]:
    """A message's summary as ``viewer`` may see it (None: its owner); a colleague's view of a
    ``metadata`` or ``subject`` mail has what its level withholds set to null (``redacted``)."""
    hidden = withheld(doc, viewer)
    view = {
        "id": doc["mid"],
        "account_id": doc["account_id"],
        "thread_id": doc["thread_id"],
        "folder": doc["folder"],
        "folders": sorted(doc.get("locs") or {}),
        "subject": doc.get("subject") or "",
        "from": doc.get("from") or [],
        "to": doc.get("to") or [],
        "cc": doc.get("cc") or [],
        "date": doc["date"],
        "received_at": doc["received_at"],
        "snippet": doc.get("snippet") or "",
        "unread": bool(doc.get("unread")),
        "has_attachments": bool(doc.get("has_attachments")),
        "attachment_count": len(doc.get("attachments") or []),
        "bulk": bool(doc.get("bulk")),
        "visibility": doc.get("visibility") or "private",
        "redacted": list(hidden),
        "links": link_views(doc),
        "quarantined": doc.get("quarantine_reason") is not None,
        "quarantine_reason": doc.get("quarantine_reason"),
    }
    for field in ("subject", "snippet"):
        if field in hidden:
            view[field] = None
    return view


def thread_view(doc: ThreadDoc) -> dict[str, Any]:
    return {
        "id": doc["thread_id"],
        "account_id": doc["account_id"],
        "subject": doc.get("subject") or "",
        "participants": doc.get("participants") or [],
        "message_count": int(doc.get("message_count") or 0),
        "last_date": doc.get("last_date") or "",
        "unread": int(doc.get("unread_count") or 0) > 0,
        "unread_count": int(doc.get("unread_count") or 0),
        "snippet": doc.get("snippet") or "",
    }


def visible_message(
    tenant_id: str, user_id: str, mid: str, messages: MessageRepository | None = None
) -> MessageDoc:
    doc = (messages or MessageRepository(tenant_id)).get(mid)
    if doc is None or doc.get("orphan"):
        raise NotFound("message not found")
    if doc["owner"] != user_id:
        if not visible_to_user(tenant_id, user_id, [doc]):
            raise NotFound("message not found")  # 404, never 403: do not reveal it exists
    return doc


def get_message(
    tenant_id: str, user_id: str, mid: str, *, base_url: str | None = None, load_images: bool = False
) -> dict[str, Any]:
    """One message with its bodies. ``base_url`` (our public URL) lets the html link its
    images through ``GET /v1/images/{token}`` (``usecases/images``): ``cid:`` images always,
    remote ones only with ``load_images``; ``remote_images`` counts the remote ones."""
    from mailsync.usecases import images

    doc = visible_message(tenant_id, user_id, mid)
    if "body" in withheld(doc, user_id):  # a redacted view is a summary only: no body to open
        raise NotFound("message not found")
    links = images.linker(tenant_id, mid, base_url, load=load_images)
    text, html = _render_body(doc, links)
    return {
        **summary(doc, user_id),
        "bcc": doc.get("bcc") or [],
        "reply_to": doc.get("reply_to") or [],
        "text": text,
        "html": html,  # sanitized (domain.sanitize)
        "remote_images": links.remote_images,
        "attachments": doc.get("attachments") or [],
        "headers": {
            "message_id": doc.get("header_message_id"),
            "in_reply_to": doc.get("in_reply_to"),
            "references": doc.get("references") or [],
        },
    }


def _render_body(doc: MessageDoc, links: ImageLinks) -> tuple[str | None, str | None]:
    """``(text, sanitized html)`` of a message, rendered from its raw object.

    Ingest only located the body parts (``domain.scan``): one ranged GET reads the
    bytes from the first to the last of them, whatever the attachments weigh. A
    message without locations (unusual MIME, or filed before they were kept) is
    parsed whole.
    """
    from mailsync.domain import mime  # the parsers load on the first read, not at cold start

    parts = doc.get("body_parts")
    if parts is None:
        parsed = mime.parse_message(blobs.get(doc["raw_key"]), links)
        return parsed.text, parsed.html
    if not parts:
        return None, None
    start = min(int(p["start"]) for p in parts)
    data = blobs.get_range(doc["raw_key"], start, max(int(p["end"]) for p in parts))
    located = (
        (p["kind"], data[int(p["start"]) - start : int(p["end"]) - start], p["cte"], p["charset"])
        for p in parts
    )
    return mime.render_located(located, links)


def _thread(messages: MessageRepository, user_id: str, thread_id: str) -> ThreadDoc:
    doc = messages.get_thread(thread_id)
    if doc is None or doc["owner"] != user_id:
        raise NotFound("thread not found")
    return doc


def list_messages(
    tenant_id: str,
    user_id: str,
    *,
    account_id: str | None = None,
    folder: str | None = None,
    thread_id: str | None = None,
    unassigned: bool = False,
    limit: int = 50,
    cursor: str | None = None,
    suggest: Callable[[str, str, list[MessageDoc]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``suggest`` (with ``unassigned``: ``usecases.suggestions.top_suggestions``) gives each
    item its ``suggestion``."""
    messages = MessageRepository(tenant_id)
    page: Page
    if unassigned:
        page = messages.page_unassigned(user_id, limit, cursor)
    elif thread_id:
        _thread(messages, user_id, thread_id)
        page = messages.page_of_thread(thread_id, limit, cursor)
    elif account_id:
        acc = accounts_repo.get_account(tenant_id, account_id)
        if acc is None or acc.owner != user_id:
            raise NotFound("account not found")
        if folder:
            page = messages.page_of_folder(account_id, folder, limit, cursor)
        else:
            page = messages.page_of_account(account_id, limit, cursor)
    else:
        page = messages.page_of_owner(user_id, limit, cursor)
    items = [summary(d) for d in page.items if not (folder and thread_id and d["folder"] != folder)]
    if suggest is not None and unassigned:
        top = suggest(tenant_id, user_id, page.items)
        for item in items:
            item["suggestion"] = top.get(item["id"])
    return {"items": items, "next_cursor": page.next_cursor}


def list_threads(
    tenant_id: str, user_id: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    page = MessageRepository(tenant_id).page_threads_of_owner(user_id, limit, cursor)
    return {"items": [thread_view(t) for t in page.items], "next_cursor": page.next_cursor}


def get_thread(tenant_id: str, user_id: str, thread_id: str) -> dict[str, Any]:
    """The owner sees the whole thread; a colleague only the messages they may see
    (404 when that is none of them)."""
    messages = MessageRepository(tenant_id)
    th = messages.get_thread(thread_id)
    if th is None:
        raise NotFound("thread not found")
    docs = messages.of_thread(thread_id)
    view = thread_view(th)
    if th["owner"] != user_id:
        docs = visible_to_user(tenant_id, user_id, docs)
        if not docs:
            raise NotFound("thread not found")
        view.update(
            message_count=len(docs),
            unread_count=sum(1 for d in docs if d["unread"]),
            last_date=docs[-1]["received_at"],
            snippet=summary(docs[-1], user_id)["snippet"],
            subject=view["subject"] if any("subject" not in withheld(d, user_id) for d in docs) else None,
            participants=list(
                {
                    (d.get("from") or [{}])[0].get("email"): (d.get("from") or [{}])[0]
                    for d in docs
                    if d.get("from")
                }.values()
            ),
        )
        view["unread"] = view["unread_count"] > 0
    return {**view, "messages": [summary(d, user_id) for d in docs]}
