"""pynamodb models of the main table (single-table design, see docs/architecture.md).

Invariants:

* Every key carries the tenant (``T#<tenant>``), except the API-key lookup item whose
  key is the SHA-256 of the secret (it *yields* the tenant).
* Messages and threads have their own partitions so that ``GET /v1/messages/{id}``
  and ``GET /v1/threads/{id}`` are single GetItems. Per-account state (folders,
  cursors, credentials, locations, thread refs, orphans) lives in the account
  partition ``T#<tenant>#A#<account>`` so that deleting an account is a Query.
* List reads go through the generic GSIs (``GSI1``..``GSI5``, all attributes; ``GSI6``, keys
  only); entities overload them with distinct prefixes so one Query never mixes entity types.
* Nothing here talks to AWS or reads the environment at import time. The first request
  of any model binds them all to the table, region and endpoint of
  :class:`mailsync.config.Settings` (:func:`bind`); the local runner and tests bind
  explicitly to their own target first.
"""

from __future__ import annotations

import json
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model


class GSI1(GlobalSecondaryIndex[Any]):
    class Meta:
        index_name = "GSI1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class GSI2(GlobalSecondaryIndex[Any]):
    class Meta:
        index_name = "GSI2"
        projection = AllProjection()

    gsi2pk = UnicodeAttribute(hash_key=True)
    gsi2sk = UnicodeAttribute(range_key=True)


class GSI3(GlobalSecondaryIndex[Any]):
    class Meta:
        index_name = "GSI3"
        projection = AllProjection()

    gsi3pk = UnicodeAttribute(hash_key=True)
    gsi3sk = UnicodeAttribute(range_key=True)


class GSI4(GlobalSecondaryIndex[Any]):
    class Meta:
        index_name = "GSI4"
        projection = AllProjection()

    gsi4pk = UnicodeAttribute(hash_key=True)
    gsi4sk = UnicodeAttribute(range_key=True)


class GSI5(GlobalSecondaryIndex[Any]):
    class Meta:
        index_name = "GSI5"
        projection = AllProjection()

    gsi5pk = UnicodeAttribute(hash_key=True)
    gsi5sk = UnicodeAttribute(range_key=True)


class GSI6(GlobalSecondaryIndex[Any]):
    """Accounts by state; keys only (a non-key update of the account writes no index item).
    The sort key is the account's own ``pk`` (``T#<t>#A#<a>``): no second copy on the item."""

    class Meta:
        index_name = "GSI6"
        projection = KeysOnlyProjection()

    gsi6pk = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class _Base(Model):
    class Meta:
        # Placeholders until bind(): the target comes from Settings on first use.
        table_name = "mailsync-main"
        region = "eu-central-1"
        host: str | None = None
        max_retry_attempts = 5

    @classmethod
    def _get_connection(cls) -> Any:
        if not _bound:
            bind_settings()
        return super()._get_connection()

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class ApiKeyItem(_Base):
    """``KEY#<sha256(secret)>`` / ``K``: resolves an API key to its tenant (the auth lookup)."""

    tenant_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    key_id = UnicodeAttribute(null=True)  # None: a key made before key ids (no record, not listed)
    last_used_at = UnicodeAttribute(null=True)  # written at most once per key per 5 minutes


class ApiKeyRecordItem(_Base):
    """``T#<tenant>`` / ``K#<key id>``: a tenant's key as it lists it (never the key itself)."""

    key_id = UnicodeAttribute()
    name = UnicodeAttribute()
    prefix = UnicodeAttribute()  # the key's first characters, to recognise it
    key_hash = UnicodeAttribute()  # sha256 hex: finds the auth item
    created_at = UnicodeAttribute()


