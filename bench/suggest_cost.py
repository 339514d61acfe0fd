"""Suggestions for the unassigned: DynamoDB requests of a page of 50 unassigned mails with their
top suggestion (``GET /v1/messages?unassigned=true&with_suggestions=true``) and of one mail's
suggestions (``GET /v1/messages/{id}/suggestions``), counted at the botocore level.

The generated mail is between the owner and 64 people at 5 company domains. Contacts are added
so that every reason has something to find: 3 at each domain (not the people's own addresses:
``same_domain``), 6 named like people at a private domain (``name_match``), and 2 people by
their own address (their mails are linked retroactively, so the threads and co-participants of
the rest have links to read). The use cases are called in-process: the API key lookup (one
GetItem) comes on top.
"""

from __future__ import annotations

import time
from typing import Any

from bench.meter import Meter
from bench.ours import OWNER, TENANT

DOMAINS = ("acme.example", "globex.example", "initech.example", "umbrella.example", "hooli.example")
NAMED = ("Anna Schmidt", "Ben Meyer", "Carla Weber", "David Wagner", "Eva Schmidt", "Felix Meyer")
LINKED = ("greta.schmidt", "hugo.meyer")
PAGE = 50


def measure(meter: Meter, tag: str) -> dict[str, Any]:
    from mailsync.usecases import contacts, reading, suggestions

    batch: list[dict[str, Any]] = []
    for d in DOMAINS:
        for role in ("einkauf", "vertrieb", "buchhaltung"):
            batch.append(_contact(f"{tag}-{role}-{d}", f"{role.title()} {d}", [f"{role}@{d}"]))
    for i, name in enumerate(NAMED):
        batch.append(_contact(f"{tag}-name-{i}", name, [f"privat{i}@privat.example"]))
    for i, local in enumerate(LINKED):  # their mails: wherever the generator put them
        batch.append(_contact(f"{tag}-linked-{i}", local.title(), [f"{local}@{d}" for d in DOMAINS]))
    t0 = time.perf_counter()
    contacts.batch_put(TENANT, batch)
    contacts_seconds = time.perf_counter() - t0

    before = meter.snap()
    t0 = time.perf_counter()
    page = reading.list_messages(
        TENANT, OWNER, unassigned=True, limit=PAGE, suggest=suggestions.top_suggestions
    )
    seconds = time.perf_counter() - t0
    listed = meter.snap() - before
    items = page["items"]
    reasons: dict[str, int] = {}
    for item in items:
        for r in (item["suggestion"] or {}).get("reasons", []):
            reasons[r] = reasons.get(r, 0) + 1

    before = meter.snap()
    one = suggestions.suggestions_for(TENANT, OWNER, items[0]["id"]) if items else []
    single = meter.snap() - before
    return {
        "contacts": len(batch),
        "contacts_seconds": contacts_seconds,
        "page": len(items),
        "with_suggestion": sum(1 for i in items if i["suggestion"]),
        "reasons": reasons,
        "seconds": seconds,
        "aws": listed.as_dict(),
        "single": {"suggestions": len(one), "aws": single.as_dict()},
    }


def _contact(cid: str, name: str, emails: list[str]) -> dict[str, Any]:
    return {"id": cid, "kind": "customer", "name": name, "emails": emails, "visible_to": ["*"]}
