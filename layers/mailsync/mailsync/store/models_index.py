"""pynamodb models of the contact indexes behind suggestions (``domain/suggestions.py``): a
domain's and a name's contacts. Same table and binding as ``store/models.py``, which registers
them. Written on the contact mutation path only (``ContactRepository``), like the address index."""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, ListAttribute, NumberAttribute, UnicodeAttribute

from mailsync.store.models import _Base


class DomainContactsItem(_Base):
    """``T#<t>#DOM#<domain>`` / ``D``: the contacts having an address at this (non-free-mail) domain."""

    contacts = JSONAttribute(default=dict)  # {contact_id: kind}


class NameContactsItem(_Base):
    """``T#<t>#NAME#<hash of the normalised name>`` / ``N``: the contacts of that name."""

    name = UnicodeAttribute()  # the normalised name (domain.suggestions.normalise_name)
    contacts = JSONAttribute(default=dict)  # {contact_id: kind}


class UserTokenRevocationItem(_Base):
    """``T#<t>`` / ``UT#<user>``: user tokens issued before ``not_before`` are refused (the user
    was deleted). Kept one token lifetime past that (``ttl``): older tokens have expired anyway."""

    not_before = NumberAttribute()  # Unix seconds
    ttl = NumberAttribute()


class OriginIndexItem(_Base):
    """``ORIGIN#<origin>`` / ``T#<t>``: the tenant lists this browser origin (CORS preflights
    carry no credentials, so they are answered from this partition: one Query)."""


class ContactSearchItem(_Base):
    """``T#<t>#CS#<audience>`` / ``<term>\\x1f<contact>``: a contact is found by ``term`` by the
    users of ``audience`` (``*``, or one user id); see ``domain/contact_search.py``. Carries what
    the contact picker shows, so a search is its two Queries and nothing more."""

    contact_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    name = UnicodeAttribute(default="")
    emails = ListAttribute(of=UnicodeAttribute, default=list)