class TenantItem(_Base):
    """``T#<tenant>`` / ``T``."""

    tenant_id = UnicodeAttribute()
    name = UnicodeAttribute()
    created_at = UnicodeAttribute()
    # OAuth redirect URIs this tenant may use: "https://crm.example/cb", "http://127.0.0.1:*"
    redirect_allowlist = ListAttribute(of=UnicodeAttribute, default=list)
    key_count = NumberAttribute(default=0)  # API keys (records); the API never takes it below 1
    state = UnicodeAttribute(null=True)  # "deleting" while the tenant is purged: no new keys
    assign_bulk = BooleanAttribute(null=True)  # auto-assign bulk mail (null: false, the default)
    token_secret = JSONAttribute(null=True)  # KMS envelope of the user-token HMAC secret
    allowed_origins = ListAttribute(of=UnicodeAttribute, null=True)  # CORS (domain.cors)


class TenantRegistryItem(_Base):
    """``TENANTS`` / ``T#<t>``: one per tenant, so the ops CLI lists tenants with a Query."""

    tenant_id = UnicodeAttribute()
    name = UnicodeAttribute()
    created_at = UnicodeAttribute()


class TenantMemberItem(_Base):
    """``T#<t>`` / ``A#<account>``, ``C#<contact>``, ``S#<oauth state hash>``: what the tenant
    owns outside its own partition, written with the thing itself, so a tenant purge finds
    everything with Queries of one partition (never a Scan). ``ttl`` on state pointers."""

    owner = UnicodeAttribute(null=True)  # A#: the account's user
    ttl = NumberAttribute(null=True)


class UserPurgeItem(_Base):
    """``T#<t>`` / ``U#<user>``: a user's purge runs (present from the DELETE until it is done)."""

    user_id = UnicodeAttribute()
    accounts = NumberAttribute(default=0)  # the user's accounts when the purge began
    started_at = UnicodeAttribute()
    account_ids = ListAttribute(of=UnicodeAttribute, null=True)  # named by user.purged


class PartitionItem(_Base):
    """Any item of a partition, as a purge sweeps it: the keys plus the ids an item may name."""

    mid = UnicodeAttribute(null=True)
    thread_id = UnicodeAttribute(null=True)


class OAuthStateItem(_Base):
    """``OAUTH#<sha256(state id)>`` / ``S``: a pending OAuth flow (single use, expires; TTL)."""

    provider = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    redirect_uri = UnicodeAttribute()
    callback_url = UnicodeAttribute()
    nonce = UnicodeAttribute()
    verifier = UnicodeAttribute()
    expires_at = NumberAttribute()
    backfill_days = NumberAttribute(default=0)
    used = BooleanAttribute(null=True)  # set once, by a conditional update: single use
    ttl = NumberAttribute()
    flow = UnicodeAttribute(null=True)  # microsoft: msal's auth code flow (JSON), kept server-side


class GoogleAddressItem(_Base):
    """``GADDR#<email>`` / ``T#<t>#A#<a>``: finds the account(s) a Gmail push names."""

    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()


class WatchItem(_Base):
    """``GWATCH`` / ``T#<t>#A#<a>``: Google accounts whose ``users.watch`` is renewed daily."""

    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    renewed_at = NumberAttribute(default=0)


class GraphSubscriptionItem(_Base):
    """``MSUB#<subscription id>`` / ``T#<t>#A#<a>``: finds the account a Graph notification names."""

    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    client_state_hash = UnicodeAttribute()  # sha256 hex of the subscription's clientState


class MicrosoftWatchItem(_Base):
    """``MSWATCH`` / ``T#<t>#A#<a>``: Microsoft accounts whose Graph subscription is renewed.

    ``pending`` is set by a lifecycle event (``renew`` or ``recreate``); the next sync of the
    account does it, so that the webhook itself never calls Graph."""

    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    subscription_id = UnicodeAttribute(null=True)
    notification_url = UnicodeAttribute(null=True)
    pending = UnicodeAttribute(null=True)
    renewed_at = NumberAttribute(default=0)


class EmailLockItem(_Base):
    """``T#<tenant>#EMAIL#<email>`` / ``E``: one account per mailbox and tenant."""

    account_id = UnicodeAttribute()


class CompactJSONAttribute(JSONAttribute):
    """JSON without the blanks of ``json.dumps``' default separators: the account item is
    updated on every poll, and an UpdateItem costs a write unit per started KB of the item."""

    def serialize(self, value: Any) -> str | None:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"))


