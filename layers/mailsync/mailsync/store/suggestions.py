"""The reads behind suggestions (``usecases/suggestions.py``): never a Scan.

* :func:`index_and_threads`: a page's domain → contacts and name → contacts items and its
  threads (their ``members``), in one BatchGetItem per 100 keys;
* participants' recent mail: ``ContactRepository.recent_messages_with`` (one Query page each);
* the mails and contacts found: ``MessageRepository.get_many``, ``ContactRepository.get_many``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailsync.domain.records import ThreadDoc
from mailsync.store import batch, keys
from mailsync.store.messages import thread_doc
from mailsync.store.models import ThreadItem
from mailsync.store.models_index import DomainContactsItem, NameContactsItem


@dataclass(frozen=True)
class IndexHits:
    """``{domain: {contact: kind}}``, ``{name key: {contact: kind}}`` and ``{thread id: thread}``
    of the keys asked for that exist."""

    domain_contacts: dict[str, dict[str, str]]
    name_contacts: dict[str, dict[str, str]]
    threads: dict[str, ThreadDoc]


def index_and_threads(
    tenant_id: str, domains: Iterable[str], names: Iterable[str], thread_ids: Iterable[str]
) -> IndexHits:
    dkeys = {(keys.domain_contacts(tenant_id, d), "D"): d for d in domains}
    nkeys = {(keys.name_contacts(tenant_id, n), "N"): n for n in names}
    tkeys = {(keys.thread(tenant_id, th), "TH"): th for th in thread_ids}
    raw = batch.get_items([*dkeys, *nkeys, *tkeys]) if dkeys or nkeys or tkeys else {}
    return IndexHits(
        domain_contacts={
            d: dict(DomainContactsItem.from_raw_data(raw[k]).contacts or {})
            for k, d in dkeys.items()
            if k in raw
        },
        name_contacts={
            n: dict(NameContactsItem.from_raw_data(raw[k]).contacts or {})
            for k, n in nkeys.items()
            if k in raw
        },
        threads={th: thread_doc(ThreadItem.from_raw_data(raw[k])) for k, th in tkeys.items() if k in raw},
    )
