"""Read use cases: messages and threads, owner-only in this release.

Every read is one GetItem or one Query page (plus at most one more GetItem to
authorise a filter; a message's bodies are one ranged S3 GET of its raw object),
so an API call costs at most 3 DynamoDB requests. Pages are newest first; ``cursor`` is the
encoded LastEvaluatedKey and must belong to the partition being read.
"""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import GlobalSecondaryIndex

from mailsync.errors import InvalidCursor, NotFound
from mailsync.store import blobs, keys, repo
from mailsync.store.mirror import message_doc, thread_doc
from mailsync.store.models import MessageItem, ThreadItem


def link_views(doc: dict[str, Any]) -> list[dict[str, str]]:
    """``[{contact_id, kind, source}]``: one entry per contact and source (auto, manual)."""
    out = []
    for cid, link in sorted((doc.get("links") or {}).items()):
        if link.get("manual"):
            out.append({"contact_id": cid, "kind": link["kind"], "source": "manual"})
        if link.get("auto"):
            out.append({"contact_id": cid, "kind": link["kind"], "source": "auto"})
    return out


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {
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
        "visibility": doc.get("visibility") or "private",
        "links": link_views(doc),
    }


def thread_view(doc: dict[str, Any]) -> dict[str, Any]:
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


def page_cursor(tenant_id: str, cursor: str | None, attr: str, pk: str) -> dict[str, Any] | None:
    """Decode a page cursor of the index partition ``attr = pk``.

    Beyond the partition check of :func:`repo.decode_cursor`, the key must have exactly
    the table and index key attributes as short strings of this tenant: a tampered
    cursor is a 400, never a DynamoDB validation error (a 500).
    """
    lek = repo.decode_cursor(cursor, {attr: pk})
    if lek is None:
        return None
    expected = {"pk", "sk"} if attr == "pk" else {"pk", "sk", attr, attr[:-2] + "sk"}
    ok = set(lek) == expected and all(
        isinstance(v, dict)
        and set(v) == {"S"}
        and isinstance(v["S"], str)
        and 0 < len(v["S"].encode()) <= 1024
        for v in lek.values()
    )
    if not ok or not lek["pk"]["S"].startswith(keys.tenant(tenant_id) + "#"):
        raise InvalidCursor("cursor is not valid")
    return lek


def visible_message(tenant_id: str, user_id: str, mid: str) -> dict[str, Any]:
    try:
        item = MessageItem.get(keys.message(tenant_id, mid), "M")
    except DoesNotExist:
        raise NotFound("message not found") from None
    doc = message_doc(item)
    if doc.get("orphan"):
        raise NotFound("message not found")
    if doc["owner"] != user_id:
        from mailsync.usecases.contacts import visible_to_user

        if not visible_to_user(tenant_id, user_id, [doc]):
            raise NotFound("message not found")  # 404, never 403: do not reveal it exists
    return doc


def get_message(tenant_id: str, user_id: str, mid: str) -> dict[str, Any]:
    doc = visible_message(tenant_id, user_id, mid)
    text, html = _render_body(doc)
    return {
        **summary(doc),
        "bcc": doc.get("bcc") or [],
        "reply_to": doc.get("reply_to") or [],
        "text": text,
        "html": html,  # sanitized (domain.sanitize)
        "attachments": doc.get("attachments") or [],
        "headers": {
            "message_id": doc.get("header_message_id"),
            "in_reply_to": doc.get("in_reply_to"),
            "references": doc.get("references") or [],
        },
    }