class AccountItem(_Base):
    """``T#<tenant>#A#<account>`` / ``A``.

    GSI1: the owner's accounts (``T#<t>#U#<user>#A``). GSI2 (sparse): due for
    polling (``DUE#<shard>`` / ``<next_due>#<t>#<a>``); absent while paused, deleting or
    given up in ``auth_error``, so the scheduler never sees those. GSI6 (keys only): by
    state (``STATE#<state>`` / the item's ``pk``).
    """

    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    owner = UnicodeAttribute()
    email = UnicodeAttribute()
    provider = UnicodeAttribute()
    state = UnicodeAttribute()
    error = CompactJSONAttribute(null=True)
    settings = CompactJSONAttribute()
    servers = CompactJSONAttribute()  # {"imap": {...}, "smtp": {...}} without secrets
    saves_sent = BooleanAttribute(default=False)  # the provider files sent mail itself
    sync = CompactJSONAttribute()
    sync_start = UnicodeAttribute()
    backfill_days = NumberAttribute(default=0)
    failures = NumberAttribute(default=0)
    created_at = UnicodeAttribute()
    gsi1pk = UnicodeAttribute()
    gsi1sk = UnicodeAttribute()
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = UnicodeAttribute(null=True)
    gsi6pk = UnicodeAttribute(null=True)
    health = CompactJSONAttribute(null=True)  # domain.health.HealthMarks
    exclude_applied = UnicodeAttribute(null=True)  # digest of domain.exclusions.ExcludeRules
    by_owner = GSI1()
    due = GSI2()
    by_state = GSI6()


class CredentialItem(_Base):
    """``T#<t>#A#<a>`` / ``CRED``: the KMS envelope of the account's secrets."""

    envelope = JSONAttribute()


class FolderItem(_Base):
    """``T#<t>#A#<a>`` / ``F#<name>``: a folder, its sync cursor and generation."""

    name = UnicodeAttribute()
    role = UnicodeAttribute(null=True)
    synced = BooleanAttribute(default=False)
    present = BooleanAttribute(default=True)  # still listed by the provider
    cursor = JSONAttribute(null=True)
    gen = NumberAttribute(default=0)  # bumps on Reset (UIDVALIDITY change)
    old_gens = ListAttribute(of=NumberAttribute, default=list)  # reset, not yet reconciled
    messages = NumberAttribute(default=0)
    initial_done = BooleanAttribute(default=False)
    progress = JSONAttribute(null=True)
    last_sync_at = UnicodeAttribute(null=True)
    # The last UIDVALIDITY changes (domain.flaps); absent until the first flap.
    flaps = ListAttribute(of=UnicodeAttribute, null=True)


class MirrorLockItem(_Base):
    """``T#<t>#A#<a>`` / ``LOCK``: the writer applying changes to this account's mirror now
    (a lease: ``until`` frees it when a holder died). Created with the account, free while
    ``owner`` is absent; a purge holds it for good (``owner`` ``purge``) and deletes it last
    but the account item, so no writer can take it once an account is being deleted."""

    owner = UnicodeAttribute(null=True)
    until = NumberAttribute(null=True)


class LocationItem(_Base):
    """``T#<t>#A#<a>`` / ``L#<folder hash>#<gen>#<ref>``: provider location → message."""

    mid = UnicodeAttribute()
    folder = UnicodeAttribute()


class RefItem(_Base):
    """``T#<t>#A#<a>`` / ``R#<hash>``: a Message-ID or subject key → its thread."""

    thread_id = UnicodeAttribute()


class OrphanItem(_Base):
    """``T#<t>#A#<a>`` / ``O#<mid>``: a message that lost its last location this run."""

    mid = UnicodeAttribute()


