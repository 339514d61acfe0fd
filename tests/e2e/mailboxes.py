"""Mailbox drivers for the e2e scenarios: one scenario, run against every provider.

A driver acts as the user's mail client *at the provider* (new mail, read, move, archive,
trash, delete), connects the account through our public API, and looks at the provider's
side to check that our writes went through.

* :class:`ImapMailbox`: a fresh user on the session's Dovecot; sends through the session's
  SMTP server (which delivers into Dovecot, so a recipient is another Dovecot user).
* :class:`GoogleMailbox`: a fresh Workspace user on the session's :class:`FakeGoogle`,
  connected through the hosted OAuth flow over HTTP, as a browser would. Gmail sends itself
  (``messages.send``); the fake does not deliver anywhere, so the recipient side is the
  sender's SENT copy.
* :class:`MicrosoftMailbox`: a fresh user on the session's :class:`FakeGraph`, connected
  through the hosted OAuth flow (msal) over HTTP. Graph sends itself and delivers to the
  fake's users, so the recipient is another fake user and a mail to ourselves has a Sent
  and an Inbox copy (as with IMAP). Folders are Graph display names.

A :class:`Ref` points at one mail at the provider: its Message-ID (IMAP UIDs change on a
move, so IMAP refs are found by Message-ID), its Gmail id or its Graph immutable id, and its
current folder.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

import requests

from tests.support.dovecot import make_mail

if TYPE_CHECKING:
    from tests.e2e.conftest import Service
    from tests.fakes.gmail import FakeGoogle
    from tests.fakes.graph import FakeGraph
    from tests.support.dovecot import Dovecot
    from tests.support.smtp import SmtpServer

REDIRECT = "http://127.0.0.1:8999/e2e/oauth-done"  # the dev tenant allows http://127.0.0.1:*
# Gmail labels that are no folder of ours (flags and categories), see GmailProvider.
_NOT_FOLDERS = {"UNREAD", "STARRED", "IMPORTANT", "CHAT"}


@dataclass
class Ref:
    id: str  # IMAP: the Message-ID (no brackets); Gmail: the message id
    folder: str
    message_id: str


def _bare(mid: str) -> str:
    return mid.strip().strip("<>")


class Mailbox(Protocol):
    provider: str
    inbox: str  # folder names as our API reports them
    sent: str
    extra: str  # another folder that is synced in folder_mode "all"
    trash_folder: str
    self_address: str
    recipient: str  # an address the send tests write to

    def user(self, name: str) -> str: ...
    def connect(
        self,
        http: requests.Session,
        *,
        backfill_days: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> dict[str, Any]: ...
    def sync(self, http: requests.Session, account_id: str) -> None: ...
    def deliver(
        self,
        subject: str,
        from_: str = ...,
        to: str | None = None,
        *,
        message_id: str | None = None,
        in_reply_to: str | None = None,
        references: str | None = None,
        date: datetime | None = None,
    ) -> Ref: ...
    def mark_read(self, ref: Ref) -> None: ...
    def move(self, ref: Ref, folder: str) -> None: ...
    def archive(self, ref: Ref) -> None: ...
    def trash(self, ref: Ref) -> None: ...
    def delete(self, ref: Ref) -> None: ...
    def create_folder(self, name: str) -> None: ...
    def ref_of(self, message: dict[str, Any]) -> Ref: ...
    def folders_of(self, ref: Ref) -> set[str]: ...
    def is_unread(self, ref: Ref) -> bool: ...
    def count(self, folder: str) -> int: ...
    def received(self, subject: str) -> int: ...
    def loopback(self) -> None: ...


class _Base:
    provider = ""

    def __init__(self, service: Service) -> None:
        self.service = service

    def user(self, name: str) -> str:
        """Our API user ``name`` for this run (IMAP keeps the plain name)."""
        return name if self.provider == "imap" else f"{name}-{self.provider}"

    def _oauth_account_id(self, callback: str, provider: str, **browser: Any) -> str:
        """Follow the provider's redirect back to our callback as a browser does (no tenant
        auth: the signed state carries it); the account id it redirects the user with."""
        assert callback.startswith(f"{self.service.url}/v1/oauth/{provider}/callback?"), callback
        back = requests.get(callback, allow_redirects=False, **browser)
        assert back.status_code == 302, (back.status_code, back.text)
        location = back.headers["Location"]
        query = parse_qs(urlsplit(location).query)
        assert location.startswith(REDIRECT + "?") and "account_id" in query, location
        return str(query["account_id"][0])

    def _connected(
        self, http: requests.Session, account_id: str, settings: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The connected account, with ``settings`` applied. The OAuth flow takes no settings,
        and a sync that is already running keeps the settings it started with (visibility is
        stamped at ingest), so the first sync finishes first."""
        url = self.service.url
        if settings:
            self.service.wait_for(
                lambda: http.get(f"{url}/v1/accounts/{account_id}").json()["state"] == "active",
                what="first sync",
            )
            r = http.patch(f"{url}/v1/accounts/{account_id}/settings", json=settings)
            assert r.status_code == 200, r.text
        r = http.get(f"{url}/v1/accounts/{account_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def sync(self, http: requests.Session, account_id: str) -> None:
        """``POST /v1/accounts/{id}/sync``; the scenario waits for what it expects."""
        r = http.post(f"{self.service.url}/v1/accounts/{account_id}/sync")
        assert r.status_code == 202, r.text

    def _raw(
        self,
        subject: str,
        from_: str,
        to: str | None,
        message_id: str | None,
        in_reply_to: str | None,
        references: str | None,
        date: datetime | None,
    ) -> tuple[str, bytes]:
        mid = _bare(message_id or f"{uuid.uuid4().hex}@example.com")
        raw = make_mail(
            subject,
            from_,
            to or self.self_address,  # type: ignore[attr-defined]
            message_id=mid,
            in_reply_to=in_reply_to,
            references=references,
            date=date,
        )
        return mid, raw


class ImapMailbox(_Base):
    provider = "imap"
    inbox, sent, extra, trash_folder = "INBOX", "Sent", "Archive", "Trash"
    archive_folder = "Junk"  # "archived" = out of every synced folder (Junk is never synced)

    def __init__(self, service: Service, dovecot: Dovecot, smtp: SmtpServer, imap_user: tuple[str, str]):
        super().__init__(service)
        self.dovecot, self.smtp = dovecot, smtp
        self.login, self.password = imap_user
        self.self_address = smtp.address(self.login)
        self._rcpt: str | None = None

    @property
    def recipient(self) -> str:
        if self._rcpt is None:
            self._rcpt, _ = self.dovecot.new_user("e2ercpt")
        return self.smtp.address(self._rcpt)

    def connect(
        self,
        http: requests.Session,
        *,
        backfill_days: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "email": self.self_address,
            "imap": {
                "host": self.dovecot.host,
                "port": self.dovecot.port,
                "security": "none",
                "username": self.login,
                "password": self.password,
            },
            "smtp": {
                "host": self.smtp.host,
                "port": self.smtp.port,
                "security": "none",
                "username": self.login,
                "password": self.password,
            },
        }
        if backfill_days is not None:
            body["backfill_days"] = backfill_days
        if settings:
            body["settings"] = settings
        r = http.post(f"{self.service.url}/v1/accounts", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def deliver(
        self,
        subject: str,
        from_: str = "Kunde <kunde@example.com>",
        to: str | None = None,
        *,
        message_id: str | None = None,
        in_reply_to: str | None = None,
        references: str | None = None,
        date: datetime | None = None,
    ) -> Ref:
        mid, raw = self._raw(subject, from_, to, message_id, in_reply_to, references, date)
        self.dovecot.append(self.login, self.inbox, raw, internal_date=date)
        return Ref(mid, self.inbox, mid)

    def _uids(self, folder: str, message_id: str) -> list[int]:
        with self.dovecot.client(self.login) as c:
            c.select_folder(folder, readonly=True)
            return sorted(c.search(["HEADER", "Message-ID", message_id]))

    def _uid(self, ref: Ref) -> int:
        uids = self._uids(ref.folder, ref.message_id)
        assert len(uids) == 1, f"{ref} at the provider: {uids}"
        return uids[0]

    def mark_read(self, ref: Ref) -> None:
        self.dovecot.set_seen(self.login, ref.folder, [self._uid(ref)], True)

    def move(self, ref: Ref, folder: str) -> None:
        self.dovecot.move(self.login, ref.folder, [self._uid(ref)], folder)
        ref.folder = folder

    def archive(self, ref: Ref) -> None:
        self.move(ref, self.archive_folder)

    def trash(self, ref: Ref) -> None:
        self.move(ref, self.trash_folder)

    def delete(self, ref: Ref) -> None:
        self.dovecot.delete(self.login, ref.folder, [self._uid(ref)])

    def create_folder(self, name: str) -> None:
        self.dovecot.create_folder(self.login, name)

    def _folders(self) -> list[str]:
        with self.dovecot.client(self.login) as c:
            return [str(name) for _flags, _sep, name in c.list_folders()]

    def ref_of(self, message: dict[str, Any]) -> Ref:
        mid = _bare(message["headers"]["message_id"])
        return Ref(mid, message["folder"], mid)

    def folders_of(self, ref: Ref) -> set[str]:
        return {f for f in self._folders() if self._uids(f, ref.message_id)}

    def is_unread(self, ref: Ref) -> bool:
        with self.dovecot.client(self.login) as c:
            for folder in self._folders():
                c.select_folder(folder, readonly=True)
                uids = c.search(["HEADER", "Message-ID", ref.message_id])
                if uids and any(b"\\Seen" not in f[b"FLAGS"] for f in c.fetch(uids, ["FLAGS"]).values()):
                    return True
        return False

    def count(self, folder: str) -> int:
        return len(self.dovecot.uids(self.login, folder))

    def received(self, subject: str) -> int:
        """Mails with this subject in the recipient's INBOX."""
        assert self._rcpt is not None
        with self.dovecot.client(self._rcpt) as c:
            c.select_folder("INBOX", readonly=True)
            uids = c.search(["ALL"])
            heads = c.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"]).values() if uids else []
        parsed = [email.message_from_bytes(h[b"BODY[HEADER.FIELDS (SUBJECT)]"]) for h in heads]
        return sum(1 for p in parsed if str(p["Subject"]) == subject)

    def loopback(self) -> None:
        """Mail to ourselves: the SMTP server already put it into our INBOX."""


class GoogleMailbox(_Base):
    provider = "google"
    inbox, sent, extra, trash_folder = "INBOX", "SENT", "Kunden", "TRASH"

    def __init__(self, service: Service, fake: FakeGoogle) -> None:
        super().__init__(service)
        self.fake = fake
        tag = uuid.uuid4().hex[:10]
        self.self_address = f"makler-{tag}@makler-e2e.example"  # a Workspace domain (hd claim)
        self.recipient = f"kunde-{tag}@example.org"
        fake.add_user(self.self_address)
        self.create_folder(self.extra)

    def connect(
        self,
        http: requests.Session,
        *,
        backfill_days: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The hosted OAuth flow as a browser runs it (``backfill_days`` goes with the
        authorize call; without it a google account starts at connect time)."""
        url = self.service.url
        params: dict[str, Any] = {"redirect_uri": REDIRECT}
        if backfill_days is not None:
            params["backfill_days"] = backfill_days
        r = http.get(f"{url}/v1/oauth/google/authorize", params=params)
        assert r.status_code == 200, r.text
        self.fake.next_login(self.self_address)  # the user consents at Google
        at_google = requests.get(r.json()["url"], allow_redirects=False, timeout=10)
        assert at_google.status_code == 302, at_google.text
        account_id = self._oauth_account_id(at_google.headers["Location"], "google", timeout=30)
        assert self.fake.mailbox(self.self_address).watch  # users.watch at connect (push)
        return self._connected(http, account_id, settings)

    def deliver(
        self,
        subject: str,
        from_: str = "Kunde <kunde@example.com>",
        to: str | None = None,
        *,
        message_id: str | None = None,
        in_reply_to: str | None = None,
        references: str | None = None,
        date: datetime | None = None,
    ) -> Ref:
        """A mail arrives now (``date`` only sets its Date header: an older internalDate
        could be before the sync start of an account connected without backfill)."""
        mid, raw = self._raw(subject, from_, to, message_id, in_reply_to, references, date)
        gid = self.fake.deliver(self.self_address, raw)
        return Ref(gid, self.inbox, mid)

    def _label(self, folder: str) -> str:
        return self.fake.label_id(self.self_address, folder)

    def mark_read(self, ref: Ref) -> None:
        self.fake.remove_labels(self.self_address, ref.id, "UNREAD")

    def move(self, ref: Ref, folder: str) -> None:
        self.fake.move(self.self_address, ref.id, self._label(ref.folder), self._label(folder))
        ref.folder = folder

    def archive(self, ref: Ref) -> None:
        self.fake.remove_labels(self.self_address, ref.id, self._label(self.inbox))

    def trash(self, ref: Ref) -> None:
        self.fake.trash(self.self_address, ref.id)

    def delete(self, ref: Ref) -> None:
        self.fake.delete(self.self_address, ref.id)

    def create_folder(self, name: str) -> None:
        self.fake.create_label(self.self_address, name)

    def _messages(self) -> list[Any]:
        return list(self.fake.mailbox(self.self_address).messages.values())

    def ref_of(self, message: dict[str, Any]) -> Ref:
        mid = _bare(message["headers"]["message_id"])
        found = [m.id for m in self._messages() if m.message_id and _bare(m.message_id) == mid]
        assert len(found) == 1, f"{mid} at Google: {found}"
        return Ref(found[0], message["folder"], mid)

    def folders_of(self, ref: Ref) -> set[str]:
        labels = self.fake.mailbox(self.self_address).labels
        return {
            str(labels[lid]["name"])
            for lid in self.fake.labels_of(self.self_address, ref.id)
            if lid not in _NOT_FOLDERS and not lid.startswith("CATEGORY_")
        }

    def is_unread(self, ref: Ref) -> bool:
        return "UNREAD" in self.fake.labels_of(self.self_address, ref.id)

    def count(self, folder: str) -> int:
        return len(self.fake.message_ids(self.self_address, self._label(folder)))

    def received(self, subject: str) -> int:
        """Gmail sent it: the SENT copies with this subject to our recipient."""
        out = 0
        for m in self._messages():
            p = email.message_from_bytes(m.raw, policy=email.policy.default)
            if "SENT" in m.label_ids and str(p["Subject"]) == subject and self.recipient in str(p["To"]):
                out += 1
        return out

    def loopback(self) -> None:
        """Mail we sent to ourselves also lands in our INBOX, as Gmail does (the fake's
        ``messages.send`` only files it under SENT)."""
        for m in self._messages():
            p = email.message_from_bytes(m.raw, policy=email.policy.default)
            if "SENT" in m.label_ids and "INBOX" not in m.label_ids and self.self_address in str(p["To"]):
                self.fake.add_labels(self.self_address, m.id, "INBOX")


class MicrosoftMailbox(_Base):
    provider = "microsoft"
    # Graph folders are named by their display names (tests/fakes/graph.py).
    inbox, sent, extra, trash_folder = "Inbox", "Sent Items", "Kunden", "Deleted Items"
    archive_folder = "Junk Email"  # "archived" = out of every synced folder (Junk is never synced)

    def __init__(self, service: Service, fake: FakeGraph) -> None:
        super().__init__(service)
        self.fake = fake
        tag = uuid.uuid4().hex[:10]
        self.self_address = f"makler-{tag}@contoso-e2e.example"
        # Another user of the fake: Graph's sendMail delivers to it (and to ourselves).
        self.recipient = f"kunde-{tag}@contoso-e2e.example"
        fake.add_user(self.self_address)
        fake.add_user(self.recipient)
        self.create_folder(self.extra)

    def connect(
        self,
        http: requests.Session,
        *,
        backfill_days: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The hosted OAuth flow (msal, PKCE) as a browser runs it."""
        url = self.service.url
        params: dict[str, Any] = {"redirect_uri": REDIRECT}
        if backfill_days is not None:
            params["backfill_days"] = backfill_days
        r = http.get(f"{url}/v1/oauth/microsoft/authorize", params=params)
        assert r.status_code == 200, r.text
        self.fake.next_login(self.self_address)  # the user signs in and consents at Microsoft
        at_ms = requests.get(r.json()["url"], allow_redirects=False, timeout=10, verify=self.fake.ca_bundle)
        assert at_ms.status_code == 302, at_ms.text
        account_id = self._oauth_account_id(at_ms.headers["Location"], "microsoft", timeout=60)
        # Subscribed at connect: the fake's validation call reached our webhook.
        assert any(s.user == self.self_address.lower() for s in self.fake.subscriptions.values())
        return self._connected(http, account_id, settings)

    def deliver(
        self,
        subject: str,
        from_: str = "Kunde <kunde@example.com>",
        to: str | None = None,
        *,
        message_id: str | None = None,
        in_reply_to: str | None = None,
        references: str | None = None,
        date: datetime | None = None,
    ) -> Ref:
        """A mail arrives now (``date`` only sets its Date header, as for Google)."""
        mid, raw = self._raw(subject, from_, to, message_id, in_reply_to, references, date)
        gid = self.fake.deliver(self.self_address, raw)
        return Ref(gid, self.inbox, mid)

    def mark_read(self, ref: Ref) -> None:
        self.fake.mark_read(self.self_address, ref.id)

    def move(self, ref: Ref, folder: str) -> None:
        self.fake.move(self.self_address, ref.id, folder)  # the immutable id stays
        ref.folder = folder

    def archive(self, ref: Ref) -> None:
        self.move(ref, self.archive_folder)

    def trash(self, ref: Ref) -> None:
        self.move(ref, self.trash_folder)

    def delete(self, ref: Ref) -> None:
        self.fake.delete(self.self_address, ref.id)

    def create_folder(self, name: str) -> None:
        self.fake.create_folder(self.self_address, name)

    def _copies(self, message_id: str) -> list[Any]:
        """Every message with this Message-ID (a mail to ourselves has a Sent and an Inbox copy)."""
        box = self.fake.mailbox(self.self_address)
        with self.fake.lock:
            return [m for m in box.messages.values() if _bare(m.internet_message_id) == message_id]

    def _folder_name(self, folder_id: str) -> str:
        return str(self.fake.mailbox(self.self_address).folders[folder_id].display_name)

    def ref_of(self, message: dict[str, Any]) -> Ref:
        mid = _bare(message["headers"]["message_id"])
        found = self._copies(mid)
        assert found, f"{mid} at Microsoft: none"
        return Ref(found[0].immutable_id, message["folder"], mid)

    def folders_of(self, ref: Ref) -> set[str]:
        return {self._folder_name(m.folder_id) for m in self._copies(ref.message_id)}

    def is_unread(self, ref: Ref) -> bool:
        return any(not m.is_read for m in self._copies(ref.message_id))

    def count(self, folder: str) -> int:
        return len(self.fake.messages_in(self.self_address, folder))

    def received(self, subject: str) -> int:
        """Mails with this subject in the recipient's Inbox (the fake delivers to its users)."""
        out = 0
        for m in self.fake.messages_in(self.recipient, "inbox"):
            p = email.message_from_bytes(m.raw, policy=email.policy.default)
            out += str(p["Subject"]) == subject
        return out

    def loopback(self) -> None:
        """Mail to ourselves: Graph's sendMail already put a copy into our Inbox."""
