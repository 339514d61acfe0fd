"""The mail client writes through to the real mailbox (Dovecot) and the mirror follows
without duplicates: read state, moves (synced and unsynced targets), delete, threads."""

from __future__ import annotations

import pytest

from mailsync.errors import NotFound
from mailsync.usecases import client, reading
from tests.support.accounts import connect, mirror, sync, thread
from tests.support.api import ApiClient
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration


def flags(dovecot, user, folder):
    with dovecot.client(user) as c:
        c.select_folder(folder, readonly=True)
        uids = c.search()
        return {uid: set(d[b"FLAGS"]) for uid, d in c.fetch(uids, ["FLAGS"]).items()} if uids else {}


@pytest.fixture
def mailbox(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "INBOX", make_mail("Antrag", message_id="antrag@x"))
    dovecot.append(
        user,
        "INBOX",
        make_mail("Re: Antrag", message_id="antrag2@x", in_reply_to="antrag@x", references="antrag@x"),
    )
    sync(acc)
    return acc, user, {m["subject"]: m for m in mirror(acc)}


def test_mark_read_writes_through_and_sync_confirms(mailbox, dovecot):
    acc, user, msgs = mailbox
    api = ApiClient("key-t1", "alice")
    r = api.patch(f"/v1/messages/{msgs['Antrag']['id']}", {"unread": False})
    assert r.status == 200 and r.body["unread"] is False
    assert b"\\Seen" in flags(dovecot, user, "INBOX")[1]
    sync(acc)
    assert {m["subject"]: m["unread"] for m in mirror(acc)} == {"Antrag": False, "Re: Antrag": True}
    assert thread("t1", msgs["Antrag"]["thread_id"]).unread_count == 1
    r = api.patch(f"/v1/messages/{msgs['Antrag']['id']}", {"unread": True})
    assert r.body["unread"] is True and b"\\Seen" not in flags(dovecot, user, "INBOX")[1]


def test_move_to_synced_folder_keeps_id_thread_and_no_duplicate(mailbox, dovecot):
    acc, user, msgs = mailbox
    api = ApiClient("key-t1", "alice")
    r = api.patch(f"/v1/messages/{msgs['Antrag']['id']}", {"folder": "Archive"})
    assert r.status == 200 and r.body["folder"] == "Archive" and r.body["mirrored"] is True
    assert len(dovecot.uids(user, "Archive")) == 1 and len(dovecot.uids(user, "INBOX")) == 1
    detail = api.get(f"/v1/messages/{msgs['Antrag']['id']}").body
    assert detail["folder"] == "Archive" and detail["thread_id"] == msgs["Antrag"]["thread_id"]
    sync(acc)
    after = mirror(acc)
    assert len(after) == 2
    assert {m["id"]: m["folder"] for m in after}[msgs["Antrag"]["id"]] == "Archive"


def test_move_to_unsynced_folder_removes_from_mirror(mailbox, dovecot):
    acc, user, msgs = mailbox
    r = ApiClient("key-t1", "alice").patch(f"/v1/messages/{msgs['Antrag']['id']}", {"folder": "Junk"})
    assert r.status == 200 and r.body["mirrored"] is False
    assert [m["subject"] for m in mirror(acc)] == ["Re: Antrag"]
    assert len(dovecot.uids(user, "Junk")) == 1
    sync(acc)
    assert [m["subject"] for m in mirror(acc)] == ["Re: Antrag"]


def test_delete_moves_to_trash_then_purges(mailbox, dovecot):
    acc, user, msgs = mailbox
    api = ApiClient("key-t1", "alice")
    assert api.delete(f"/v1/messages/{msgs['Antrag']['id']}").status == 204
    assert len(dovecot.uids(user, "Trash")) == 1 and len(dovecot.uids(user, "INBOX")) == 1
    assert api.get(f"/v1/messages/{msgs['Antrag']['id']}").status == 404
    sync(acc)
    assert [m["subject"] for m in mirror(acc)] == ["Re: Antrag"]

    # With Trash synced, a second delete of a mail in Trash purges it at the provider.
    ApiClient("key-t1", "alice").patch(
        f"/v1/accounts/{acc['id']}/settings", {"folder_mode": "selected", "folders": ["INBOX", "Trash"]}
    )
    sync(acc)
    in_trash = [m for m in mirror(acc) if m["folder"] == "Trash"]
    assert [m["subject"] for m in in_trash] == ["Antrag"]
    assert api.delete(f"/v1/messages/{in_trash[0]['id']}").status == 204
    assert dovecot.uids(user, "Trash") == []
    sync(acc)
    assert [m["subject"] for m in mirror(acc)] == ["Re: Antrag"]