class MessageItem(_Base):
    """``T#<t>#M#<mid>`` / ``M``.

    GSI1 owner (``T#<t>#U#<owner>#M``), GSI2 account (``T#<t>#A#<a>#M``), GSI3 folder
    (``T#<t>#A#<a>#F#<folder>``), GSI4 thread (``T#<t>#TH#<thread>``); every sort key
    is ``<received ISO>#<mid>`` so pages come newest first.
    """

    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    mid = UnicodeAttribute()
    owner = UnicodeAttribute()
    thread_id = UnicodeAttribute()
    folder = UnicodeAttribute()
    locs = JSONAttribute()  # {folder: "<gen>:<ref>"}
    message_key = UnicodeAttribute()
    header_message_id = UnicodeAttribute(null=True)
    in_reply_to = UnicodeAttribute(null=True)
    references = ListAttribute(of=UnicodeAttribute, default=list)
    subject = UnicodeAttribute(default="")
    from_ = JSONAttribute(attr_name="from")
    to = JSONAttribute()
    cc = JSONAttribute()
    bcc = JSONAttribute()
    reply_to = JSONAttribute(null=True)
    date = UnicodeAttribute()
    received_at = UnicodeAttribute()
    snippet = UnicodeAttribute(default="")
    unread = BooleanAttribute(default=True)
    has_attachments = BooleanAttribute(default=False)
    # Newsletter, list or automatic mail (domain.bulk): auto-assigned only where the tenant says so.
    bulk = BooleanAttribute(default=False)
    attachments = JSONAttribute(default=list)
    # [{"kind","start","end","cte","charset"}]: where the bodies sit in the raw object
    # (domain.scan); null: parse the raw object whole when the message is read.
    body_parts = JSONAttribute(null=True)
    # Why the mail was stored without parsing its body (domain.mimelimits); null: parsed.
    quarantine_reason = UnicodeAttribute(null=True)
    # Set with ``orphan``: why the mail lost its last location (the reason of message.deleted).
    gone_reason = UnicodeAttribute(null=True)
    raw_key = UnicodeAttribute()
    size = NumberAttribute(default=0)
    visibility = UnicodeAttribute(default="private")
    participants = ListAttribute(of=UnicodeAttribute, default=list)  # normalised emails
    created_at = UnicodeAttribute()
    orphan = BooleanAttribute(default=False)
    # {contact_id: {"kind": str, "auto": [addresses that matched], "manual": bool}}
    links = JSONAttribute(default=dict)
    provider_thread_id = UnicodeAttribute(null=True)  # Gmail threadId / Graph conversationId
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = UnicodeAttribute(null=True)
    gsi3pk = UnicodeAttribute(null=True)
    gsi3sk = UnicodeAttribute(null=True)
    gsi4pk = UnicodeAttribute(null=True)
    gsi4sk = UnicodeAttribute(null=True)
    gsi5pk = UnicodeAttribute(null=True)  # sparse: present while the message has no link
    gsi5sk = UnicodeAttribute(null=True)
    by_owner = GSI1()
    by_account = GSI2()
    by_folder = GSI3()
    by_thread = GSI4()
    unassigned = GSI5()


class ThreadItem(_Base):
    """``T#<t>#TH#<thread>`` / ``TH``; GSI1 owner (``T#<t>#U#<owner>#TH`` / ``<last>#<id>``).

    ``members`` maps message id → ``{"d": received, "u": unread, "f": from email,
    "n": from name, "s": snippet, "j": subject}``; every aggregate is derived from it,
    so re-applying a change is idempotent.
    """

    tenant_id = UnicodeAttribute()
    account_id = UnicodeAttribute()
    thread_id = UnicodeAttribute()
    owner = UnicodeAttribute()
    members = JSONAttribute(default=dict)
    subject = UnicodeAttribute(default="")
    last_date = UnicodeAttribute(default="")
    message_count = NumberAttribute(default=0)
    unread_count = NumberAttribute(default=0)
    participants = JSONAttribute(default=list)
    snippet = UnicodeAttribute(default="")
    visibility = UnicodeAttribute(default="private")
    follow = JSONAttribute(default=dict)  # {contact_id: kind}: link new messages as they arrive
    # {contact_id: {"mids": [...], "follow": bool, "at": iso}}: the thread links made by hand,
    # each the snapshot it linked (thread.linked / thread.unlinked are derived from it).
    manual_links = JSONAttribute(null=True)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    by_owner = GSI1()


