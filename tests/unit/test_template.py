"""The SAM template: lints clean, wires the functions, queue and tables as the code expects."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

try:
    from mailsync.store import schema
except ModuleNotFoundError:  # package not installed: use the layer source tree
    sys.path.insert(0, str(ROOT / "layers" / "mailsync"))
    from mailsync.store import schema

pytestmark = pytest.mark.unit

FUNCTIONS = {
    "ApiFunction": "api",
    "SchedulerFunction": "scheduler",
    "SyncWorkerFunction": "sync_worker",
    "WatchRenewerFunction": "watch_renewer",
    "EventsFunction": "events",
    "WebhookFunction": "webhooks",
}
EXPECTED_ENV = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
    "MAILSYNC_TABLE",
    "MAILSYNC_IDEMPOTENCY_TABLE",
    "MAILSYNC_BUCKET",
    "MAILSYNC_QUEUE_URL",
    "MAILSYNC_WEBHOOK_QUEUE_URL",
    "MAILSYNC_KMS_KEY_ID",
    "MAILSYNC_POLL_SECONDS",
    "MAILSYNC_DUE_SHARDS",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return schema.load_template(TEMPLATE)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def _cfn_lint_command() -> list[str]:
    venv_bin = Path(sys.executable).parent / "cfn-lint"
    if venv_bin.exists():
        return [str(venv_bin)]
    found = shutil.which("cfn-lint")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())"]


def test_cfn_lint_passes_without_errors_or_warnings() -> None:
    result = subprocess.run(
        [*_cfn_lint_command(), str(TEMPLATE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"cfn-lint exit {result.returncode}:\n{result.stdout}\n{result.stderr}"


def test_template_is_sam(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"


def test_short_tags_are_parsed_to_long_form(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["MAILSYNC_TABLE"] == {"Ref": "MainTable"}
    assert env["MAILSYNC_KMS_KEY_ID"] == {"Fn::GetAtt": ["MailKey", "Arn"]}


def test_exactly_the_expected_functions(resources: dict[str, Any]) -> None:
    declared = {k for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    assert declared == set(FUNCTIONS)


@pytest.mark.parametrize(("logical_id", "folder"), sorted(FUNCTIONS.items()))
def test_function_code_location_and_handler(resources: dict[str, Any], logical_id: str, folder: str) -> None:
    props = resources[logical_id]["Properties"]
    assert props["CodeUri"] == f"functions/{folder}/"
    assert props["Handler"] == "app.lambda_handler"
    assert (ROOT / "functions" / folder / "requirements.txt").is_file()


@pytest.mark.parametrize(("logical_id", "folder"), sorted(FUNCTIONS.items()))
def test_handler_file_defines_the_declared_function(
    resources: dict[str, Any], logical_id: str, folder: str
) -> None:
    props = resources[logical_id]["Properties"]
    module, func = props["Handler"].rsplit(".", 1)
    path = ROOT / props["CodeUri"] / f"{module.replace('.', '/')}.py"
    assert path.is_file(), f"{logical_id}: handler file {path.relative_to(ROOT)} is missing"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    names |= {
        t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    assert func in names, f"{path.relative_to(ROOT)} does not define {func}"


def test_private_hosts_switch_is_never_deployed() -> None:
    assert "MAILSYNC_ALLOW_PRIVATE_HOSTS" not in TEMPLATE.read_text(encoding="utf-8")


def test_global_environment(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(env) == EXPECTED_ENV
    assert env["POWERTOOLS_SERVICE_NAME"] == "mailsync"
    assert env["MAILSYNC_QUEUE_URL"] == {"Ref": "SyncQueue"}
    assert env["MAILSYNC_POLL_SECONDS"] == {"Ref": "PollSeconds"}
    assert template["Parameters"]["PollSeconds"]["Default"] == 300
    assert env["MAILSYNC_DUE_SHARDS"] == {"Ref": "DueShards"}
    due = template["Parameters"]["DueShards"]
    assert (due["MinValue"], due["MaxValue"]) == (1, 64)  # the range Settings.due_shards accepts


def test_mailsync_variables_are_settings_fields(template: dict[str, Any]) -> None:
    from mailsync.config import Settings

    env = template["Globals"]["Function"]["Environment"]["Variables"]
    for name in env:
        if name.startswith("MAILSYNC_"):
            assert name.removeprefix("MAILSYNC_").lower() in Settings.model_fields, name


def test_queue_is_fifo_with_fifo_dead_letter_queue(resources: dict[str, Any]) -> None:
    queue = resources["SyncQueue"]["Properties"]
    dlq = resources["SyncDeadLetterQueue"]["Properties"]
    assert queue["FifoQueue"] is True and dlq["FifoQueue"] is True
    assert queue["QueueName"]["Fn::Sub"].endswith(".fifo")
    assert dlq["QueueName"]["Fn::Sub"].endswith(".fifo")
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["SyncDeadLetterQueue", "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert queue.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue


def test_worker_reports_partial_batch_failures(resources: dict[str, Any]) -> None:
    worker = resources["SyncWorkerFunction"]["Properties"]
    events = [e for e in worker["Events"].values() if e["Type"] == "SQS"]
    assert len(events) == 1
    event = events[0]["Properties"]
    assert event["Queue"] == {"Fn::GetAtt": ["SyncQueue", "Arn"]}
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= event["BatchSize"] <= 10
    assert worker["Timeout"] <= 900
    visibility = resources["SyncQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility >= 6 * worker["Timeout"]


def test_api_route_and_scheduler_rate(resources: dict[str, Any]) -> None:
    (api_event,) = resources["ApiFunction"]["Properties"]["Events"].values()
    assert api_event["Type"] == "HttpApi"
    assert api_event["Properties"]["Path"] == "/v1/{proxy+}"
    assert api_event["Properties"]["Method"] == "ANY"
    assert api_event["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    (schedule,) = resources["SchedulerFunction"]["Properties"]["Events"].values()
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == "rate(1 minute)"


def test_layer_is_built_from_the_package(template: dict[str, Any], resources: dict[str, Any]) -> None:
    layer = resources["MailsyncLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/mailsync/"
    # arm64 functions need an aarch64 layer: layers/mailsync/Makefile installs the lock's
    # aarch64 wheels for the functions' runtime (SAM's python build would take the host's).
    runtime = template["Globals"]["Function"]["Runtime"]
    arch = template["Globals"]["Function"]["Architectures"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": arch[0]}
    assert layer["Properties"]["CompatibleRuntimes"] == [runtime]
    assert layer["Properties"]["CompatibleArchitectures"] == arch
    makefile = (ROOT / "layers" / "mailsync" / "Makefile").read_text(encoding="utf-8")
    assert "build-MailsyncLayer:" in makefile and "--require-hashes" in makefile
    assert f"LAYER_PY      := {runtime.removeprefix('python')}" in makefile
    if arch == ["arm64"]:
        assert "--only-binary=:all:" in makefile and "_aarch64" in makefile
    reqs = (ROOT / "layers" / "mailsync" / "requirements.txt").read_text(encoding="utf-8").lower()
    names = {
        line.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
        for line in reqs.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert "boto3" not in names and "botocore" not in names
    assert {"aws-lambda-powertools", "pydantic", "pydantic-settings", "pynamodb", "pyyaml"} <= names


def test_storage_is_encrypted_with_the_mail_key(resources: dict[str, Any]) -> None:
    key_arn = {"Fn::GetAtt": ["MailKey", "Arn"]}
    for table in ("MainTable", "IdempotencyTable"):
        sse = resources[table]["Properties"]["SSESpecification"]
        assert sse["SSEEnabled"] is True and sse["KMSMasterKeyId"] == key_arn
    (rule,) = resources["MailBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
    assert rule["BucketKeyEnabled"] is True


def test_table_definitions_are_create_table_kwargs() -> None:
    defs = schema.table_definitions(TEMPLATE)
    assert set(defs) == {"MainTable", "IdempotencyTable"}
    main = defs["MainTable"]
    assert main["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert [g["IndexName"] for g in main["GlobalSecondaryIndexes"]] == [
        "GSI1",
        "GSI2",
        "GSI3",
        "GSI4",
        "GSI5",
        "GSI6",
    ]
    for n, gsi in enumerate(main["GlobalSecondaryIndexes"], start=1):
        # GSI6 sorts by the account's own pk: no second copy of the key on the item.
        assert gsi["KeySchema"] == [
            {"AttributeName": f"gsi{n}pk", "KeyType": "HASH"},
            {"AttributeName": "pk" if n == 6 else f"gsi{n}sk", "KeyType": "RANGE"},
        ]
        # GSI6 (accounts by state) is keys only: a non-key update of an account writes no index item.
        assert gsi["Projection"] == {"ProjectionType": "KEYS_ONLY" if n == 6 else "ALL"}
    assert main["BillingMode"] == "PAY_PER_REQUEST"
    for kwargs in defs.values():
        assert not {"SSESpecification", "TimeToLiveSpecification", "PointInTimeRecoverySpecification"} & set(
            kwargs
        )
    # An account's send idempotency records share a partition, so a purge finds them.
    assert defs["IdempotencyTable"]["KeySchema"] == [
        {"AttributeName": "id", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert schema.ttl_attributes(TEMPLATE) == {"MainTable": "ttl", "IdempotencyTable": "expiration"}


def test_default_template_path_and_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(schema.TEMPLATE_ENV, raising=False)
    assert schema.default_template_path() == TEMPLATE
    other = tmp_path / "other.yaml"
    monkeypatch.setenv(schema.TEMPLATE_ENV, str(other))
    assert schema.default_template_path() == other


def test_intrinsics_in_table_keys_are_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "template.yaml"
    bad.write_text(
        "Resources:\n"
        "  T:\n"
        "    Type: AWS::DynamoDB::Table\n"
        "    Properties:\n"
        "      AttributeDefinitions:\n"
        "        - AttributeName: !Ref KeyName\n"
        "          AttributeType: S\n"
        "      KeySchema:\n"
        "        - AttributeName: !Ref KeyName\n"
        "          KeyType: HASH\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="intrinsic Ref"):
        schema.table_definitions(bad)


# ------------------------------------------------------------- Google Workspace
GOOGLE_CLIENT_ENV = {
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "MAILSYNC_GOOGLE_TOKEN_URI",
    "MAILSYNC_GMAIL_API_BASE",
    "MAILSYNC_GOOGLE_PUBSUB_TOPIC",
    "MAILSYNC_GOOGLE_POLL_SECONDS",
}
GOOGLE_API_ENV = GOOGLE_CLIENT_ENV | {
    "MAILSYNC_GOOGLE_AUTH_URI",
    "MAILSYNC_GOOGLE_CERTS_URI",
    "MAILSYNC_GOOGLE_PUSH_AUDIENCE",
    "MAILSYNC_GOOGLE_PUSH_SERVICE_ACCOUNT",
    "MAILSYNC_STATE_SECRET",
    "MAILSYNC_PUBLIC_URL",
}
MICROSOFT_CLIENT_ENV = {
    "MICROSOFT_CLIENT_ID",
    "MICROSOFT_CLIENT_SECRET",
    "MAILSYNC_MICROSOFT_AUTHORITY",
    "MAILSYNC_GRAPH_API_BASE",
    "MAILSYNC_MICROSOFT_POLL_SECONDS",
}
SECRET_ENV = {"GOOGLE_CLIENT_SECRET", "MICROSOFT_CLIENT_SECRET", "MAILSYNC_STATE_SECRET"}


def _function_env(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return resources[logical_id]["Properties"].get("Environment", {}).get("Variables", {})


def test_google_environment_per_function(resources: dict[str, Any]) -> None:
    assert set(_function_env(resources, "ApiFunction")) == GOOGLE_API_ENV | MICROSOFT_CLIENT_ENV
    assert set(_function_env(resources, "SyncWorkerFunction")) == GOOGLE_CLIENT_ENV | MICROSOFT_CLIENT_ENV
    assert set(_function_env(resources, "WatchRenewerFunction")) == GOOGLE_CLIENT_ENV | MICROSOFT_CLIENT_ENV
    assert set(_function_env(resources, "SchedulerFunction")) == {
        "MAILSYNC_GOOGLE_POLL_SECONDS",
        "MAILSYNC_MICROSOFT_POLL_SECONDS",
    }
    api = _function_env(resources, "ApiFunction")
    assert api["GOOGLE_CLIENT_ID"] == {"Ref": "GoogleClientId"}
    assert api["MAILSYNC_GOOGLE_PUBSUB_TOPIC"] == {"Ref": "GooglePubSubTopic"}
    assert api["MAILSYNC_GOOGLE_PUSH_AUDIENCE"] == {"Ref": "GooglePushAudience"}
    assert api["MAILSYNC_GOOGLE_PUSH_SERVICE_ACCOUNT"] == {"Ref": "GooglePushServiceAccount"}
    assert api["MAILSYNC_PUBLIC_URL"] == {"Ref": "PublicApiUrl"}


def test_google_parameters_default_to_googles_endpoints(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["GoogleAuthUri"]["Default"] == "https://accounts.google.com/o/oauth2/v2/auth"
    assert params["GoogleTokenUri"]["Default"] == "https://oauth2.googleapis.com/token"
    assert params["GoogleCertsUri"]["Default"] == "https://www.googleapis.com/oauth2/v1/certs"
    assert params["GmailApiBase"]["Default"] == "https://gmail.googleapis.com"
    assert params["GooglePollSeconds"]["Default"] == 900
    assert params["PublicApiUrl"]["Default"] == ""
    # Google is off by default, and a client ID alone cannot be deployed.
    assert params["GoogleClientId"]["Default"] == ""
    rule = template["Rules"]["GoogleNeedsSecretAndPush"]
    asserted = {a["Assert"]["Fn::Not"][0]["Fn::Equals"][0]["Ref"] for a in rule["Assertions"]}
    assert asserted == {
        "GoogleClientSecretId",
        "GooglePubSubTopic",
        "GooglePushAudience",
        "GooglePushServiceAccount",
    }


def test_microsoft_parameters_default_to_microsofts_endpoints(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["MicrosoftAuthority"]["Default"] == "https://login.microsoftonline.com/organizations"
    assert params["GraphApiBase"]["Default"] == "https://graph.microsoft.com/v1.0"
    assert params["MicrosoftPollSeconds"]["Default"] == 900
    assert params["MicrosoftClientId"]["Default"] == "" == params["MicrosoftClientSecretId"]["Default"]
    rule = template["Rules"]["MicrosoftNeedsSecret"]
    asserted = {a["Assert"]["Fn::Not"][0]["Fn::Equals"][0]["Ref"] for a in rule["Assertions"]}
    assert asserted == {"MicrosoftClientSecretId"}


def test_google_variables_are_settings_fields(resources: dict[str, Any]) -> None:
    from mailsync.config import Settings

    if "state_secret" not in Settings.model_fields:
        pytest.skip("mailsync.config has no Google settings yet")
    for logical_id in FUNCTIONS:
        for name in _function_env(resources, logical_id):
            if name.startswith("MAILSYNC_"):
                assert name.removeprefix("MAILSYNC_").lower() in Settings.model_fields, (logical_id, name)


def _is_secrets_manager_reference(value: Any) -> bool:
    """True for ``!Sub "{{resolve:secretsmanager:${X}:SecretString}}"`` (or an ``!If`` of it and "")."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, yes, no = value["Fn::If"]
        return _is_secrets_manager_reference(yes) and no == ""
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        return (
            re.fullmatch(r"\{\{resolve:secretsmanager:\$\{\w+\}:SecretString\}\}", value["Fn::Sub"])
            is not None
        )
    return False


