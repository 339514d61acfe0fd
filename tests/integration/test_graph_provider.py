"""GraphProvider and MsalTokenSource against the fake Microsoft identity platform + Graph
(tests/fakes/graph.py, HTTPS with a test CA): msal's auth code flow and refresh, folders,
initial delta with since and paging, delta changes, moves with immutable ids, 410 resync,
throttling (Retry-After, 4 concurrent), client ops, subscriptions with the validation
handshake, notifications and lifecycle events, and the real SyncEngine + DynamoDB/S3 mirror (moto)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msal
import pytest
import requests

from mailsync.domain.ports import (
    AuthFailed,
    FolderGone,
    ProviderError,
    Remove,
    Reset,
    SetFlags,
)
from mailsync.domain.sync import AccountContext, SyncEngine
from mailsync.providers.graph import GRAPH_SCOPES, GraphProvider, MsalTokenSource
from mailsync.providers.http import QuotaBudget
from tests.fakes.graph import FakeGraph
from tests.support.dovecot import make_mail
from tests.support.providers import changes, drain, engine_mirror, mirror_by_subject, subjects, upserts

pytestmark = pytest.mark.integration

USER = "alice@contoso.test"
NOW = datetime.now(UTC)
SINCE = NOW - timedelta(days=1)
OLD = NOW - timedelta(days=10)
REDIRECT = "http://127.0.0.1:8999/crm/oauth-done"


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as g:
        yield g


@pytest.fixture
def tokens(graph: FakeGraph) -> dict[str, Any]:
    return graph.issue_tokens(USER)


def make_provider(graph: FakeGraph, tokens: dict[str, Any], **kw: Any) -> GraphProvider:
    kw.setdefault("budget", QuotaBudget(10_000, window=600))
    kw.setdefault("semaphore", threading.BoundedSemaphore(4))
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("rng", random.Random(0))
    kw.setdefault("session", graph.session())
    kw.setdefault("api_base", graph.api_base)
    return GraphProvider(lambda: tokens["access_token"], user=USER, **kw)


@pytest.fixture
def provider(graph: FakeGraph, tokens: dict[str, Any]) -> Iterator[GraphProvider]:
    with make_provider(graph, tokens) as p:
        yield p


run = partial(drain, since=SINCE)  # run(provider, folder, cursor[, batch_size]) -> (batches, cursor)


# ------------------------------------------------------------------------------ msal + tokens


def msal_app(
    graph: FakeGraph, cache: msal.SerializableTokenCache | None = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        graph.client_id,
        client_credential=graph.client_secret,
        authority=graph.authority,
        http_client=graph.session(),
        instance_discovery=False,
        token_cache=cache or msal.SerializableTokenCache(),
    )


def connect(graph: FakeGraph, user: str = USER) -> str:
    """The hosted flow as the callback will run it; returns msal's serialized cache."""
    cache = msal.SerializableTokenCache()
    app = msal_app(graph, cache)
    flow = app.initiate_auth_code_flow(list(GRAPH_SCOPES), redirect_uri=REDIRECT)
    assert "code_challenge_method=S256" in flow["auth_uri"] and "code_verifier" in flow
    auth_response = graph.login(flow["auth_uri"], user)
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    assert "access_token" in result, result
    claims = result["id_token_claims"]
    assert claims["preferred_username"] == user and claims["tid"] == graph.tenant_id and claims["oid"]
    assert "refresh_token" in result
    return str(cache.serialize())


@pytest.mark.filterwarnings("ignore:response_mode='form_post'")
def test_msal_auth_code_flow_refresh_and_revocation(graph):
    cache_json = connect(graph)
    assert graph.requests["openid-configuration"] == 1 and graph.requests["token"] == 1

    source = MsalTokenSource(
        graph.client_id, graph.client_secret, graph.authority, cache_json, http_client=graph.session()
    )
    graph.deliver(USER, make_mail("hello"))
    with GraphProvider(source, user=USER, api_base=graph.api_base, session=graph.session()) as p:
        assert p.me()["mail"] == USER and p.mailbox_address() == USER
        graph.expire_access_tokens()  # 401 -> invalidate -> force_refresh via the refresh token
        assert {f.name for f in p.list_folders()} >= {"Inbox", "Sent Items"}
    assert graph.requests["token"] == 2
    assert source.changed  # msal stored the new tokens: the caller persists source.serialize()
    again = MsalTokenSource(
        graph.client_id, graph.client_secret, graph.authority, source.serialize(), http_client=graph.session()
    )
    assert again()  # the cached access token, no token call
    assert graph.requests["token"] == 2

    graph.fail_refresh(USER, "interaction_required")
    again.invalidate()
    with pytest.raises(AuthFailed, match="interaction_required"):
        again()
    graph.fail_refresh(USER, None)
    graph.revoke_user(USER)
    fresh = MsalTokenSource(
        graph.client_id, graph.client_secret, graph.authority, source.serialize(), http_client=graph.session()
    )
    fresh.invalidate()
    with GraphProvider(fresh, user=USER, api_base=graph.api_base, session=graph.session()) as p:
        with pytest.raises(AuthFailed, match="invalid_grant"):
            p.me()


def test_token_source_without_account_is_auth_failed(graph):
    source = MsalTokenSource(
        graph.client_id, graph.client_secret, graph.authority, None, http_client=graph.session()
    )
    with pytest.raises(AuthFailed):
        source()