class ContactItem(_Base):
    """``T#<t>#C#<contact>`` / ``C``: what we need to match and authorise; its links
    share the partition (``L#<received>#<mid>``) so a history page is one Query."""

    contact_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    name = UnicodeAttribute(default="")
    emails = ListAttribute(of=UnicodeAttribute, default=list)
    visible_to = ListAttribute(of=UnicodeAttribute, default=list)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class LinkItem(_Base):
    """``T#<t>#C#<contact>`` / ``L#<received>#<mid>``: a message in a contact's history."""

    mid = UnicodeAttribute()
    owner = UnicodeAttribute()
    visibility = UnicodeAttribute()
    thread_id = UnicodeAttribute()
    account_id = UnicodeAttribute()


class AddressContactsItem(_Base):
    """``T#<t>#E#<email>`` / ``E``: the contacts having this address (ingest lookups batch by address)."""

    contacts = JSONAttribute(default=dict)  # {contact_id: kind}


class AddressMessageItem(_Base):
    """``T#<t>#ADDR#<email>`` / ``<received>#<mid>``: mirrored messages an address takes part in."""

    mid = UnicodeAttribute()
    account_id = UnicodeAttribute()


ALL_MODELS: tuple[type[_Base], ...] = (
    ApiKeyItem,
    ApiKeyRecordItem,
    TenantItem,
    TenantRegistryItem,
    TenantMemberItem,
    UserPurgeItem,
    PartitionItem,
    EmailLockItem,
    AccountItem,
    CredentialItem,
    FolderItem,
    LocationItem,
    RefItem,
    OrphanItem,
    MessageItem,
    ThreadItem,
    ContactItem,
    LinkItem,
    AddressContactsItem,
    AddressMessageItem,
    OAuthStateItem,
    GoogleAddressItem,
    WatchItem,
    GraphSubscriptionItem,
    MicrosoftWatchItem,
)


_bound = False


def bind_settings() -> None:
    """Bind the models to the table, region and endpoint of the current :class:`Settings`."""
    from mailsync.config import get_settings

    s = get_settings()
    bind(s.table, host=s.aws_endpoint_url or None, region=s.aws_region)


def bind(table_name: str, host: str | None = None, region: str | None = None) -> None:
    """Point every model at ``table_name`` (and an endpoint such as moto's server)."""
    global _bound
    _bound = True
    for model in ALL_MODELS:
        model.Meta.table_name = table_name
        model.Meta.host = host
        if region:
            model.Meta.region = region
        model._connection = None  # drop the cached client so the new target is used


class SyncRunItem(_Base):
    """``T#<t>#A#<a>`` / ``RUN#<started_at>#<id>``: one recorded sync run (``GET
    /v1/accounts/{id}/syncs``); expires after 30 days (DynamoDB TTL on ``ttl``)."""

    run = JSONAttribute()
    ttl = NumberAttribute()


class CheckItem(_Base):
    """``T#<t>#A#<a>`` / ``CHECK``: the last completeness check, per folder (kept out of the
    account item, which every poll rewrites, so polling does not pay for its size)."""

    check = JSONAttribute()


# The events' models live beside (store/models_events.py); they share the binding above.
from mailsync.store.models_events import (  # noqa: E402
    EventCounterItem,
    EventItem,
    SendRecordItem,
    WebhookDeliveryItem,
    WebhookEndpointItem,
)
from mailsync.store.models_index import (  # noqa: E402
    ContactSearchItem,
    DomainContactsItem,
    NameContactsItem,
    OriginIndexItem,
    UserTokenRevocationItem,
)

ALL_MODELS = (
    *ALL_MODELS,
    SendRecordItem,
    EventCounterItem,
    EventItem,
    WebhookEndpointItem,
    WebhookDeliveryItem,
    DomainContactsItem,
    NameContactsItem,
    UserTokenRevocationItem,
    OriginIndexItem,
    ContactSearchItem,
)