def test_thread_patch_applies_to_every_message(mailbox, dovecot):
    acc, user, msgs = mailbox
    api = ApiClient("key-t1", "alice")
    r = api.call(
        "PATCH", f"/v1/threads/{msgs['Antrag']['thread_id']}", {"unread": False, "folder": "Archive"}
    )
    assert r.status == 200, r.body
    assert {(m["folder"], m["unread"]) for m in r.body["items"]} == {("Archive", False)}
    assert dovecot.uids(user, "INBOX") == [] and len(dovecot.uids(user, "Archive")) == 2
    assert all(b"\\Seen" in f for f in flags(dovecot, user, "Archive").values())
    sync(acc)
    assert {(m["subject"], m["folder"], m["unread"]) for m in mirror(acc)} == {
        ("Antrag", "Archive", False),
        ("Re: Antrag", "Archive", False),
    }
    th = reading.get_thread("t1", "alice", msgs["Antrag"]["thread_id"])
    assert th["message_count"] == 2 and th["unread"] is False


def test_errors(mailbox, dovecot):
    acc, user, msgs = mailbox
    mid = msgs["Antrag"]["id"]
    assert ApiClient("key-t1", "bob").patch(f"/v1/messages/{mid}", {"unread": False}).status == 404
    assert ApiClient("key-t2", "alice").patch(f"/v1/messages/{mid}", {"unread": False}).status == 404
    assert ApiClient("key-t2", "alice").delete(f"/v1/messages/{mid}").status == 404
    r = ApiClient("key-t1", "alice").patch(f"/v1/messages/{mid}", {"folder": "Nope"})
    assert r.status == 422 and r.body["code"] == "unknown_folder"
    r = ApiClient("key-t1", "alice").patch(f"/v1/messages/{mid}", {})
    assert r.status == 422

    # The provider refuses (the folder vanished behind our back): 502, local state unchanged.
    dovecot.create_folder(user, "Kunden")
    sync(acc)
    dovecot.delete_folder(user, "Kunden")
    r = ApiClient("key-t1", "alice").patch(f"/v1/messages/{mid}", {"folder": "Kunden", "unread": False})
    assert r.status == 502 and r.body["code"] == "provider_error" and r.body["message"]
    assert {m["subject"]: (m["folder"], m["unread"]) for m in mirror(acc)}["Antrag"] == ("INBOX", True)
    with pytest.raises(NotFound):
        client.update_message("t1", "alice", "m_does_not_exist", unread=True)


def test_attachments_download_for_received_mail(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    dovecot.append(
        user, "INBOX", make_mail("mit Anhang", attachment=("Police Nr. 1.pdf", "application/pdf", pdf))
    )
    sync(acc)
    (m,) = mirror(acc)
    api = ApiClient("key-t1", "alice")
    detail = api.get(f"/v1/messages/{m['id']}").body
    (att,) = detail["attachments"]
    assert att["filename"] == "Police Nr. 1.pdf" and att["size"] == len(pdf)
    status, headers, body = api.raw("GET", f"/v1/messages/{m['id']}/attachments/{att['id']}")
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    assert body == pdf
    assert "Police" in headers["Content-Disposition"]
    assert api.get(f"/v1/messages/{m['id']}/attachments/99").status == 404
    assert ApiClient("key-t1", "bob").get(f"/v1/messages/{m['id']}/attachments/{att['id']}").status == 404


def test_large_attachment_redirects_to_a_short_lived_url(tenant, dovecot, imap_user):
    import boto3

    from mailsync.config import get_settings

    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    big = bytes(range(256)) * (6 * 1024 * 4)  # 6 MiB
    dovecot.append(user, "INBOX", make_mail("gross", attachment=("scan.tif", "image/tiff", big)))
    sync(acc)
    (m,) = mirror(acc)
    att = ApiClient("key-t1", "alice").get(f"/v1/messages/{m['id']}").body["attachments"][0]
    status, headers, _ = ApiClient("key-t1", "alice").raw(
        "GET", f"/v1/messages/{m['id']}/attachments/{att['id']}"
    )
    assert status == 302 and "X-Amz-Expires=300" in headers["Location"], headers
    from urllib.parse import unquote, urlsplit

    key = unquote(urlsplit(headers["Location"]).path).lstrip("/")
    s3 = boto3.client("s3")
    obj = s3.get_object(Bucket=get_settings().bucket, Key=key)
    assert obj["Body"].read() == big and obj["ContentType"] == "image/tiff"

    # Deleted at the provider: the copy goes with the mail (mirror, don't archive).
    prefix = key.rsplit("/m/", 1)[0] + "/m/"
    dovecot.delete(user, "INBOX", dovecot.uids(user, "INBOX"))
    sync(acc)
    sync(acc)  # an orphan is purged after one more pass over the folders
    assert mirror(acc) == []
    assert s3.list_objects_v2(Bucket=get_settings().bucket, Prefix=prefix).get("KeyCount") == 0
