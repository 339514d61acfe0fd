"""The visibility rules of issues 4 and 16 as a matrix, against the real mirror (Dovecot + moto).

viewer  x  message  ->  GET /v1/messages/{id}, its attachment, the contact's history
(messages and threads), the thread view, and the viewer's own lists. The world is built
once per module (read-only tests).

* ``owner``: alice, owner of every account, sees everything of them, in full.
* ``listed``: bob, named in the contact's ``visible_to``.
* ``star``: carol, allowed through ``visible_to: ["*"]`` (of another contact).
* ``denied``: dave, a colleague not in ``visible_to``.
* ``foreign``: user "alice" of tenant t2 (which has a contact with the same id and address).

Messages: one account per sharing level (``private``, ``metadata``, ``subject``, ``public``),
each with a mail linked to a contact and one linked to none, plus two mails whose owner
changed the level after the fact (``PATCH /v1/messages/{id}``): ``shared`` (stored private,
made public) and ``hidden`` (stored public, made private).

A colleague sees a message only if its level is not private AND it is linked AND they may
see the contact; then ``metadata`` withholds subject, snippet, body and attachments,
``subject`` the body and attachments, ``public`` nothing. A withheld body or attachment
answers 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import (
    append,
    contact_ids,
    history,
    own_message_ids,
    own_thread_ids,
    put_contact,
    unassigned,
)

pytestmark = pytest.mark.integration

REGION = "eu-central-1"
LISTED_ADDR = "kunde@kunde.test"
STAR_ADDR = "makler@makler.test"
STRANGER = "fremd@nowhere.test"
ATTACHMENT = ("police.pdf", "application/pdf", b"%PDF-1.4 Police 4711\n")

# viewer -> (api key, user, the contact whose linked mails the cell is about)
VIEWERS = {
    "owner": ("key-t1", "alice", "k-listed"),
    "listed": ("key-t1", "bob", "k-listed"),
    "star": ("key-t1", "carol", "k-star"),
    "denied": ("key-t1", "dave", "k-listed"),
    "foreign": ("key-t2", "alice", "k-listed"),
}
CONTACT_KINDS = {"k-listed": "customer", "k-star": "intermediary"}
ACCOUNT_LEVELS = ("private", "metadata", "subject", "public")
# The level a mail has now: the account's at ingest, or the owner's override.
OVERRIDES = {"shared": ("private", "public"), "hidden": ("public", "private")}
LEVEL = {**{lv: lv for lv in ACCOUNT_LEVELS}, **{k: v[1] for k, v in OVERRIDES.items()}}
KINDS = [f"{lv}_{linked}" for lv in ACCOUNT_LEVELS for linked in ("linked", "unlinked")] + [
    f"{k}_linked" for k in OVERRIDES
]
WITHHELD = {
    "metadata": ["subject", "snippet", "body", "attachments"],
    "subject": ["body", "attachments"],
    "public": [],
}


def level_of(kind: str) -> str:
    return LEVEL[kind.split("_")[0]]


def may_see(viewer: str, kind: str) -> bool:
    shared = level_of(kind) != "private" and kind.endswith("_linked")
    return viewer == "owner" or (viewer in ("listed", "star") and shared)


def withheld(viewer: str, kind: str) -> list[str]:
    return [] if viewer == "owner" else WITHHELD[level_of(kind)]


@pytest.fixture(scope="module")
def world(dovecot: Any) -> Iterator[dict[str, Any]]:
    """Module-wide moto + tenants t1/t2 + alice's accounts, one per level, synced once.

    The same set-up as the ``aws``/``tenant`` fixtures of tests/conftest.py, module-scoped.
    """
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "MAILSYNC_ALLOW_PRIVATE_HOSTS": "1",
        }.items():
            mp.setenv(k, v)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            from mailsync.config import get_settings
            from mailsync.store import aws as aws_mod
            from mailsync.store import models, tenants
            from mailsync_local import runner

            env = runner.provision(endpoint=None)  # type: ignore[arg-type]
            for k, v in env.items():
                mp.setenv(k, v)
            get_settings.cache_clear()
            aws_mod.reset()
            models.bind(env["MAILSYNC_TABLE"], host=None, region=REGION)
            try:
                tenants.create_tenant("t1", "Tenant One", "key-t1", "2026-01-01T00:00:00Z")
                tenants.create_tenant("t2", "Tenant Two", "key-t2", "2026-01-01T00:00:00Z")
                yield _build(dovecot)
            finally:
                get_settings.cache_clear()
                aws_mod.reset()


def _build(dovecot: Any) -> dict[str, Any]:
    alice = ApiClient("key-t1", "alice")
    put_contact(alice, "k-listed", [LISTED_ADDR], visible_to=["alice", "bob"])
    put_contact(alice, "k-star", [STAR_ADDR], kind="intermediary", visible_to=["*"])
    # Another tenant's contact with the same id and address must never see t1's mail.
    put_contact(ApiClient("key-t2", "alice"), "k-listed", [LISTED_ADDR], visible_to=["*"])

    accs: dict[str, Any] = {}
    users: dict[str, str] = {}
    for n, visibility in enumerate(ACCOUNT_LEVELS):
        imap_user = dovecot.new_user(visibility)
        acc = connect(dovecot, imap_user, owner="alice", backfill_days=2)
        r = alice.patch(f"/v1/accounts/{acc['id']}/settings", {"visibility": visibility})
        assert r.status == 200 and r.body["settings"]["visibility"] == visibility, r.body
        user = imap_user[0]
        mails = [
            (visibility, "k-listed", LISTED_ADDR),
            (visibility, "k-star", STAR_ADDR),
            (visibility, None, STRANGER),
        ]
        mails += [
            (k, c, a)
            for k, (stored, _) in OVERRIDES.items()
            if stored == visibility
            for c, a in (("k-listed", LISTED_ADDR), ("k-star", STAR_ADDR))
        ]
        for i, (kind, who, addr) in enumerate(mails, start=10 * n):
            append(dovecot, user, i, f"{kind} {who}", from_=addr, to=acc["email"], attachment=ATTACHMENT)
        sync(acc)
        accs[visibility] = acc
        users[visibility] = user

    msgs = {m["subject"]: m for acc in accs.values() for m in mirror(acc)}
    assert len(msgs) == 3 * len(ACCOUNT_LEVELS) + 2 * len(OVERRIDES)
    for k, (_, now) in OVERRIDES.items():  # the owner shares or hides single mails after the fact
        for c in ("k-listed", "k-star"):
            r = alice.patch(f"/v1/messages/{msgs[f'{k} {c}']['id']}", {"visibility": now})
            assert r.status == 200 and r.body["visibility"] == now, r.body

    def cell(kind: str, contact: str) -> dict[str, Any]:
        name, linked = kind.split("_")
        return msgs[f"{name} {contact if linked == 'linked' else None}"]

    cells = {(kind, c): cell(kind, c) for kind in KINDS for c in ("k-listed", "k-star")}
    # Sanity of the set-up (as the owner sees it): links, level and the attachment.
    for (kind, c), m in cells.items():
        detail = alice.get(f"/v1/messages/{m['id']}").body
        assert detail["visibility"] == level_of(kind), detail
        assert [a["filename"] for a in detail["attachments"]] == [ATTACHMENT[0]], detail
        m["attachment_id"] = detail["attachments"][0]["id"]
        assert contact_ids(alice, m["id"]) == ({c} if kind.endswith("_linked") else set())
    return {"accounts": accs, "users": users, "cells": cells}


def check_view(item: dict[str, Any], m: dict[str, Any], hidden: list[str]) -> None:
    """A summary as the viewer gets it: what is withheld is null and listed in ``redacted``."""
    assert item["redacted"] == hidden, item
    assert (item["subject"] is None) is ("subject" in hidden), item
    assert (item["snippet"] is None) is ("snippet" in hidden), item
    if "subject" not in hidden:
        assert item["subject"] == m["subject"]
    assert item["from"] and item["date"] and item["thread_id"] == m["thread_id"]
    assert item["attachment_count"] == 1, item


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("viewer", list(VIEWERS))
def test_visibility_matrix(world, viewer, kind):
    key, user, contact = VIEWERS[viewer]
    api = ApiClient(key, user)
    m = world["cells"][(kind, contact)]
    visible = may_see(viewer, kind)
    hidden = withheld(viewer, kind) if visible else []
    full = visible and "body" not in hidden

    # 1. The message itself (its body) and its attachment: 404 where withheld.
    r = api.get(f"/v1/messages/{m['id']}")
    assert r.status == (200 if full else 404), (viewer, kind, r.status, r.body)
    if full:
        assert r.body["id"] == m["id"] and r.body["subject"] == m["subject"]
        if kind.endswith("_linked"):
            expected = {"contact_id": contact, "kind": CONTACT_KINDS[contact], "source": "auto"}
            assert expected in r.body["links"], r.body["links"]
    else:
        assert r.body["code"] == "not_found"
    status, _, data = api.raw("GET", f"/v1/messages/{m['id']}/attachments/{m['attachment_id']}")
    assert status == (200 if full else 404), (viewer, kind, status)
    if full:
        assert data == ATTACHMENT[2]

    # 2. The contact's history (messages and threads).
    for what, item_id in (("messages", m["id"]), ("threads", m["thread_id"])):
        r = api.get(f"/v1/contacts/{contact}/{what}", limit=200)
        if viewer == "denied":
            assert r.status == 404, (what, r.body)  # may not see the contact at all
            continue
        assert r.status == 200, (what, r.body)
        items = {item["id"]: item for item in r.body["items"]}
        expected_in_history = visible and kind.endswith("_linked")
        assert (item_id in items) is expected_in_history, (viewer, kind, what, list(items))
        if expected_in_history and what == "messages":
            check_view(items[item_id], m, hidden)
        if expected_in_history and what == "threads":
            assert (items[item_id]["subject"] is None) is ("subject" in hidden), items[item_id]

    # 3. The thread view (each of these mails is alone in its thread), redacted as above.
    r = api.get(f"/v1/threads/{m['thread_id']}")
    if visible:
        assert r.status == 200, r.body
        assert [x["id"] for x in r.body["messages"]] == [m["id"]]
        check_view(r.body["messages"][0], m, hidden)
    else:
        assert r.status == 404 and r.body["code"] == "not_found", r.body

    # 4. The viewer's own lists: only the owner has it there.
    assert (m["id"] in own_message_ids(api)) is (viewer == "owner")
    assert (m["thread_id"] in own_thread_ids(api)) is (viewer == "owner")
    assert (m["id"] in unassigned(api)) is (viewer == "owner" and kind.endswith("_unlinked"))


def test_colleague_sees_only_the_visible_part_of_a_thread(world, dovecot):
    """A thread with a linked public mail and an unlinked public reply: bob sees the first only."""
    acc = world["accounts"]["public"]
    alice, bob, dave = (ApiClient("key-t1", u) for u in ("alice", "bob", "dave"))
    user = world["users"]["public"]
    append(dovecot, user, 30, "Frage", from_=LISTED_ADDR, to=acc["email"], message_id="frage@x")
    append(
        dovecot,
        user,
        31,
        "Fwd: Frage",
        from_=acc["email"],
        to=STRANGER,
        message_id="fwd@x",
        in_reply_to="frage@x",
        references="frage@x",
        folder="Sent",
    )
    sync(acc)
    msgs = {m["subject"]: m for m in mirror(acc)}
    q, fwd = msgs["Frage"], msgs["Fwd: Frage"]
    assert q["thread_id"] == fwd["thread_id"]
    th = q["thread_id"]

    assert [x["id"] for x in alice.get(f"/v1/threads/{th}").body["messages"]] == [q["id"], fwd["id"]]
    r = bob.get(f"/v1/threads/{th}")
    assert r.status == 200 and [x["id"] for x in r.body["messages"]] == [q["id"]], r.body
    assert bob.get(f"/v1/messages/{fwd['id']}").status == 404
    assert fwd["id"] not in history(bob, "k-listed")
    assert dave.get(f"/v1/threads/{th}").status == 404
    assert ApiClient("key-t2", "alice").get(f"/v1/threads/{th}").status == 404


def test_visibility_is_fixed_when_the_mail_is_stored(world, dovecot):
    """public -> private -> public: each mail keeps the setting its account had at ingest."""
    alice, bob, carol = (ApiClient("key-t1", u) for u in ("alice", "bob", "carol"))
    imap_user = dovecot.new_user("switch")
    user = imap_user[0]
    acc = connect(dovecot, imap_user, owner="alice", backfill_days=2)
    put_contact(alice, "k-switch", ["switch@kunde.test"], visible_to=["*"])

    def ingest(i: int, subject: str) -> str:
        append(dovecot, user, i, subject, from_="switch@kunde.test", to=acc["email"])
        sync(acc)
        return {m["subject"]: m["id"] for m in mirror(acc)}[subject]

    def set_visibility(v: str) -> None:
        r = alice.patch(f"/v1/accounts/{acc['id']}/settings", {"visibility": v})
        assert r.status == 200 and r.body["settings"]["visibility"] == v, r.body

    set_visibility("public")
    old = ingest(40, "vorher")
    set_visibility("private")
    new = ingest(41, "nachher")

    assert alice.get(f"/v1/messages/{old}").body["visibility"] == "public"
    assert alice.get(f"/v1/messages/{new}").body["visibility"] == "private"
    assert history(alice, "k-switch") == [new, old]
    for colleague in (bob, carol):
        assert colleague.get(f"/v1/messages/{old}").status == 200
        assert colleague.get(f"/v1/messages/{new}").status == 404
        assert history(colleague, "k-switch") == [old]

    set_visibility("public")
    newest = ingest(42, "wieder oeffentlich")
    assert alice.get(f"/v1/messages/{new}").body["visibility"] == "private"
    assert bob.get(f"/v1/messages/{new}").status == 404
    assert bob.get(f"/v1/messages/{newest}").status == 200
    assert history(bob, "k-switch") == [newest, old]
    assert history(alice, "k-switch") == [newest, new, old]