def test_no_secret_value_is_inlined(template: dict[str, Any], resources: dict[str, Any]) -> None:
    for logical_id in FUNCTIONS:
        env = _function_env(resources, logical_id)
        for name in SECRET_ENV & set(env):
            assert _is_secrets_manager_reference(env[name]), (logical_id, name, env[name])
    api = _function_env(resources, "ApiFunction")
    assert api["GOOGLE_CLIENT_SECRET"]["Fn::If"][1] == {
        "Fn::Sub": "{{resolve:secretsmanager:${GoogleClientSecretId}:SecretString}}"
    }
    assert api["MICROSOFT_CLIENT_SECRET"]["Fn::If"][1] == {
        "Fn::Sub": "{{resolve:secretsmanager:${MicrosoftClientSecretId}:SecretString}}"
    }
    assert api["MAILSYNC_STATE_SECRET"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${OAuthStateSecret}:SecretString}}"
    }
    # The state key is generated by Secrets Manager, never written down.
    state = resources["OAuthStateSecret"]
    assert state["Type"] == "AWS::SecretsManager::Secret"
    assert "SecretString" not in state["Properties"]
    assert state["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    # The client secret parameter names a secret; it has no value to default to.
    assert template["Parameters"]["GoogleClientSecretId"]["Default"] == ""
    for name, param in template["Parameters"].items():
        if "secret" in name.lower():
            assert param.get("Default", "") == "", name
    assert "GOCSPX-" not in TEMPLATE.read_text(encoding="utf-8")  # Google client secrets' prefix
    assert not list(_secret_literals(template))


def _secret_literals(node: Any, path: str = "") -> Any:
    """Every ``SecretString`` property, and every dynamic reference that is not Secrets Manager."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "SecretString":
                yield f"{path}/{key}"
            yield from _secret_literals(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _secret_literals(value, f"{path}/{i}")
    elif isinstance(node, str) and "{{resolve:" in node and "{{resolve:secretsmanager:" not in node:
        yield path


def test_watch_renewer_is_daily_and_least_privilege(resources: dict[str, Any]) -> None:
    props = resources["WatchRenewerFunction"]["Properties"]
    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "rate(1 day)"
    assert props["Timeout"] <= 900
    statements = [s for policy in props["Policies"] for s in policy["Statement"]]
    assert all(s["Effect"] == "Allow" for s in statements)
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {"dynamodb:Query", "dynamodb:GetItem", "dynamodb:UpdateItem", "kms:Decrypt"}
    table_arn = {"Fn::GetAtt": ["MainTable", "Arn"]}
    for s in statements:
        resources_ = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        assert "*" not in resources_
        if any(a.startswith("kms:") for a in s["Action"]):
            assert resources_ == [{"Fn::GetAtt": ["MailKey", "Arn"]}]
        else:
            assert table_arn in resources_
            assert set(map(str, resources_)) <= {str(table_arn), str({"Fn::Sub": "${MainTable.Arn}/index/*"})}


def test_webhook_queue_and_sender(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """Webhook jobs: a standard queue (no group holds an endpoint behind another) with SSE and a
    dead-letter queue; the sender reports partial batch failures; API (test pings, retries),
    scheduler (due sweep) and sender itself (next attempt) may send to it."""
    queue = resources["WebhookQueue"]["Properties"]
    assert "FifoQueue" not in queue and queue["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]}
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["MAILSYNC_WEBHOOK_QUEUE_URL"] == {"Ref": "WebhookQueue"}
    sender = resources["WebhookFunction"]["Properties"]
    (event,) = sender["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["WebhookQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["VisibilityTimeout"] >= 6 * sender["Timeout"]
    for name in ("ApiFunction", "SchedulerFunction", "WebhookFunction"):
        policies = resources[name]["Properties"]["Policies"]
        sends = [p["SQSSendMessagePolicy"]["QueueName"] for p in policies if "SQSSendMessagePolicy" in p]
        assert {"Fn::GetAtt": ["WebhookQueue", "QueueName"]} in sends, name
