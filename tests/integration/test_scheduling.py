"""Scheduler (due accounts by Query, one FIFO job per account) and the SQS worker handler."""

from __future__ import annotations

import json

import boto3
import pytest

from mailsync.config import get_settings
from mailsync.usecases import accounts
from mailsync.usecases.sync_account import due_accounts
from mailsync_local.runner import LambdaContext, load_handler, sqs_record
from tests.support.accounts import connect, mirror
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration


def drain() -> list[dict]:
    sqs = boto3.client("sqs")
    out = []
    while True:
        got = sqs.receive_message(
            QueueUrl=get_settings().queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return out
        for m in got:
            sqs.delete_message(QueueUrl=get_settings().queue_url, ReceiptHandle=m["ReceiptHandle"])
        out.extend(got)


def test_scheduler_enqueues_due_accounts_once_per_account(tenant, dovecot, imap_user):
    acc = connect(dovecot, imap_user)
    other = connect(dovecot, dovecot.new_user("second"), owner="bob")
    drain()  # the initial jobs of connect
    due = {a for _, a, _ in due_accounts()}
    assert {acc["id"], other["id"]} <= due

    handler = load_handler("scheduler")
    assert handler({}, LambdaContext("scheduler"))["enqueued"] == 2
    jobs = drain()
    groups = sorted(m["Attributes"]["MessageGroupId"] for m in jobs)
    assert groups == sorted([f"t1:{acc['id']}", f"t1:{other['id']}"])
    # Their due time moved forward: the next tick does not enqueue them again.
    assert handler({}, LambdaContext("scheduler"))["enqueued"] == 0
    assert drain() == []

    # Paused accounts are not due.
    accounts.pause("t1", "alice", acc["id"])
    assert acc["id"] not in {a for _, a, _ in due_accounts(now="2999-01-01T00:00:00Z")}
    accounts.resume("t1", "alice", acc["id"])
    assert acc["id"] in {a for _, a, _ in due_accounts()}


def test_worker_handler_syncs_and_reports_partial_failures(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "INBOX", make_mail("via worker"))
    jobs = drain()
    assert [json.loads(m["Body"])["account_id"] for m in jobs] == [acc["id"]]
    worker = load_handler("sync_worker")
    bad = dict(jobs[0], MessageId="bad-1", Body="not json")
    event = {
        "Records": [sqs_record(jobs[0], get_settings().queue_url), sqs_record(bad, get_settings().queue_url)]
    }
    result = worker(event, LambdaContext("worker"))
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}
    assert [m["subject"] for m in mirror(acc)] == ["via worker"]


def test_scheduler_batches_many_accounts_over_all_shards(tenant):
    """35 due accounts (more than one SendMessageBatch per shard for some) are all sent
    exactly once, and a job the queue refuses keeps its account due for the next tick."""
    from mailsync.store import accounts as repo
    from mailsync.store import aws

    s = get_settings()
    docs = [accounts.new_account("t1", "alice", f"u{i}@example.com", "imap") for i in range(35)]
    for doc in docs:
        repo.save_account(doc, s.due_shards)
    assert {int(k.split("#")[1]) for k in (repo.due_index_keys(d, s.due_shards)[0] for d in docs)} == set(
        range(s.due_shards)
    )  # the accounts spread over every shard
    drain()

    refused = docs[7].account_id
    sqs = aws.client("sqs")

    def remember(params, context, **_):
        context["entries"] = params["Entries"]  # per request: the shards run in parallel

    def refuse_one(parsed, context, **_):
        # SQS answers per entry: turn the refused account's entry into a failure, as SQS
        # reports throttling or an internal error for one entry of a batch.
        bad = {e["Id"] for e in context["entries"] if refused in e["MessageGroupId"]}
        parsed["Successful"] = [e for e in parsed.get("Successful", []) if e["Id"] not in bad]
        parsed["Failed"] = [{"Id": i, "SenderFault": False, "Code": "InternalError"} for i in bad]

    sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", remember)
    sqs.meta.events.register("after-call.sqs.SendMessageBatch", refuse_one)
    try:
        sent = load_handler("scheduler")({}, LambdaContext("scheduler"))["enqueued"]
    finally:
        sqs.meta.events.unregister("provide-client-params.sqs.SendMessageBatch", remember)
        sqs.meta.events.unregister("after-call.sqs.SendMessageBatch", refuse_one)
    groups = sorted(m["Attributes"]["MessageGroupId"] for m in drain())
    assert groups == sorted(f"t1:{d.account_id}" for d in docs)  # one job per account, no duplicate
    assert sent == 34  # the refused one is not counted as sent ...
    assert {a for _, a, _ in due_accounts()} == {refused}  # ... and stays due; the others moved on

    assert load_handler("scheduler")({}, LambdaContext("scheduler"))["enqueued"] == 1
    assert [m["Attributes"]["MessageGroupId"] for m in drain()] == [f"t1:{refused}"]  # sent on the next tick
    assert {a for _, a, _ in due_accounts()} == set()
