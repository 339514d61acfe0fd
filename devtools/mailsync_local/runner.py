"""The local runner (``mailsync run``): the deployed system on one machine, no AWS account.

* moto's server mode, embedded, stands in for DynamoDB, S3, SQS and KMS; the
  tables come from ``template.yaml`` so they match the deployment.
* The *same* Lambda handlers (``functions/*/app.py``) serve HTTP by translating
  each request into an API Gateway HTTP API (payload 2.0) event.
* A scheduler thread invokes the scheduler handler every ``MAILSYNC_POLL_SECONDS``
  (as EventBridge would) and a worker thread long-polls the FIFO queue and hands
  batches to the worker handler, deleting what succeeded and leaving failures
  for redelivery (as Lambda's SQS event source mapping does); another feeds the
  webhook queue to the webhook handler the same way (``mailsync_local/webhooks.py``).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import random
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]  # devtools/mailsync_local/runner.py
REGION = "eu-central-1"


def interrupt_on_sigterm() -> None:
    """Treat SIGTERM (and SIGHUP) as Ctrl-C, so that ``finally`` blocks and test teardowns run.

    A supervisor, a container runtime or CI stops a process with SIGTERM, whose default
    action ends it at once: the Dovecot we started in its own session (so that a Ctrl-C in
    the terminal reaches only us) would be left running."""

    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LambdaContext:
    """Enough of the Lambda context object for Powertools."""

    function_name: str
    memory_limit_in_mb: int = 1024
    timeout_ms: int = 900_000

    def __post_init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:000000000000:function:{self.function_name}"
        self.function_version = "$LATEST"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + self.timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(name: str) -> Callable[[dict[str, Any], Any], Any]:
    """Import ``functions/<name>/app.py`` under a unique module name."""
    path = REPO_ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"mailsync_fn_{name}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.lambda_handler  # type: ignore[no-any-return]


# ------------------------------------------------------------------ AWS (moto)
def start_moto(port: int | None = None) -> tuple[Any, str]:
    """moto's server on ``port``; its DynamoDB requests run one at a time (see below)."""
    import logging

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    from mailsync_local import moto_transactions

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    moto_transactions.install()

    class AtomicDynamoMoto(ThreadedMotoServer):
        """DynamoDB makes every request atomic; moto does not: a TransactWriteItems writes its
        actions one by one and, cancelled, puts the previous items back
        (moto_transactions.py), so a request served meanwhile would see, or overwrite, a
        half-done transaction; a stream read could return records that are then withdrawn.
        So DynamoDB and DynamoDB Streams requests are served one at a time; SQS long polls
        and the other services stay concurrent (tests/integration/test_runner_moto.py)."""

        def _server_entry(self) -> None:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server

            app = DomainDispatcherApplication(create_backend_app)
            dynamodb = threading.Lock()

            def serialised(environ: dict[str, Any], start_response: Any) -> Any:
                if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
                    with dynamodb:
                        return list(app(environ, start_response))
                return app(environ, start_response)

            self._server = make_server(
                self._ip_address, self._port, serialised, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    port = port or free_port()
    server = AtomicDynamoMoto(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def provision(endpoint: str | None, prefix: str = "mailsync") -> dict[str, str]:
    """Create tables, bucket, queues and the KMS key; return the MAILSYNC_* environment."""
    import boto3

    from mailsync.store.schema import create_tables

    kw: dict[str, Any] = {"region_name": REGION, **({"endpoint_url": endpoint} if endpoint else {})}
    ddb = boto3.client("dynamodb", **kw)
    names = {"MainTable": f"{prefix}-main", "IdempotencyTable": f"{prefix}-idempotency"}
    create_tables(ddb, names)
    kms = boto3.client("kms", **kw)
    key_id = kms.create_key(Description="mailsync local")["KeyMetadata"]["Arn"]
    s3 = boto3.client("s3", **kw)
    bucket = f"{prefix}-mail"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    sqs = boto3.client("sqs", **kw)
    dlq = sqs.create_queue(QueueName=f"{prefix}-sync-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=f"{prefix}-sync.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": "120",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    from mailsync_local.webhooks import provision_queue

    webhook_queue = provision_queue(sqs, prefix)
    return {
        "MAILSYNC_TABLE": names["MainTable"],
        "MAILSYNC_IDEMPOTENCY_TABLE": names["IdempotencyTable"],
        "MAILSYNC_BUCKET": bucket,
        "MAILSYNC_QUEUE_URL": queue,
        "MAILSYNC_WEBHOOK_QUEUE_URL": webhook_queue,
        "MAILSYNC_KMS_KEY_ID": key_id,
    }


def configure_process_env(endpoint: str, extra: dict[str, str]) -> None:
    """Point this process (boto3, pynamodb, settings) at the local endpoint."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "mailsync",
            "POWERTOOLS_SERVICE_NAME": "mailsync",
            **extra,
        }
    )
    from mailsync.config import get_settings
    from mailsync.store import aws, models

    get_settings.cache_clear()
    aws.reset()
    models.bind(extra["MAILSYNC_TABLE"], host=endpoint, region=REGION)


DEV_REDIRECTS = ["http://127.0.0.1:*", "http://localhost:*"]


def ensure_tenant(tenant_id: str, name: str, api_key: str) -> None:
    """The dev tenant: its API key, and OAuth redirects allowed to loopback addresses."""
    from mailsync.domain.clock import iso, utcnow
    from mailsync.store import tenants

    if tenants.tenant_for_key(api_key) is None:
        tenants.create_tenant(tenant_id, name, api_key, iso(utcnow()))
    tenants.allow_redirects(tenant_id, DEV_REDIRECTS)


# ---------------------------------------------------------------------- HTTP
def to_event(
    method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    parts = urlsplit(raw_path)
    query: dict[str, str] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v
    try:
        text, b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, b64 = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("Host", "localhost"),
            "http": {
                "method": method,
                "path": parts.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text if body else None,
        "isBase64Encoded": b64,
    }


def make_http_handler(
    api: Callable[[dict[str, Any], Any], Any], api_key: str | None = None
) -> type[BaseHTTPRequestHandler]:
    from mailsync.api.auth import PUBLIC_PATHS
    from mailsync_local.webapp import LocalWebApp, is_app_path

    """HTTP in front of the API handler. Connections are served by threads, but the handler
    runs one request at a time, as one Lambda instance does: Powertools' resolver keeps the
    current request (route, body, caller) on the app object, so two requests in it at once
    would act on each other's route, body or caller."""
    one_at_a_time = threading.Lock()
    # The web client (/app): the deployed handler, plus the runner's local sign-in.
    webapp = LocalWebApp(
        load_handler("webapp"), api_key or os.environ.get("MAILSYNC_DEV_API_KEY", "dev-key"), one_at_a_time
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path
            if path == "/" or path.startswith("/docs"):
                path = "/docs" + path[len("/docs") :] if path.startswith("/docs") else "/docs"
            event = to_event(self.command, path, dict(self.headers.items()), body, self.client_address[0])
            if is_app_path(path):
                result = webapp(event, LambdaContext("mailsync-webapp", timeout_ms=10_000))
            elif path.split("?", 1)[0] in PUBLIC_PATHS:
                # Webhooks and callbacks are not serialised: a request in progress may wait for
                # one (Graph validates a new subscription by calling our webhook while the
                # OAuth callback that creates it is still being served), as another Lambda
                # instance would serve it.
                result = api(event, LambdaContext("mailsync-api", timeout_ms=29_000))
            else:
                with one_at_a_time:
                    result = api(event, LambdaContext("mailsync-api", timeout_ms=29_000))
            payload = result.get("body") or ""
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
            self.send_response(int(result.get("statusCode", 200)))
            for k, v in (result.get("headers") or {}).items():
                self.send_header(k, v)
            for k, vs in (result.get("multiValueHeaders") or {}).items():
                for v in vs:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def __getattr__(self, name: str) -> Any:
            # http.server looks up do_<METHOD> and answers 501 with an HTML page when it is
            # missing; the deployed HTTP API (ANY /v1/{proxy+}) hands every method to the
            # function, whose resolver answers 405 or 404 in JSON. So every method goes there.
            if name.startswith("do_") and name[3:].isalpha():
                return self._serve
            raise AttributeError(name)

        def log_message(self, fmt: str, *args: Any) -> None:
            if os.environ.get("MAILSYNC_ACCESS_LOG") == "1":
                super().log_message(fmt, *args)

    return Handler


# -------------------------------------------------------------- background
SCHEDULE_RATE_SECONDS = 60  # template.yaml: the scheduler's rate(1 minute)


def _env_int(name: str, default: int, low: int, high: int) -> int:
    value = int(os.environ.get(name) or default)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _env_fraction(name: str) -> float:
    value = float(os.environ.get(name) or 0)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1, not {value}")
    return value


class Background:
    """The scheduler tick and the queue consumers, as threads.

    Knobs (environment, local runner only; Lambda's are in template.yaml):

    * ``MAILSYNC_LOCAL_WORKERS`` (default 1): concurrent consumers, as the event source
      mapping's ``MaximumConcurrency`` runs concurrent worker instances. Each consumer loads
      its own copy of the worker module: Powertools' batch processor keeps the batch being
      processed on the module's processor object, so two consumers sharing one would report
      each other's records.
    * The scheduler ticks every ``MAILSYNC_POLL_SECONDS``, at most every 60 s (EventBridge's
      ``rate(1 minute)``), so a poll interval of 300 s polls every 300-360 s, as deployed.
    * ``MAILSYNC_LOCAL_REPORTS=1``: a JSON line per invocation on stdout (``local_report``:
      its duration, records, failures and each job's wait in the queue), as Lambda's
      ``REPORT`` log line; the load test (tests/e2e/test_load.py) reads them.
    * ``MAILSYNC_LOCAL_REDELIVER_FRACTION`` (load tests only, default 0): this share of the
      jobs that succeeded is made visible again instead of deleted, so SQS delivers them a
      second time (``ApproximateReceiveCount`` 2), as at-least-once delivery may. Lambda has no
      such setting; the runner is not deployed.
    """

    def __init__(self, poll_seconds: int) -> None:
        self.poll_seconds = poll_seconds
        self.tick_seconds = min(poll_seconds, SCHEDULE_RATE_SECONDS)
        self.stop = threading.Event()
        self.scheduler = load_handler("scheduler")
        self.workers = _env_int("MAILSYNC_LOCAL_WORKERS", 1, 1, 64)
        self.reports = os.environ.get("MAILSYNC_LOCAL_REPORTS") == "1"
        self.redeliver = _env_fraction("MAILSYNC_LOCAL_REDELIVER_FRACTION")
        self._random = random.Random()

    def start(self) -> None:
        from mailsync_local.webhooks import start_consumer

        threading.Thread(target=self._schedule_loop, name="scheduler", daemon=True).start()
        start_consumer(self.stop)  # webhook deliveries (functions/webhooks)
        for n in range(self.workers):
            handler = load_handler("sync_worker")  # one module (and batch processor) per consumer
            threading.Thread(
                target=self._worker_loop, args=(handler,), name=f"worker-{n}", daemon=True
            ).start()

    def _report(self, function: str, started: float, **fields: Any) -> None:
        if self.reports:
            line = {
                "local_report": function,
                "at": started,
                "duration_ms": (time.time() - started) * 1000,
                **fields,
            }
            print(json.dumps(line), flush=True)

    def _schedule_loop(self) -> None:
        while not self.stop.is_set():
            started = time.time()
            try:
                result = self.scheduler(
                    {"source": "aws.events", "detail-type": "Scheduled Event"}, LambdaContext("scheduler")
                )
                self._report("scheduler", started, enqueued=(result or {}).get("enqueued"))
            except Exception as e:  # noqa: BLE001 - keep ticking, like EventBridge would
                print(f"scheduler error: {e!r}", file=sys.stderr)
            self.stop.wait(self.tick_seconds)

    def _worker_loop(self, worker: Callable[[dict[str, Any], Any], Any]) -> None:
        from mailsync.config import get_settings
        from mailsync.store import aws

        sqs = aws.client("sqs")
        queue = get_settings().queue_url
        while not self.stop.is_set():
            try:
                got = sqs.receive_message(
                    QueueUrl=queue, MaxNumberOfMessages=5, WaitTimeSeconds=1, AttributeNames=["All"]
                ).get("Messages", [])
                if not got:
                    continue
                started = time.time()
                event = {"Records": [sqs_record(m, queue) for m in got]}
                result = worker(event, LambdaContext("sync-worker")) or {}
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
                again = 0
                for m in got:
                    if m["MessageId"] in failed:
                        continue
                    if self._deliver_again(m):
                        sqs.change_message_visibility(
                            QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                        )
                        again += 1
                    else:
                        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
                self._report(
                    "sync-worker",
                    started,
                    records=len(got),
                    failed=len(failed),
                    redelivered=again,
                    waits_s=[round(started - int(m["Attributes"]["SentTimestamp"]) / 1000, 3) for m in got],
                    receive_counts=[int(m["Attributes"].get("ApproximateReceiveCount", 1)) for m in got],
                )
            except Exception as e:  # noqa: BLE001 - a consumer must survive a bad batch
                print(f"worker error: {e!r}", file=sys.stderr)
                self.stop.wait(1)

    def _deliver_again(self, m: dict[str, Any]) -> bool:
        """Whether a job that succeeded on its first delivery is delivered a second time."""
        first = int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)) == 1
        return first and self.redeliver > 0 and self._random.random() < self.redeliver


def sqs_record(m: dict[str, Any], queue_url: str) -> dict[str, Any]:
    name = queue_url.rsplit("/", 1)[-1]
    return {
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": m.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:000000000000:{name}",
        "awsRegion": REGION,
    }


def serve(
    port: int | None = None,
    *,
    moto_port: int | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Start everything and serve until interrupted."""
    port = port or int(os.environ.get("PORT", "3000"))
    os.environ.setdefault("MAILSYNC_ALLOW_PRIVATE_HOSTS", "1")
    os.environ.setdefault("MAILSYNC_POLL_SECONDS", "30")
    os.environ.setdefault("MAILSYNC_SYNC_TIME_BUDGET_SECONDS", "60")
    os.environ.setdefault("MAILSYNC_STATE_SECRET", secrets.token_urlsafe(32))  # OAuth state, this run only
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    chosen = moto_port or (
        int(os.environ["MAILSYNC_MOTO_PORT"]) if os.environ.get("MAILSYNC_MOTO_PORT") else None
    )
    moto: Any
    if os.environ.get("MAILSYNC_MOTO_IN_PROCESS") == "1":
        moto, endpoint = start_moto(chosen)
    else:  # its own process: a second core for moto (mailsync_local/moto_process.py)
        from mailsync_local.moto_process import MotoProcess

        moto = MotoProcess(chosen or free_port())
        endpoint = f"http://127.0.0.1:{moto.port}"
    env = provision(endpoint)
    configure_process_env(endpoint, env)
    api_key = os.environ.get("MAILSYNC_DEV_API_KEY", "dev-key")
    ensure_tenant("dev", "Development tenant", api_key)

    api = load_handler("api")
    from mailsync.api.app import app, openapi_options
    from mailsync.lazy import load_all

    load_all()  # requests are served on threads: no lazy first load may race (see mailsync.lazy)

    # The spec's own options: the tenant routes declare their security (the key alone),
    # which needs the security schemes; Swagger UI also offers them under "Authorize".
    app.enable_swagger(path="/docs", **openapi_options())
    from mailsync.config import get_settings

    bg = Background(get_settings().poll_seconds)
    bg.start()
    # The events function's event source mapping: moto's stream of the main table.
    from mailsync_local.streams import StreamPump

    pump = StreamPump(env["MAILSYNC_TABLE"], load_handler("events"))
    threading.Thread(target=pump.run, name="events", daemon=True).start()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), make_http_handler(api, api_key))
    info = {
        "url": f"http://127.0.0.1:{port}",
        "api_key": api_key,
        "tenant_id": "dev",
        "moto_endpoint": endpoint,
    }
    print(
        f"mailsync is running on {info['url']}  (Swagger UI: {info['url']}/docs)\n"
        f"  web client         : {info['url']}/app   (local sign-in: any user id of the dev tenant)\n"
        f"  dev tenant API key : {api_key}   (send it as 'Authorization: Bearer {api_key}' with 'X-User-Id: <user>')\n"
        f"  moto endpoint      : {endpoint}   (AWS_ENDPOINT_URL for `mailsync admin`)\n"
        f"  polling every {get_settings().poll_seconds}s, {bg.workers} worker(s); Ctrl-C stops"
        + (f"\n  TEST SETTING: {bg.redeliver:.0%} of the jobs are delivered twice" if bg.redeliver else ""),
        flush=True,
    )
    if on_ready:
        on_ready(info)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        bg.stop.set()
        pump.stop.set()
        httpd.server_close()
        moto.stop()
