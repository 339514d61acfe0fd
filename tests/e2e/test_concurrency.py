"""Concurrent clients against `mailsync run`: every answer belongs to its own request.

Found by a tenant trying us with a few parallel clients: Powertools' resolver keeps the
current request on the app object, so two requests served at once answered 500
(``KeyError: '_route'``) or were validated against each other's body model. The runner now
serves the API one request at a time, as one Lambda instance does; this test proves that
route, body and caller (``X-User-Id``) of each answer are the request's own.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

USERS = [f"conc-u{k}" for k in range(6)]


def _contact(k: int, i: int) -> dict[str, Any]:
    return {
        "kind": "customer",
        "name": f"Kunde {k}-{i}",
        "emails": [f"k{k}-{i}@conc.test"],
        "visible_to": [USERS[k]],
    }


def test_parallel_requests_of_different_routes_and_callers_never_mix(service: Any) -> None:
    base = service.url
    # Each user has a contact only they may see: a GET shows whose request the server served.
    for k, user in enumerate(USERS):
        r = service.session(user).put(f"{base}/v1/contacts/conc-{k}-own", json=_contact(k, 0))
        assert r.status_code in (200, 201), r.text

    local = threading.local()
    problems: list[str] = []

    def session(user: str) -> requests.Session:
        cache = getattr(local, "sessions", None)
        if cache is None:
            cache = local.sessions = {}
        if user not in cache:
            cache[user] = service.session(user)
        return cache[user]

    def one(n: int) -> None:
        rng = random.Random(n)
        k = rng.randrange(len(USERS))
        me = session(USERS[k])
        kind = n % 4
        if kind == 0:  # a PUT with its own body
            r = me.put(f"{base}/v1/contacts/conc-{k}-{n}", json=_contact(k, n))
            ok = r.status_code in (200, 201) and r.json()["id"] == f"conc-{k}-{n}"
            ok = ok and r.json()["name"] == f"Kunde {k}-{n}"
        elif kind == 1:  # another route's body model: a small valid batch, or a large invalid one
            if rng.random() < 0.5:
                items = [{"id": f"conc-b{n}-{j}", **_contact(k, j)} for j in range(3)]
                r = me.post(f"{base}/v1/contacts:batch", json={"contacts": items})
                ok = r.status_code == 200 and [i["id"] for i in r.json()["items"]] == [i["id"] for i in items]
            else:  # validating 400 contacts takes a while: others are served meanwhile
                items = [{"id": f"conc-x{n}-{j}", **_contact(k, j)} for j in range(400)]
                items[-1]["kind"] = "nobody"
                r = me.post(f"{base}/v1/contacts:batch", json={"contacts": items})
                ok = r.status_code == 422 and r.json()["code"] == "invalid_request"
                ok = ok and r.json()["message"].startswith("contacts.399.kind")
        elif kind == 2:  # the caller's own contact: visible
            r = me.get(f"{base}/v1/contacts/conc-{k}-own")
            ok = r.status_code == 200 and r.json()["name"] == f"Kunde {k}-0"
        else:  # someone else's: never visible, whoever else is being served
            j = (k + 1 + rng.randrange(len(USERS) - 1)) % len(USERS)
            r = me.get(f"{base}/v1/contacts/conc-{j}-own")
            ok = r.status_code == 404 and r.json()["code"] == "not_found"
        if not ok:
            problems.append(f"request {n} (kind {kind}, {USERS[k]}): {r.status_code} {r.text[:200]}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(240)))
    assert problems == [], problems[:5]
