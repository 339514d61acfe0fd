"""Compatibility names for callers outside the account side (api, local runner, mail side):
the repositories now live by entity (:mod:`mailsync.store.accounts`,
:mod:`mailsync.store.tenants`, :mod:`mailsync.store.paging`). New code imports those."""

from __future__ import annotations

from mailsync.store.accounts import get_account_doc as get_account
from mailsync.store.paging import decode_cursor, encode_cursor
from mailsync.store.tenants import allow_redirects, create_tenant, tenant_for_key

__all__ = [
    "allow_redirects",
    "create_tenant",
    "decode_cursor",
    "encode_cursor",
    "get_account",
    "tenant_for_key",
]