def _render_body(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(text, sanitized html)`` of a message, rendered from its raw object.

    Ingest only located the body parts (``domain.scan``): one ranged GET reads the
    bytes from the first to the last of them, whatever the attachments weigh. A
    message without locations (unusual MIME, or filed before they were kept) is
    parsed whole.
    """
    from mailsync.domain import mime  # the parsers load on the first read, not at cold start

    parts = doc.get("body_parts")
    if parts is None:
        parsed = mime.parse_message(blobs.get(doc["raw_key"]))
        return parsed.text, parsed.html
    if not parts:
        return None, None
    start = min(int(p["start"]) for p in parts)
    data = blobs.get_range(doc["raw_key"], start, max(int(p["end"]) for p in parts))
    return mime.render_located(
        (p["kind"], data[int(p["start"]) - start : int(p["end"]) - start], p["cte"], p["charset"])
        for p in parts
    )


def _thread(tenant_id: str, user_id: str, thread_id: str) -> dict[str, Any]:
    try:
        doc = thread_doc(ThreadItem.get(keys.thread(tenant_id, thread_id), "TH"))
    except DoesNotExist:
        raise NotFound("thread not found") from None
    if doc["owner"] != user_id:
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
) -> dict[str, Any]:
    index: GlobalSecondaryIndex[MessageItem]
    if unassigned:
        index, pk, attr = MessageItem.unassigned, keys.owner_unassigned(tenant_id, user_id), "gsi5pk"
    elif thread_id:
        _thread(tenant_id, user_id, thread_id)
        index, pk, attr = MessageItem.by_thread, keys.thread_messages(tenant_id, thread_id), "gsi4pk"
    elif account_id:
        acc = repo.get_account(tenant_id, account_id)
        if acc is None or acc["owner"] != user_id:
            raise NotFound("account not found")
        if folder:
            index, pk, attr = (
                MessageItem.by_folder,
                keys.folder_messages(tenant_id, account_id, folder),
                "gsi3pk",
            )
        else:
            index, pk, attr = MessageItem.by_account, keys.account_messages(tenant_id, account_id), "gsi2pk"
    else:
        index, pk, attr = MessageItem.by_owner, keys.owner_messages(tenant_id, user_id), "gsi1pk"
    lek = page_cursor(tenant_id, cursor, attr, pk)
    it = index.query(pk, scan_index_forward=False, limit=limit, page_size=limit, last_evaluated_key=lek)
    items = []
    for m in it:
        doc = message_doc(m)
        if folder and thread_id and doc["folder"] != folder:
            continue
        items.append(summary(doc))
    return {"items": items, "next_cursor": repo.encode_cursor(it.last_evaluated_key)}


def list_threads(
    tenant_id: str, user_id: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    pk = keys.owner_threads(tenant_id, user_id)
    lek = page_cursor(tenant_id, cursor, "gsi1pk", pk)
    it = ThreadItem.by_owner.query(
        pk, scan_index_forward=False, limit=limit, page_size=limit, last_evaluated_key=lek
    )
    items = [thread_view(thread_doc(t)) for t in it]
    return {"items": items, "next_cursor": repo.encode_cursor(it.last_evaluated_key)}


def get_thread(tenant_id: str, user_id: str, thread_id: str) -> dict[str, Any]:
    """The owner sees the whole thread; a colleague only the messages they may see
    (404 when that is none of them)."""
    try:
        th = thread_doc(ThreadItem.get(keys.thread(tenant_id, thread_id), "TH"))
    except DoesNotExist:
        raise NotFound("thread not found") from None
    docs = [
        message_doc(m)
        for m in MessageItem.by_thread.query(
            keys.thread_messages(tenant_id, thread_id), scan_index_forward=True
        )
    ]
    view = thread_view(th)
    if th["owner"] != user_id:
        from mailsync.usecases.contacts import visible_to_user

        docs = visible_to_user(tenant_id, user_id, docs)
        if not docs:
            raise NotFound("thread not found")
        view.update(
            message_count=len(docs),
            unread_count=sum(1 for d in docs if d["unread"]),
            last_date=docs[-1]["received_at"],
            snippet=docs[-1].get("snippet") or "",
            participants=list(
                {
                    (d.get("from") or [{}])[0].get("email"): (d.get("from") or [{}])[0]
                    for d in docs
                    if d.get("from")
                }.values()
            ),
        )
        view["unread"] = view["unread_count"] > 0
    return {**view, "messages": [summary(d) for d in docs]}
