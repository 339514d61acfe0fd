"""Key builders of the single-table design. Every key but the API-key lookup carries the tenant."""

from __future__ import annotations

import hashlib


def tenant(t: str) -> str:
    return f"T#{t}"


def origin(o: str) -> str:
    """A browser origin's partition (CORS preflights; ``domain.cors``)."""
    return f"ORIGIN#{o}"


TENANTS = "TENANTS"  # the registry partition of every tenant (ops CLI)


def tenant_member_sk(kind: str, ident: str) -> str:
    """A tenant partition entry: ``A#<account>``, ``C#<contact>``, ``S#<state hash>``, ``U#<user>``."""
    return f"{kind}#{ident}"


def account(t: str, a: str) -> str:
    return f"T#{t}#A#{a}"


def parse_account(pk: str) -> tuple[str, str]:
    """``(tenant, account)`` of an account partition key (:func:`account`)."""
    head, _, a = pk.rpartition("#A#")
    return head.removeprefix("T#"), a


def message(t: str, mid: str) -> str:
    return f"T#{t}#M#{mid}"


def thread(t: str, thid: str) -> str:
    return f"T#{t}#TH#{thid}"


def email_lock(t: str, email: str) -> str:
    return f"T#{t}#EMAIL#{email.strip().lower()}"


def api_key(secret_hash: str) -> str:
    return f"KEY#{secret_hash}"


API_KEY_RECORDS = "K#"  # sk prefix of the API-key records in the tenant partition


def api_key_record_sk(key_id: str) -> str:
    return f"{API_KEY_RECORDS}{key_id}"


def folder_hash(folder: str) -> str:
    # Folder names may contain any character, "#" included: hash them inside keys.
    return hashlib.sha1(folder.encode(), usedforsecurity=False).hexdigest()[:12]


def location_sk(folder: str, gen: int, ref: str) -> str:
    return f"L#{folder_hash(folder)}#{gen}#{ref}"


def location_prefix(folder: str, gen: int | None = None) -> str:
    return f"L#{folder_hash(folder)}#" + ("" if gen is None else f"{gen}#")


# GSI partitions
def owner_messages(t: str, user: str) -> str:
    return f"T#{t}#U#{user}#M"


def owner_threads(t: str, user: str) -> str:
    return f"T#{t}#U#{user}#TH"


def owner_accounts(t: str, user: str) -> str:
    return f"T#{t}#U#{user}#A"


def account_messages(t: str, a: str) -> str:
    return f"T#{t}#A#{a}#M"


def folder_messages(t: str, a: str, folder: str) -> str:
    return f"T#{t}#A#{a}#F#{folder}"


def thread_messages(t: str, thid: str) -> str:
    return f"T#{t}#TH#{thid}"


def due_shard(n: int) -> str:
    return f"DUE#{n}"


def contact(t: str, cid: str) -> str:
    return f"T#{t}#C#{cid}"


def link_sk(received: str, mid: str) -> str:
    return f"L#{received}#{mid}"


def address_contacts(t: str, email: str) -> str:
    return f"T#{t}#E#{email.strip().lower()}"


def address_messages(t: str, email: str) -> str:
    return f"T#{t}#ADDR#{email.strip().lower()}"


def domain_contacts(t: str, domain: str) -> str:
    """The contacts having an address at ``domain`` (sk ``D``; free-mail domains are not indexed)."""
    return f"T#{t}#DOM#{domain.strip().lower()}"


def name_contacts(t: str, name_key: str) -> str:
    """The contacts whose normalised name is ``name_key`` (sk ``N``); hashed: names are long and free text."""
    return f"T#{t}#NAME#{hashlib.sha256(name_key.encode()).hexdigest()[:32]}"


def contact_search(t: str, audience: str) -> str:
    """The search entries of the contacts ``audience`` (``*`` or a user id) may see."""
    return f"T#{t}#CS#{audience}"


