"""Contacts, links and the address indexes (DynamoDB).

Items (see ``store.models``):

* ``T#<t>#C#<contact>`` / ``C``: the contact; its links share the partition
  (``L#<received>#<mid>``), so a contact's history page is one Query;
* ``T#<t>#E#<email>`` / ``E``: the contacts having an address (ingest looks them up
  in one BatchGet per batch);
* ``T#<t>#ADDR#<email>`` / ``<received>#<mid>``: the mirrored messages an address
  takes part in (retroactive linking is a Query, never a Scan);
* ``T#<t>#CS#<audience>`` / ``<term>\\x1f<contact>``: the contact picker's prefix search
  (``domain.contact_search``), one entry per term and audience;
* ``T#<t>#DOM#<domain>`` / ``D`` and ``T#<t>#NAME#<hash>`` / ``N``: the contacts having an
  address at a (non-free-mail) domain, and those of a normalised name (suggestions read them
  in one BatchGet per page; ``domain.suggestions.contact_index_keys`` says which).

Link items are built here only (:func:`link_item`), for the sync's commit and for
the contact use cases alike.

Mutation paths: :meth:`ContactRepository.put`, :meth:`ContactRepository.delete`,
:meth:`ContactRepository.add_address`, :meth:`ContactRepository.remove_address`,
:meth:`ContactRepository.add_index_entry`, :meth:`ContactRepository.remove_index_entry`,
:meth:`ContactRepository.reindex_search`,
:meth:`LinkRepository.put`, :meth:`LinkRepository.delete`; the sync writes links and
the address → messages index through ``DynamoMirrorStore.commit`` with the same builders.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pynamodb.exceptions import DoesNotExist
from pynamodb.pagination import ResultIterator

from mailsync.domain import contact_search
from mailsync.domain.records import Contact, Link, Page
from mailsync.domain.visibility import SHARED
from mailsync.store import batch, keys, paging
from mailsync.store.models import (
    AddressContactsItem,
    AddressMessageItem,
    ContactItem,
    LinkItem,
    TenantMemberItem,
)
from mailsync.store.models_index import ContactSearchItem, DomainContactsItem, NameContactsItem

LINK_PREFIX = "L#"
#: Contacts kept per domain or name item (~40 KB): past it a shared domain tells nothing, and the
#: item stays far below DynamoDB's 400 KB. A contact beyond it is not added (and not suggested
#: by that domain or name).
INDEX_ENTRY_CAP = 1000


def link_item(tenant_id: str, link: Link) -> LinkItem:
    return LinkItem(
        keys.contact(tenant_id, link.contact_id),
        keys.link_sk(link.received_at, link.mid),
        mid=link.mid,
        owner=link.owner,
        visibility=link.visibility,
        thread_id=link.thread_id,
        account_id=link.account_id,
    )


def link_key(tenant_id: str, cid: str, received: str, mid: str) -> LinkItem:
    """A link item by key only (to delete it)."""
    return LinkItem(keys.contact(tenant_id, cid), keys.link_sk(received, mid))


def address_message_item(
    tenant_id: str, email: str, received: str, mid: str, account_id: str
) -> AddressMessageItem:
    return AddressMessageItem(
        keys.address_messages(tenant_id, email),
        keys.message_sort(received, mid),
        mid=mid,
        account_id=account_id,
    )


def address_message_key(tenant_id: str, email: str, received: str, mid: str) -> AddressMessageItem:
    return AddressMessageItem(keys.address_messages(tenant_id, email), keys.message_sort(received, mid))


def _link(item: LinkItem, cid: str) -> Link:
    return Link(
        contact_id=cid,
        mid=item.mid,
        account_id=item.account_id or "",
        received_at=item.sk.split("#")[1],  # L#<received>#<mid>; an ISO date has no "#"
        owner=item.owner,
        visibility=item.visibility,
        thread_id=item.thread_id,
    )


def _contact(item: ContactItem) -> Contact:
    return Contact(
        id=item.contact_id,
        kind=item.kind,
        name=item.name,
        emails=tuple(str(e) for e in item.emails or []),
        visible_to=tuple(str(u) for u in item.visible_to or []),
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


class ContactRepository:
    """A tenant's contacts and the address indexes."""

    def __init__(self, tenant_id: str) -> None:
        self.t = tenant_id

    def get(self, cid: str) -> Contact | None:
        try:
            return _contact(ContactItem.get(keys.contact(self.t, cid), "C"))
        except DoesNotExist:
            return None

    def get_many(self, cids: Iterable[str]) -> dict[str, Contact]:
        ks = [(keys.contact(self.t, cid), "C") for cid in dict.fromkeys(cids)]
        return {c.contact_id: _contact(c) for c in ContactItem.batch_get(ks)} if ks else {}

    def all_ids(self) -> Iterator[str]:
        """Every contact id of the tenant, from its tenant-partition entries (a paged Query)."""
        prefix = keys.tenant_member_sk("C", "")
        for i in TenantMemberItem.query(keys.tenant(self.t), TenantMemberItem.sk.startswith(prefix)):
            yield i.sk[len(prefix) :]

    def get_many_with_accounts(
        self, cids: Iterable[str], account_ids: Iterable[str]
    ) -> tuple[dict[str, Contact], set[str]]:
        """The contacts, and which of the accounts are live (stored, not being deleted), in
        one BatchGetItem: a colleague's view of a mail needs both."""
        ckeys = {(keys.contact(self.t, cid), "C"): cid for cid in cids}
        raw, live = batch.with_live_accounts(self.t, ckeys, account_ids)
        return {
            cid: _contact(ContactItem.from_raw_data(raw[k])) for k, cid in ckeys.items() if k in raw
        }, live

    def put(self, c: Contact) -> None:
        ContactItem(
            keys.contact(self.t, c.id),
            "C",
            contact_id=c.id,
            kind=c.kind,
            name=c.name,
            emails=list(c.emails),
            visible_to=list(c.visible_to),
            created_at=c.created_at,
            updated_at=c.updated_at,
        ).save()
        # The tenant's entry for it (a tenant purge finds its contacts with one Query).
        TenantMemberItem(keys.tenant(self.t), keys.tenant_member_sk("C", c.id)).save()

    def delete(self, cid: str) -> None:
        """The contact item only: its links and addresses go first, through their methods."""
        ContactItem(keys.contact(self.t, cid), "C").delete()
        TenantMemberItem(keys.tenant(self.t), keys.tenant_member_sk("C", cid)).delete()

    # ------------------------------------------------------- address -> contacts
    def contacts_for(self, addresses: Iterable[str]) -> dict[str, dict[str, str]]:
        """{address: {contact_id: kind}} of the contacts having these addresses (one BatchGet)."""
        want = {keys.address_contacts(self.t, a): a for a in set(addresses)}
        if not want:
            return {}
        return {
            want[i.pk]: dict(i.contacts or {})
            for i in AddressContactsItem.batch_get([(pk, "E") for pk in want])
            if i.contacts
        }

    def add_address(self, email: str, cid: str, kind: str) -> None:
        pk = keys.address_contacts(self.t, email)
        try:
            item = AddressContactsItem.get(pk, "E", consistent_read=True)
        except DoesNotExist:
            item = AddressContactsItem(pk, "E", contacts={})
        item.contacts = {**(item.contacts or {}), cid: kind}
        item.save()

    def remove_address(self, email: str, cid: str) -> None:
        try:
            item = AddressContactsItem.get(keys.address_contacts(self.t, email), "E")
        except DoesNotExist:
            return
        contacts = dict(item.contacts or {})
        contacts.pop(cid, None)
        if contacts:
            item.contacts = contacts
            item.save()
        else:
            item.delete()

    # ------------------------------------------------ domain / name -> contacts
    def add_index_entry(self, what: str, value: str, cid: str, kind: str) -> None:
        """Add the contact to the ``"domain"`` or ``"name"`` (normalised) index item ``value``."""
        if what == "domain":
            pk, sk, extra = keys.domain_contacts(self.t, value), "D", {}
        else:
            pk, sk, extra = keys.name_contacts(self.t, value), "N", {"name": value}
        model: Any = DomainContactsItem if what == "domain" else NameContactsItem
        try:
            item = model.get(pk, sk, consistent_read=True)
        except DoesNotExist:
            item = model(pk, sk, contacts={}, **extra)
        contacts = dict(item.contacts or {})
        if contacts.get(cid) == kind or (cid not in contacts and len(contacts) >= INDEX_ENTRY_CAP):
            return
        item.contacts = {**contacts, cid: kind}
        item.save()

    def remove_index_entry(self, what: str, value: str, cid: str) -> None:
        if what == "domain":
            pk, sk = keys.domain_contacts(self.t, value), "D"
        else:
            pk, sk = keys.name_contacts(self.t, value), "N"
        model: Any = DomainContactsItem if what == "domain" else NameContactsItem
        try:
            item = model.get(pk, sk, consistent_read=True)
        except DoesNotExist:
            return
        contacts = dict(item.contacts or {})
        if contacts.pop(cid, None) is None:
            return
        if contacts:
            item.contacts = contacts
            item.save()
        else:
            item.delete()

    # ------------------------------------------------------------ prefix search
    def reindex_search(self, old: Contact | None, new: Contact | None) -> None:
        """Write the search entries ``new`` is found by and delete those of ``old`` it is not,
        in BatchWriteItems: a changed name, kind or address list rewrites every entry (they
        carry copies of them), an unchanged contact writes nothing."""
        before, after = contact_search.entries(old), contact_search.entries(new)
        either = new or old
        if either is None:
            return
        cid = either.id
        put = after if contact_search.display_changed(old, new) else after - before
        gone = before - after
        if not put and not gone:
            return
        with ContactSearchItem.batch_write() as b:
            for audience, term in sorted(gone):
                b.delete(ContactSearchItem(*self._search_key(audience, term, cid)))
            for audience, term in sorted(put):
                assert new is not None
                b.save(
                    ContactSearchItem(
                        *self._search_key(audience, term, cid),
                        contact_id=cid,
                        kind=new.kind,
                        name=new.name,
                        emails=list(new.emails),
                    )
                )

    def _search_key(self, audience: str, term: str, cid: str) -> tuple[str, str]:
        return keys.contact_search(self.t, audience), keys.contact_search_sk(term, cid)

    def search(self, audience: str, prefix: str, limit: int) -> tuple[list[Contact], bool]:
        """Up to ``limit`` entries of ``audience`` whose term starts with the folded
        ``prefix`` (one Query page), as contacts (``visible_to`` left empty: the audience
        says who may see them), and whether there were more."""
        it = ContactSearchItem.query(
            keys.contact_search(self.t, audience),
            ContactSearchItem.sk.startswith(prefix),
            limit=limit + 1,
            page_size=limit + 1,
        )
        found = [
            Contact(i.contact_id, i.kind, i.name, tuple(str(e) for e in i.emails or ()), (), "", "")
            for i in it
        ]
        return found[:limit], len(found) > limit

    # ------------------------------------------------------- address -> messages
    def messages_with(self, email: str) -> list[str]:
        """Ids of the mirrored messages ``email`` takes part in (one Query, paged through)."""
        return [i.mid for i in AddressMessageItem.query(keys.address_messages(self.t, email))]

    def recent_messages_with(self, email: str, limit: int) -> list[str]:
        """Ids of the newest ``limit`` messages ``email`` takes part in (one Query page)."""
        pk = keys.address_messages(self.t, email)
        it = AddressMessageItem.query(pk, scan_index_forward=False, limit=limit, page_size=limit)
        return [i.mid for i in it]


