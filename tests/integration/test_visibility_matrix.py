"""The visibility rules of issue 4 as a matrix, against the real mirror (Dovecot + moto).

viewer  x  message  ->  GET /v1/messages/{id}, the contact's history, the thread view,
and the viewer's own lists. The world is built once per module (read-only tests).

* ``owner``: alice, owner of both accounts, sees everything of them.
* ``listed``: bob, named in the contact's ``visible_to``.
* ``star``: carol, allowed through ``visible_to: ["*"]`` (of another contact).
* ``denied``: dave, a colleague not in ``visible_to``.
* ``foreign``: user "alice" of tenant t2 (which has a contact with the same id and address).

A colleague sees a message only if it is public AND linked AND they may see the contact.
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

# viewer -> (api key, user, the contact whose linked mails the cell is about)
VIEWERS = {
    "owner": ("key-t1", "alice", "k-listed"),
    "listed": ("key-t1", "bob", "k-listed"),
    "star": ("key-t1", "carol", "k-star"),
    "denied": ("key-t1", "dave", "k-listed"),
    "foreign": ("key-t2", "alice", "k-listed"),
}
CONTACT_KINDS = {"k-listed": "customer", "k-star": "intermediary"}
KINDS = ["public_linked", "public_unlinked", "private_linked", "private_unlinked"]


def may_see(viewer: str, kind: str) -> bool:
    return viewer == "owner" or (viewer in ("listed", "star") and kind == "public_linked")


@pytest.fixture(scope="module")
def world(dovecot: Any) -> Iterator[dict[str, Any]]:
    """Module-wide moto + tenants t1/t2 + alice's public and private accounts, synced once.

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
    for visibility in ("public", "private"):
        imap_user = dovecot.new_user(visibility)
        acc = connect(dovecot, imap_user, owner="alice", backfill_days=2)
        r = alice.patch(f"/v1/accounts/{acc['id']}/settings", {"visibility": visibility})
        assert r.status == 200 and r.body["settings"]["visibility"] == visibility, r.body
        user = imap_user[0]
        base = 0 if visibility == "public" else 10
        for i, (who, addr) in enumerate(
            [("k-listed", LISTED_ADDR), ("k-star", STAR_ADDR), (None, STRANGER)], start=base
        ):
            append(dovecot, user, i, f"{visibility} {who}", from_=addr, to=acc["email"])
        sync(acc)
        accs[visibility] = acc
        users[visibility] = user

    msgs = {m["subject"]: m for acc in accs.values() for m in mirror(acc)}
    assert len(msgs) == 6

    def cell(kind: str, contact: str) -> dict[str, Any]:
        visibility, linked = kind.split("_")
        return msgs[f"{visibility} {contact if linked == 'linked' else None}"]

    cells = {(kind, c): cell(kind, c) for kind in KINDS for c in ("k-listed", "k-star")}
    # Sanity of the set-up (as the owner sees it): links and stored visibility.
    for (kind, c), m in cells.items():
        detail = alice.get(f"/v1/messages/{m['id']}").body
        assert detail["visibility"] == kind.split("_")[0], detail
        assert contact_ids(alice, m["id"]) == ({c} if kind.endswith("_linked") else set())
    return {"accounts": accs, "users": users, "cells": cells}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("viewer", list(VIEWERS))
def test_visibility_matrix(world, viewer, kind):
    key, user, contact = VIEWERS[viewer]
    api = ApiClient(key, user)
    m = world["cells"][(kind, contact)]
    visible = may_see(viewer, kind)

    # 1. The message itself.
    r = api.get(f"/v1/messages/{m['id']}")
    assert r.status == (200 if visible else 404), (viewer, kind, r.status, r.body)
    if visible:
        assert r.body["id"] == m["id"]
        if kind.endswith("_linked"):
            expected = {"contact_id": contact, "kind": CONTACT_KINDS[contact], "source": "auto"}
            assert expected in r.body["links"], r.body["links"]
    else:
        assert r.body["code"] == "not_found"

    # 2. The contact's history (messages and threads).
    for what, item_id in (("messages", m["id"]), ("threads", m["thread_id"])):
        r = api.get(f"/v1/contacts/{contact}/{what}", limit=200)
        if viewer == "denied":
            assert r.status == 404, (what, r.body)  # may not see the contact at all
            continue
        assert r.status == 200, (what, r.body)
        ids = [item["id"] for item in r.body["items"]]
        expected_in_history = visible and kind.endswith("_linked")
        assert (item_id in ids) is expected_in_history, (viewer, kind, what, ids)

    # 3. The thread view (each of these mails is alone in its thread).
    r = api.get(f"/v1/threads/{m['thread_id']}")
    if visible:
        assert r.status == 200, r.body
        assert [x["id"] for x in r.body["messages"]] == [m["id"]]
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