def contact_search_sk(term: str, cid: str) -> str:
    """``<term>\x1f<contact>``: U+001F sorts below every character a folded term holds."""
    return f"{term}\x1f{cid}"


def owner_unassigned(t: str, user: str) -> str:
    return f"T#{t}#U#{user}#UN"


def oauth_state_hash(state_id: str) -> str:
    return hashlib.sha256(state_id.encode()).hexdigest()


def oauth_state(state_id: str) -> str:
    return f"OAUTH#{oauth_state_hash(state_id)}"


def gmail_address(email: str) -> str:
    return f"GADDR#{email.strip().lower()}"


GMAIL_WATCHES = "GWATCH"  # the registry partition of Gmail watches (renewal)
GRAPH_WATCHES = "MSWATCH"  # the registry partition of Graph subscriptions (renewal)


def graph_subscription(subscription_id: str) -> str:
    return f"MSUB#{subscription_id}"


def owner_accounts_sort(created_at: str, a: str) -> str:
    return f"{created_at}#{a}"


def due_sort(next_due: str, t: str, a: str) -> str:
    return f"{next_due}#{t}#{a}"


def state_index(state: str) -> str:
    """GSI6 partition of the accounts in ``state``."""
    return f"STATE#{state}"


def sync_run_sk(started_at: str, tiebreak: str) -> str:
    """A sync run in the account partition: newest last, so a reverse Query reads the latest."""
    return f"RUN#{started_at}#{tiebreak}"


# Sort keys (one place: GSI order is newest first by these)
def message_sort(received: str, mid: str) -> str:
    """Sort key of a message in every message index and in the address index."""
    return f"{received}#{mid}"


def thread_sort(last_date: str, thid: str) -> str:
    return f"{last_date}#{thid}"


def ref_sk(ref_hash: str) -> str:
    return f"R#{ref_hash}"


def orphan_sk(mid: str) -> str:
    return f"O#{mid}"


def folder_sk(name: str) -> str:
    return f"F#{name}"


def send_idempotency(t: str, a: str, user: str, key: str) -> str:
    """The idempotency record of a send: scoped to tenant, account and user."""
    return f"{account(t, a)}#U#{user}#{key}"


def send_sk(at: str, tiebreak: str) -> str:
    """A send record in the account partition (``store/sends.py``)."""
    return f"SEND#{at}#{tiebreak}"


def events(t: str) -> str:
    """The tenant's event feed partition (``store/events.py``)."""
    return f"T#{t}#EV"


EVENT_COUNTER = "#SEQ"  # sorts before every event's zero-padded sequence number


def event_sk(seq: int) -> str:
    return f"{seq:020d}"


# ------------------------------------------------------------- webhooks (issue 15)
WEBHOOK_ENDPOINTS = "WH#"  # sk prefix of the tenant's webhook endpoints in its partition


def webhook_endpoint_sk(endpoint_id: str) -> str:
    return f"{WEBHOOK_ENDPOINTS}{endpoint_id}"


def webhook_deliveries(t: str, endpoint_id: str) -> str:
    """The partition of an endpoint's deliveries (sk :func:`delivery_sk`)."""
    return f"T#{t}#WH#{endpoint_id}"


def delivery_sk(delivery_id: str) -> str:
    return f"D#{delivery_id}"


def deliveries_by_status(t: str, endpoint_id: str, status: str) -> str:
    """GSI1 partition: an endpoint's deliveries in one status."""
    return f"T#{t}#WH#{endpoint_id}#S#{status}"


def webhook_due_shard(n: int) -> str:
    """GSI2 partition of the webhook due index (accounts use ``DUE#<n>``)."""
    return f"WDUE#{n}"


def webhook_due_sort(due_at: str, t: str, endpoint_id: str, delivery_id: str) -> str:
    return f"{due_at}#{t}#{endpoint_id}#{delivery_id}"