class LinkRepository:
    """The link items of a tenant's contacts (a contact's history)."""

    def __init__(self, tenant_id: str) -> None:
        self.t = tenant_id

    def of_contact(self, cid: str) -> list[Link]:
        pk = keys.contact(self.t, cid)
        return [_link(i, cid) for i in LinkItem.query(pk, LinkItem.sk.startswith(LINK_PREFIX))]

    def visible_of_contact(self, cid: str, user_id: str) -> list[Link]:
        """Every link of the contact that ``user_id`` may reach (theirs, or public), newest first."""
        return [_link(i, cid) for i in self._visible(cid, user_id)]

    def page_visible_of_contact(self, cid: str, user_id: str, limit: int, cursor: str | None) -> Page:
        """One Query page of :meth:`visible_of_contact`."""
        lek = paging.page_cursor(self.t, cursor, "pk", keys.contact(self.t, cid))
        it = self._visible(cid, user_id, limit=limit, page_size=limit, last_evaluated_key=lek)
        links = [_link(i, cid) for i in it]
        return Page(links, paging.encode_cursor(it.last_evaluated_key))

    def _visible(self, cid: str, user_id: str, **page: Any) -> ResultIterator[LinkItem]:
        return LinkItem.query(
            keys.contact(self.t, cid),
            LinkItem.sk.startswith(LINK_PREFIX),
            filter_condition=(LinkItem.owner == user_id) | LinkItem.visibility.is_in(*SHARED),
            scan_index_forward=False,
            **page,
        )

    def put(self, links: Iterable[Link]) -> None:
        links = list(links)
        if not links:
            return
        with LinkItem.batch_write() as b:
            for ln in links:
                b.save(link_item(self.t, ln))

    def delete(self, links: Iterable[Link]) -> None:
        links = list(links)
        if not links:
            return
        with LinkItem.batch_write() as b:
            for ln in links:
                b.delete(link_key(self.t, ln.contact_id, ln.received_at, ln.mid))