def test_token_endpoint_pkce_errors_and_single_use_codes(graph):
    import base64
    import hashlib

    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    s = graph.session()
    token_url = graph.authority + "/oauth2/v2.0/token"
    form = {
        "grant_type": "authorization_code",
        "client_id": graph.client_id,
        "client_secret": graph.client_secret,
        "redirect_uri": REDIRECT,
        "scope": "offline_access Mail.ReadWrite",
    }
    code = graph.authorize(USER, code_challenge=challenge, redirect_uri=REDIRECT)
    bad = s.post(token_url, data={**form, "code": code, "code_verifier": "w" * 50}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    code = graph.authorize(USER, code_challenge=challenge, redirect_uri=REDIRECT)
    ok = s.post(token_url, data={**form, "code": code, "code_verifier": verifier}, timeout=10)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    info = json.loads(base64.urlsafe_b64decode(body["client_info"] + "=="))
    assert info == {"uid": graph.mailbox(USER).oid, "utid": graph.tenant_id}
    again = s.post(token_url, data={**form, "code": code, "code_verifier": verifier}, timeout=10)
    assert again.json()["error"] == "invalid_grant"
    wrong_secret = s.post(token_url, data={**form, "client_secret": "nope", "code": "x"}, timeout=10)
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    denied = graph.login(
        f"{graph.authority}/oauth2/v2.0/authorize?client_id={graph.client_id}&redirect_uri={REDIRECT}&state=s1",
        USER,
        deny=True,
    )
    assert denied["error"] == "access_denied" and denied["state"] == "s1"
    # Discovery as msal reads it (instance discovery too, when a client leaves it on).
    cfg = s.get(graph.authority + "/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert cfg["token_endpoint"] == token_url and cfg["issuer"].endswith("/{tenantid}/v2.0")
    inst = s.get(
        graph.instance_discovery_url,
        params={"api-version": "1.1", "authorization_endpoint": graph.authority + "/oauth2/v2.0/authorize"},
        timeout=10,
    ).json()
    assert inst["tenant_discovery_endpoint"].endswith("/organizations/v2.0/.well-known/openid-configuration")
    assert s.get(graph.authority + "/discovery/v2.0/keys", timeout=10).json()["keys"][0]["kty"] == "RSA"


# ------------------------------------------------------------------------------ folders


def test_folders_paths_roles_and_gone(graph, provider):
    graph.create_folder(USER, "2024", parent="archive")
    clients = graph.create_folder(USER, "Clients")
    graph.create_folder(USER, "ACME", parent=clients)
    graph.reset_counters()
    folders = {f.name: f for f in provider.list_folders()}
    assert {n: f.role for n, f in folders.items()} == {
        "Inbox": "inbox",
        "Drafts": "drafts",
        "Sent Items": "sent",
        "Deleted Items": "trash",
        "Junk Email": "junk",
        "Archive": "archive",
        "Archive/2024": None,
        "Outbox": None,
        "Clients": None,
        "Clients/ACME": None,
    }
    assert folders["Outbox"].selectable is False and folders["Inbox"].selectable
    assert list(folders)[0] == "Inbox"
    assert graph.requests["batch"] == 1 and graph.batch_sizes == [7]  # well-known look-ups in one $batch
    assert provider.folder_id("Clients/ACME") == graph.folder_id(USER, "Clients/ACME")
    with pytest.raises(FolderGone):
        list(provider.changes("Nope", None, SINCE))
    _, cur = run(provider, "Clients/ACME", None)
    graph.delete_folder(USER, "Clients")
    with pytest.raises(FolderGone):
        run(provider, "Clients/ACME", cur)


def test_folder_listing_follows_next_links(graph, tokens):
    for i in range(5):
        graph.create_folder(USER, f"F{i}")
    with make_provider(graph, tokens, page_size=3) as p:
        names = {f.name for f in p.list_folders()}
    assert {f"F{i}" for i in range(5)} <= names and "Inbox" in names
    assert graph.requests["mailFolders.list"] == 4  # 12 top-level folders, 3 per page


# ------------------------------------------------------------------------------ initial load


def test_initial_delta_since_paging_and_headers(graph, tokens):
    ids = [graph.deliver(USER, make_mail(f"new {i}")) for i in range(5)]
    graph.deliver(USER, make_mail("old"), received=OLD)
    read = graph.deliver(USER, make_mail("read", message_id="read@example.com"), read=True)
    graph.deliver(USER, make_mail("elsewhere"), folder="archive")
    graph.reset_counters()

    with make_provider(graph, tokens) as p:
        batches, cursor = run(p, "Inbox", None, batch_size=2)
    assert subjects(batches) == {f"new {i}" for i in range(5)} | {"read"}
    ups = upserts(batches)
    assert set(ups) == {*ids, read}  # immutable ids
    assert ups[read].unread is False and ups[ids[0]].unread is True
    assert b"read@example.com" in ups[read].raw
    assert ups[read].thread_hint == graph.message(USER, read).conversation_id
    assert all(u.internal_date >= SINCE and u.internal_date.tzinfo is not None for u in ups.values())
    assert all(b.initial for b in batches)
    assert [b.done for b in batches] == [False, False, True]
    assert [len(b.changes) for b in batches] == [2, 2, 2]
    assert (
        cursor and cursor["v"] == 1 and cursor["phase"] == "delta" and "$deltatoken=" in cursor["deltaLink"]
    )
    assert batches[0].cursor["phase"] == "initial" and "$skiptoken=" in batches[0].cursor["nextLink"]
    assert batches[-1].progress == (6, 7)  # total: the folder's totalItemCount (an estimate)

    deltas = [c for c in graph.calls if "/messages/delta" in c.target]
    assert len(deltas) == 3 and graph.requests["messages.value"] == 6
    first = parse_qs(urlsplit(deltas[0].target).query)
    assert first["$filter"] == [f"receivedDateTime ge {SINCE.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
    assert "internetMessageId" in first["$select"][0] and "conversationId" in first["$select"][0]
    assert all("$filter" not in c.target for c in deltas[1:])  # links are followed verbatim
    assert all("odata.maxpagesize=2" in c.prefer for c in deltas)
    assert all('IdType="ImmutableId"' in c.prefer for c in graph.calls)  # on every call


def test_initial_load_resumes_from_an_intermediate_cursor(graph, tokens):
    for i in range(7):
        graph.deliver(USER, make_mail(f"m{i}"))
    with make_provider(graph, tokens) as p:
        gen = p.changes("Inbox", None, SINCE, 2)
        first = [next(gen), next(gen)]  # stop mid-round (as a time budget would)
        gen.close()
        assert first[-1].cursor["phase"] == "initial" and not first[-1].done
        rest, cursor = run(p, "Inbox", first[-1].cursor, batch_size=2)
    got = [c.ref for c in changes(first + rest)]
    assert len(got) == 7 and len(set(got)) == 7
    assert all(b.initial for b in rest)
    assert cursor and cursor["phase"] == "delta"


def test_an_empty_folder_yields_one_batch_with_its_delta_link(provider):
    batches, cursor = run(provider, "Inbox", None)
    assert len(batches) == 1 and batches[0].changes == [] and batches[0].done
    assert cursor and "deltaLink" in cursor


# ------------------------------------------------------------------------------ deltas


def test_delta_new_read_move_and_delete(graph, tokens):
    work = graph.create_folder(USER, "Work")
    a, b, c, d = (graph.deliver(USER, make_mail(s)) for s in "abcd")
    with make_provider(graph, tokens) as p:
        _, inbox_cur = run(p, "Inbox", None)
        _, work_cur = run(p, "Work", None)

    new = graph.deliver(USER, make_mail("new"))
    graph.move(USER, a, work)  # between synced folders
    graph.move(USER, b, "archive")  # to a folder we do not sync
    graph.delete(USER, c)  # hard delete
    graph.mark_read(USER, d)
    mirrored = {"Inbox": {a, b, c, d}, "Work": set()}
    graph.reset_counters()

    def known(folder: str, refs: list[str]) -> set[str]:
        return mirrored[folder] & set(refs)

    with make_provider(graph, tokens, known=known) as p:
        inbox, inbox_cur2 = run(p, "Inbox", inbox_cur)
        work_b, _ = run(p, "Work", work_cur)
    assert set(upserts(inbox)) == {new}
    assert {x.ref for x in changes(inbox) if isinstance(x, Remove)} == {a, b, c}
    assert [(x.ref, x.unread) for x in changes(inbox) if isinstance(x, SetFlags)] == [(d, False)]
    assert set(upserts(work_b)) == {a}  # the same (immutable) id in the other folder
    assert graph.requests["messages.value"] == 2  # the read flag needs no MIME
    assert all(not bt.initial for bt in inbox + work_b)

    # Unchanged: one delta call, one empty batch advancing nothing but the link.
    graph.reset_counters()
    with make_provider(graph, tokens) as p:
        again, _ = run(p, "Inbox", inbox_cur2)
    assert changes(again) == [] and graph.requests["messages.delta"] == 1


def test_without_immutable_ids_a_move_changes_the_id(graph, tokens):
    mid = graph.deliver(USER, make_mail("x"))
    rest_before = graph.message(USER, mid).rest_id
    s = graph.session()
    h = {"Authorization": f"Bearer {tokens['access_token']}"}
    dest = graph.folder_id(USER, "archive")
    moved = s.post(
        f"{graph.api_base}/me/messages/{rest_before}/move", json={"destinationId": "archive"}, headers=h
    )
    assert (
        moved.status_code == 201
        and moved.json()["id"] != rest_before
        and moved.json()["parentFolderId"] == dest
    )
    assert s.get(f"{graph.api_base}/me/messages/{rest_before}", headers=h).status_code == 404
    h["Prefer"] = 'IdType="ImmutableId"'
    back = s.post(f"{graph.api_base}/me/messages/{mid}/move", json={"destinationId": "inbox"}, headers=h)
    assert back.json()["id"] == mid


def test_old_mail_moved_into_a_folder_stays_out(graph, tokens):
    work = graph.create_folder(USER, "Work")
    old = graph.deliver(USER, make_mail("old"), received=OLD)
    with make_provider(graph, tokens) as p:
        _, cur = run(p, "Work", None)
        graph.move(USER, old, work)
        batches, _ = run(p, "Work", cur)
    assert upserts(batches) == {}


def test_expired_delta_token_resets_and_reloads(graph, tokens):
    a = graph.deliver(USER, make_mail("a"))
    with make_provider(graph, tokens) as p:
        _, cur = run(p, "Inbox", None)
    b = graph.deliver(USER, make_mail("b"))
    graph.expire_delta(USER, "inbox")
    graph.reset_counters()
    with make_provider(graph, tokens) as p:
        batches, new_cur = run(p, "Inbox", cur)
    assert isinstance(batches[0].changes[0], Reset)
    assert sum(isinstance(c, Reset) for c in changes(batches)) == 1
    assert set(upserts(batches)) == {a, b}
    assert all(x.initial for x in batches) and batches[-1].done
    assert new_cur and new_cur["phase"] == "delta" and new_cur["deltaLink"] != cur["deltaLink"]
    assert "$filter" in [c for c in graph.calls if "/delta" in c.target][-1].target  # reloaded from since


def test_expired_skip_token_mid_round_and_400_sync_state_not_found(tokens):
    with FakeGraph(expired_status=400) as g:
        toks = g.issue_tokens(USER)
        for i in range(4):
            g.deliver(USER, make_mail(f"x{i}"))
        with make_provider(g, toks) as p:
            gen = p.changes("Inbox", None, SINCE, 2)
            first = next(gen)
            gen.close()
            g.expire_delta(USER)
            rest, cur = run(p, "Inbox", first.cursor, batch_size=2)
        assert isinstance(rest[0].changes[0], Reset)
        assert len(upserts(rest)) == 4 and cur and cur["phase"] == "delta"


def test_a_foreign_cursor_link_is_never_followed(graph, provider):
    graph.deliver(USER, make_mail("x"))
    bad = {"v": 1, "phase": "delta", "deltaLink": "https://evil.example/v1.0/me/messages/delta?$deltatoken=1"}
    batches, cur = run(provider, "Inbox", bad)
    assert isinstance(batches[0].changes[0], Reset) and len(upserts(batches)) == 1
    assert cur and cur["deltaLink"].startswith(graph.api_base)


# ------------------------------------------------------------------------------ throttling


def test_429_and_503_honour_retry_after(graph, tokens):
    graph.deliver(USER, make_mail("x"))
    slept: list[float] = []
    graph.fail_next(2, 429, path="/messages/delta", retry_after=7)
    graph.fail_next(1, 503, path="/$value", retry_after=3)
    with make_provider(graph, tokens, sleep=slept.append) as p:
        batches, cur = run(p, "Inbox", None)
    assert len(upserts(batches)) == 1 and cur and cur["phase"] == "delta"
    assert len(slept) == 3 and sorted(slept)[0] >= 3 and sum(s >= 7 for s in slept) == 2


def test_throttled_batch_parts_are_retried(graph, tokens):
    a = graph.deliver(USER, make_mail("a"))
    b = graph.deliver(USER, make_mail("b"))
    slept: list[float] = []
    graph.fail_next(1, 429, path=f"/messages/{b}", retry_after=4)
    with make_provider(graph, tokens, sleep=slept.append) as p:
        p.set_seen("Inbox", [a, b], True)
    assert graph.message(USER, a).is_read and graph.message(USER, b).is_read
    assert graph.batch_sizes == [2, 1] and slept and slept[0] >= 4


def test_persisting_throttling_raises_before_any_batch(graph, tokens):
    graph.deliver(USER, make_mail("x"))
    with make_provider(graph, tokens) as p:
        _, cur = run(p, "Inbox", None)
    graph.deliver(USER, make_mail("y"))
    graph.fail_next(100, 429, path="/messages/delta", retry_after=1)
    slept: list[float] = []
    with make_provider(graph, tokens, sleep=slept.append, max_retries=3) as p:
        gen = p.changes("Inbox", cur, SINCE)
        with pytest.raises(ProviderError) as exc:
            next(gen)
    assert not isinstance(exc.value, AuthFailed)
    assert len(slept) == 3


def test_at_most_four_concurrent_requests_per_mailbox(tokens):
    with FakeGraph(latency=0.05, concurrency_limit=4) as g:
        toks = g.issue_tokens(USER)
        for i in range(16):
            g.deliver(USER, make_mail(f"c{i}"))
        sem = threading.BoundedSemaphore(4)  # shared, as semaphore_for(user) is in production
        results: list[int] = []

        def sync_once() -> None:
            with make_provider(g, toks, semaphore=sem) as p:
                results.append(len(upserts(run(p, "Inbox", None, batch_size=16)[0])))

        threads = [threading.Thread(target=sync_once) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [16, 16]
        assert 2 <= g.max_concurrent[USER] <= 4  # parallel $value fetches, never more than 4
        assert not [c for c in g.calls if c.target.endswith("/$value")] or g.requests["messages.value"] == 32


def test_every_request_spends_the_rolling_budget(graph, tokens):
    for i in range(3):
        graph.deliver(USER, make_mail(f"q{i}"))
    budget = QuotaBudget(10_000, window=600)
    graph.reset_counters()
    with make_provider(graph, tokens, budget=budget) as p:
        p.list_folders()
        run(p, "Inbox", None)
    assert budget.total == graph.user_requests[USER]  # $batch parts counted one by one
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    tiny = QuotaBudget(3, window=600, clock=lambda: now[0], sleep=sleep)
    with make_provider(graph, tokens, budget=tiny) as p:
        for _ in range(4):
            p.me()
    assert slept == [pytest.approx(600.0)]


# ------------------------------------------------------------------------------ client ops


def test_client_operations(graph, provider):
    work = graph.create_folder(USER, "Work")
    a = graph.deliver(USER, make_mail("a"))
    b = graph.deliver(USER, make_mail("b"))
    provider.set_seen("Inbox", [a, b], True)
    assert graph.message(USER, a).is_read and graph.message(USER, b).is_read
    provider.set_seen("Inbox", [a], False)
    assert not graph.message(USER, a).is_read
    assert provider.move("Inbox", [a], "Work") == {a: a}
    assert graph.message(USER, a).folder_id == work
    with pytest.raises(FolderGone):
        provider.move("Work", [a], "Nope")
    provider.delete("Inbox", [b])
    assert graph.folder_of(USER, b) == "deleteditems"
    provider.delete("Deleted Items", [b])  # from Deleted Items: DELETE
    with pytest.raises(KeyError):
        graph.message(USER, b)
    provider.set_seen("Inbox", [b], True)  # vanished meanwhile: no error
    c = graph.deliver(USER, make_mail("c", message_id="it's@example.com"))  # a quote: OData-escaped
    assert provider.locate("Inbox", "it's@example.com") == [c]
    assert provider.locate("Work", "it's@example.com") == [] == provider.locate("Nope", "x@y")
    assert provider.append("Sent Items", b"raw") is None
    assert graph.requests["messages.delete"] == 1 and graph.requests["messages.move"] == 2


def test_send_new_and_reply_keep_the_conversation(graph, tokens):
    orig = make_mail("Angebot", from_="Bob <bob@example.com>", to=USER, message_id="offer@example.com")
    first = graph.deliver(USER, orig)
    with make_provider(graph, tokens) as p:
        _, sent_cur = run(p, "Sent Items", None)
        out = p.send(make_mail("hello", from_=USER, to="x@example.com", message_id="sent-1@contoso.test"))
        assert out == {"draft_id": None}
        reply = make_mail(
            "Re: Angebot",
            from_=USER,
            to="bob@example.com",
            message_id="reply-1@contoso.test",
            in_reply_to="offer@example.com",
            references="offer@example.com",
        )
        r = p.send(reply, reply_to_id=first)
        assert r["draft_id"] and r["conversationId"] == graph.message(USER, first).conversation_id
        p.send(
            {
                "subject": "json",
                "body": {"contentType": "Text", "content": "hi"},
                "toRecipients": [{"emailAddress": {"address": "y@example.com"}}],
            }
        )
        batches, _ = run(p, "Sent Items", sent_cur)
    assert graph.requests["sendMail"] == 2
    assert graph.requests["messages.createReply"] == 1 and graph.requests["messages.send"] == 1
    sent = {
        u.raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].split(b"\n")[0] for u in upserts(batches).values()
    }
    assert b"<sent-1@contoso.test>" in sent and b"<reply-1@contoso.test>" in sent and len(sent) == 3
    reply_up = next(u for u in upserts(batches).values() if b"reply-1@contoso.test" in u.raw)
    assert reply_up.thread_hint == graph.message(USER, first).conversation_id
    assert not graph.messages_in(USER, "drafts")  # the draft was sent


# ------------------------------------------------------------------------------ subscriptions


class Webhook:
    """A tiny local endpoint: echoes ``validationToken`` (or misbehaves), records notifications."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | wrong | status500
        self.received: list[tuple[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                q = parse_qs(urlsplit(self.path).query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if "validationToken" in q:
                    token = q["validationToken"][0]  # parse_qs decodes it
                    out = (token if hook.mode == "ok" else "nope").encode()
                    self.send_response(500 if hook.mode == "status500" else 200)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                else:
                    hook.received.append((urlsplit(self.path).path, json.loads(body or b"{}")))
                    out = b""
                    self.send_response(202)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    w = Webhook()
    yield w
    w.close()


def test_subscription_validation_notifications_and_lifecycle(graph, provider, webhook):
    notify_url, life_url = (
        webhook.base + "/v1/webhooks/microsoft",
        webhook.base + "/v1/webhooks/microsoft/lifecycle",
    )
    sub = provider.subscribe(notify_url, client_state="s3cret", lifecycle_url=life_url)
    assert sub["changeType"] == "created,updated,deleted" and sub["resource"] == "me/messages"
    assert len(graph.validations) == 2 and all(v.status == 200 for v in graph.validations)
    exp = datetime.fromisoformat(sub["expirationDateTime"].replace("Z", "+00:00"))
    assert timedelta(minutes=4200) < exp - datetime.now(UTC) <= timedelta(minutes=4230)
    assert [s["id"] for s in provider.subscriptions()] == [sub["id"]]
    renewed = provider.renew(sub["id"], minutes=60)
    assert renewed["expirationDateTime"] < sub["expirationDateTime"]

    mid = graph.deliver(USER, make_mail("push me"))
    deliveries = graph.notify_user(USER, "created", mid)
    assert [d.status for d in deliveries] == [202]
    path, payload = webhook.received[-1]
    n = payload["value"][0]
    assert path == "/v1/webhooks/microsoft" and n["clientState"] == "s3cret" and n["changeType"] == "created"
    assert n["subscriptionId"] == sub["id"] and n["tenantId"] == graph.tenant_id
    assert n["resourceData"]["id"] == mid and n["resource"].endswith(f"/Messages/{mid}")
    forged = graph.notify(sub["id"], "updated", mid, client_state="guess")
    assert forged.payload["value"][0]["clientState"] == "guess"

    for event in ("reauthorizationRequired", "missed", "subscriptionRemoved"):
        d = graph.lifecycle(sub["id"], event) if sub["id"] in graph.subscriptions else None
        assert d is not None and d.status == 202
        path, payload = webhook.received[-1]
        assert path.endswith("/lifecycle") and payload["value"][0]["lifecycleEvent"] == event
    assert graph.subscriptions == {}  # subscriptionRemoved dropped it
    provider.unsubscribe(sub["id"])  # already gone: no error


def test_subscription_validation_failures_and_limits(graph, provider, webhook):
    webhook.mode = "wrong"
    with pytest.raises(ProviderError, match="ValidationError"):
        provider.subscribe(webhook.base + "/hook", client_state="x")
    webhook.mode = "status500"
    with pytest.raises(ProviderError, match="ValidationError"):
        provider.subscribe(webhook.base + "/hook", client_state="x")
    assert graph.subscriptions == {}
    s = graph.session()
    h = {"Authorization": f"Bearer {provider._get_token()}"}
    too_long = {
        "changeType": "created",
        "notificationUrl": webhook.base + "/hook",
        "resource": "me/messages",
        "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=4300)).isoformat(),
    }
    r = s.post(graph.api_base + "/subscriptions", json=too_long, headers=h, timeout=10)
    assert r.status_code == 400 and "4230" in r.json()["error"]["message"]


def test_validation_can_be_injected_without_http(tokens):
    seen: list[tuple[str, str]] = []

    def validator(url: str, token: str) -> bool:
        seen.append((url, token))
        return True

    with FakeGraph(validator=validator) as g:
        toks = g.issue_tokens(USER)
        with make_provider(g, toks) as p:
            sub = p.subscribe(
                "https://mailsync.test/v1/webhooks/microsoft",
                client_state="c",
                resource="me/mailFolders('inbox')/messages",
            )
        assert seen and seen[0][1].startswith("Validation: ") and sub["id"] in g.subscriptions
    with FakeGraph(validate_subscriptions=False) as g:
        toks = g.issue_tokens(USER)
        with make_provider(g, toks) as p:
            assert p.subscribe("https://unreachable.invalid/hook", client_state="c")["id"]


def test_fake_refuses_batches_over_20(graph, tokens):
    body = {"requests": [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)]}
    r = graph.session().post(
        graph.api_base + "/$batch",
        json=body,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"
    body["requests"] = body["requests"][:2] + [
        {"id": "v", "method": "GET", "url": "/me/messages/nope/$value"}
    ]
    r = graph.session().post(
        graph.api_base + "/$batch",
        json=body,
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert [x["status"] for x in r.json()["responses"]] == [200, 200, 404]


# ------------------------------------------------------------------------------ the real engine


@pytest.fixture
def mirror_env(aws):
    return engine_mirror("a_ms", USER, SINCE)


def engine_sync(graph: FakeGraph, tokens: dict[str, Any], store: Any, ctx: AccountContext) -> Any:
    engine = SyncEngine(store, ctx, batch_size=2)
    holder: dict[str, Any] = {}

    def known(folder: str, refs: list[str]) -> list[str]:
        st = holder["states"][folder]
        return list(store.get_locations(folder, st.gen, refs))

    with make_provider(graph, tokens, known=known) as p:
        states = engine.reconcile_folders(p.list_folders(), "all", [])
        holder["states"] = states
        return engine.run(p, states, deadline=float("inf"))


def mirrored() -> dict[str, dict[str, Any]]:
    return mirror_by_subject("a_ms")


def test_engine_move_keeps_id_read_delete_and_resync(graph, tokens, mirror_env):
    store, ctx = mirror_env
    work = graph.create_folder(USER, "Work")
    ids = {
        s: graph.deliver(USER, make_mail(s, message_id=f"{s.replace(' ', '-')}@example.com"))
        for s in ("contract", "archive me", "delete me", "to outbox")
    }
    graph.deliver(USER, make_mail("too old"), received=OLD)
    report = engine_sync(graph, tokens, store, ctx)
    before = mirrored()
    assert set(before) == {"contract", "archive me", "delete me", "to outbox"} and report.new == 4
    assert before["contract"]["folder"] == "Inbox" and before["contract"]["unread"] is True
    doc = store.get_messages([before["contract"]["id"]])[before["contract"]["id"]]
    assert doc["provider_thread_id"] == graph.message(USER, ids["contract"]).conversation_id
    assert store.get_folders()["Inbox"].cursor["phase"] == "delta"
    assert not store.get_folders()["Outbox"].synced and not store.get_folders()["Deleted Items"].synced

    graph.move(USER, ids["contract"], work)  # between synced folders
    graph.mark_read(USER, ids["contract"])
    graph.move(USER, ids["archive me"], "deleteditems")  # to a folder we do not sync
    graph.delete(USER, ids["delete me"])
    graph.move(USER, ids["to outbox"], "outbox")
    engine_sync(graph, tokens, store, ctx)
    after = mirrored()
    assert set(after) == {"contract"}
    assert after["contract"]["id"] == before["contract"]["id"]
    assert after["contract"]["thread_id"] == before["contract"]["thread_id"]
    assert after["contract"]["folder"] == "Work" and after["contract"]["unread"] is False

    # Moved back, read flag changed in place (SetFlags through the known hook): still one message.
    graph.move(USER, ids["contract"], "inbox")
    engine_sync(graph, tokens, store, ctx)
    graph.mark_read(USER, ids["contract"], False)
    graph.reset_counters()
    engine_sync(graph, tokens, store, ctx)
    assert graph.requests["messages.value"] == 0
    back = mirrored()
    assert set(back) == {"contract"} and back["contract"]["id"] == before["contract"]["id"]
    assert back["contract"]["folder"] == "Inbox" and back["contract"]["unread"] is True

    # An expired delta token reloads the window without duplicates and keeps the id.
    graph.deliver(USER, make_mail("later", message_id="later@example.com"))
    graph.expire_delta(USER)
    engine_sync(graph, tokens, store, ctx)
    reloaded = mirrored()
    assert set(reloaded) == {"contract", "later"}
    assert reloaded["contract"]["id"] == before["contract"]["id"]
    states = store.get_folders()
    assert states["Inbox"].old_gens == [] and states["Inbox"].gen == 1
    assert states["Inbox"].cursor["phase"] == "delta"


def test_engine_sent_copy_is_recognised_by_internet_message_id(graph, tokens, mirror_env):
    store, ctx = mirror_env
    orig = graph.deliver(
        USER, make_mail("Hi", from_="Bob <bob@example.com>", to=USER, message_id="hi@example.com")
    )
    engine_sync(graph, tokens, store, ctx)
    with make_provider(graph, tokens) as p:
        p.send(
            make_mail(
                "Re: Hi",
                from_=USER,
                to="bob@example.com",
                message_id="re-hi@contoso.test",
                in_reply_to="hi@example.com",
                references="hi@example.com",
            ),
            reply_to_id=orig,
        )
    engine_sync(graph, tokens, store, ctx)
    engine_sync(graph, tokens, store, ctx)
    msgs = mirrored()
    assert set(msgs) == {"Hi", "Re: Hi"}
    assert msgs["Re: Hi"]["folder"] == "Sent Items" and msgs["Re: Hi"]["message_id"] == "re-hi@contoso.test"
    assert msgs["Re: Hi"]["thread_id"] == msgs["Hi"]["thread_id"]


def test_requests_ca_bundle_env_is_enough(graph, tokens, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", graph.ca_bundle)
    with GraphProvider(
        lambda: tokens["access_token"],
        user=USER,
        api_base=graph.api_base,
        budget=QuotaBudget(100, window=600),
        semaphore=threading.BoundedSemaphore(4),
    ) as p:
        assert p.me()["userPrincipalName"] == USER
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with GraphProvider(
        lambda: tokens["access_token"],
        user=USER,
        api_base=graph.api_base,
        budget=QuotaBudget(100, window=600),
        max_retries=0,
    ) as p:
        with pytest.raises(ProviderError):
            p.me()


# ------------------------------------------------------------------------------ completeness check


def test_inventory_lists_exactly_the_mirrorable_ids(graph, tokens):
    ids = [graph.deliver(USER, make_mail(f"in {i}")) for i in range(3)]
    graph.deliver(USER, make_mail("old"), received=OLD)
    graph.deliver(USER, make_mail("elsewhere"), folder="archive")
    with make_provider(graph, tokens) as p:
        batches, cursor = run(p, "Inbox", None)
        graph.reset_counters()
        inv = p.inventory("Inbox", cursor, SINCE)
        assert inv.refs == set(ids) == set(upserts(batches))  # immutable ids, as the delta's
        assert inv.requests == 1
        listing = [c for c in graph.calls if c.target.split("?")[0].endswith("/messages")]
        assert len(listing) == 1 and 'IdType="ImmutableId"' in listing[0].prefer
        q = parse_qs(urlsplit(listing[0].target).query)
        assert q["$select"] == ["id,receivedDateTime"] and q["$top"] == ["1000"]
        assert q["$filter"] == [f"receivedDateTime ge {SINCE.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
        assert graph.requests["messages.value"] == 0  # ids only, never a body
        # Nothing is covered without a cursor, or in the middle of a round.
        assert p.inventory("Inbox", None, SINCE).refs == frozenset()
        mid_round = {"v": 1, "phase": "initial", "nextLink": cursor["deltaLink"], "skip": 0, "done": 0}
        assert p.inventory("Inbox", mid_round, SINCE).refs == frozenset()
        # The documented race: a deltaLink tells no time, so a mail that arrived after the
        # folder's last round is listed (its fetch mirrors it; the next round upserts it again).
        late = graph.deliver(USER, make_mail("late"))
        assert p.inventory("Inbox", cursor, SINCE).refs == {*ids, late}


def test_inventory_of_1000_mails_costs_one_request_and_no_body(graph, tokens):
    for i in range(1001):
        graph.deliver(USER, make_mail(f"m{i}"))
    with make_provider(graph, tokens) as p:
        p.list_folders()
        cursor = {
            "v": 1,
            "phase": "delta",
            "deltaLink": f"{graph.api_base}/me/mailFolders('x')/messages/delta",
        }
        graph.reset_counters()
        inv = p.inventory("Inbox", cursor, SINCE)
    assert len(inv.refs) == 1001
    assert inv.requests == 2 == graph.requests["messages.list"]  # 1000 per page, then 1
    assert set(graph.requests) == {"messages.list"}


def test_fetch_builds_the_upserts_of_the_initial_load(graph, tokens):
    ids = [graph.deliver(USER, make_mail(f"h{i}")) for i in range(3)]
    read = graph.deliver(USER, make_mail("read"), read=True)
    with make_provider(graph, tokens) as p:
        batches, _ = run(p, "Inbox", None)
        loaded = upserts(batches)
        graph.delete(USER, ids[2])
        graph.move(USER, ids[1], "archive")
        old = graph.deliver(USER, make_mail("old"), received=OLD)
        got = p.fetch("Inbox", [ids[0], ids[1], ids[2], read, old], SINCE)
    # Deleted, moved away and old ones are left out; the others equal the initial load's.
    assert sorted(got, key=lambda u: u.ref) == sorted([loaded[ids[0]], loaded[read]], key=lambda u: u.ref)
    assert all(u.thread_hint for u in got)


# ------------------------------------------------------------------------------ error kinds


def test_throttling_after_the_retries_is_rate_limited_with_retry_after(graph, tokens):
    from mailsync.domain.ports import RateLimited

    cursor = {"v": 1, "phase": "delta", "deltaLink": f"{graph.api_base}/me/mailFolders('x')/messages/delta"}
    graph.fail_next(100, 429, path="/messages", retry_after=9)
    with make_provider(graph, tokens, max_retries=2) as p:
        p.list_folders()
        with pytest.raises(RateLimited) as err:
            p.inventory("Inbox", cursor, SINCE)
    assert err.value.kind == "rate_limited" and err.value.retry_after == 9.0 and err.value.status == 429
    graph.clear_faults()
    mid = graph.deliver(USER, make_mail("x"))
    graph.fail_next(100, 429, path=f"/messages/{mid}", retry_after=4)  # $batch parts
    with make_provider(graph, tokens, max_retries=2) as p:
        with pytest.raises(RateLimited) as err:
            p.fetch("Inbox", [mid], SINCE)
    assert err.value.retry_after == 4.0
    graph.clear_faults()
    graph.fail_next(100, 500, path="/messages", retry_after=None)
    with make_provider(graph, tokens, max_retries=1) as p:
        p.list_folders()
        with pytest.raises(ProviderError) as err:
            p.inventory("Inbox", cursor, SINCE)
    assert err.value.kind == "provider_error" and err.value.status == 500


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (403, "ErrorAccessDenied", "permission_denied"),
        (507, "ErrorQuotaExceeded", "quota_exceeded"),
        (400, "ErrorQuotaExceeded", "quota_exceeded"),  # by its code whatever the status
        (404, "ErrorItemNotFound", "mailbox_gone"),
    ],
)
def test_folder_errors_have_their_kind(graph, tokens, status, code, kind):
    work = graph.create_folder(USER, "Work")
    mid = graph.deliver(USER, make_mail("w"), folder=work)
    other = graph.deliver(USER, make_mail("i"))
    cursor = {"v": 1, "phase": "delta", "deltaLink": f"{graph.api_base}/me/mailFolders('x')/messages/delta"}
    graph.fail_folder(USER, "Work", status, code=code)
    with make_provider(graph, tokens) as p:
        for call in (
            lambda: p.inventory("Work", cursor, SINCE),
            lambda: list(p.changes("Work", None, SINCE)),
        ):
            with pytest.raises(ProviderError) as err:
                call()
            assert err.value.kind == kind
        if kind == "mailbox_gone":
            assert p.fetch("Work", [mid], SINCE) == []  # a message that is not found is left out
        else:
            with pytest.raises(ProviderError) as err:
                p.fetch("Work", [mid], SINCE)
            assert err.value.kind == kind and err.value.code == code
        assert p.inventory("Inbox", cursor, SINCE).refs == {other}  # other folders unaffected
    graph.fail_folder(USER, "Work", None)
    with make_provider(graph, tokens) as p:
        assert p.inventory("Work", cursor, SINCE).refs == {mid}


@pytest.mark.filterwarnings("ignore:response_mode='form_post'")
def test_refused_refresh_and_transport_failures_have_their_kind(graph, tokens):
    import socket

    from mailsync.domain.ports import ConnectionFailed, TimedOut, TlsFailed

    cache_json = connect(graph)
    source = MsalTokenSource(
        graph.client_id, graph.client_secret, graph.authority, cache_json, http_client=graph.session()
    )
    graph.fail_refresh(USER)
    graph.expire_access_tokens()
    with GraphProvider(source, user=USER, api_base=graph.api_base, session=graph.session()) as p:
        with pytest.raises(AuthFailed) as auth:
            p.me()
    assert auth.value.kind == "auth_failed"
    graph.fail_refresh(USER, None)

    slept: list[float] = []
    # The fake's certificate is not trusted by a default session: a certificate failure.
    with make_provider(graph, tokens, session=requests.Session(), sleep=slept.append) as p:
        with pytest.raises(TlsFailed) as tls:
            p.me()
    assert tls.value.kind == "tls_error" and slept == []  # not retried
    with socket.create_server(("127.0.0.1", 0)) as srv:  # accepts, never answers
        base = f"http://127.0.0.1:{srv.getsockname()[1]}/v1.0"
        with make_provider(graph, tokens, api_base=base, timeout=0.3, max_retries=1) as p:
            with pytest.raises(TimedOut) as slow:
                p.me()
    assert slow.value.kind == "timeout"
    with socket.create_server(("127.0.0.1", 0)) as srv:
        closed = f"http://127.0.0.1:{srv.getsockname()[1]}/v1.0"
    with make_provider(graph, tokens, api_base=closed, max_retries=1) as p:
        with pytest.raises(ConnectionFailed) as down:
            p.me()
    assert down.value.kind == "connection_failed"
    assert tokens["access_token"] not in f"{tls.value} {slow.value} {down.value}"


def test_a_long_retry_after_ends_the_run_at_once_instead_of_sleeping_through_it(graph, tokens):
    from mailsync.domain.ports import RateLimited

    cursor = {"v": 1, "phase": "delta", "deltaLink": f"{graph.api_base}/me/mailFolders('x')/messages/delta"}
    slept: list[float] = []
    graph.fail_next(1, 429, path="/messages", retry_after=600)
    with make_provider(graph, tokens, max_retries=5, sleep=slept.append) as p:
        p.list_folders()
        with pytest.raises(RateLimited) as err:
            p.inventory("Inbox", cursor, SINCE)
    # A Lambda must not sleep ten minutes: the wait goes to the scheduler (next_due).
    assert slept == [] and err.value.retry_after == 600.0
    graph.fail_next(1, 429, path="/messages", retry_after=2)
    with make_provider(graph, tokens, max_retries=5, sleep=slept.append) as p:
        p.list_folders()
        p.inventory("Inbox", cursor, SINCE)
    assert slept == [2.0]  # a short one is waited for in place
