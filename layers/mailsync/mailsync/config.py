"""Validated configuration, read from the environment (never from AWS at import time).

Every Lambda function and the local runner read the same variables; the names are
declared in ``template.yaml`` (Globals → Environment) and set by ``mailsync run``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Waits (seconds) after each failed webhook attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_WEBHOOK_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILSYNC_", extra="ignore")

    table: str = Field("mailsync-main", description="Main DynamoDB table (pk/sk + GSI1..5)")
    aws_region: str = Field(
        "eu-central-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "MAILSYNC_AWS_REGION"),
    )
    aws_endpoint_url: str = Field(
        "",
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "MAILSYNC_AWS_ENDPOINT_URL"),
        description="An AWS endpoint such as moto's server (local runner); empty in AWS",
    )
    idempotency_table: str = Field("mailsync-idempotency", description="Powertools idempotency table")
    bucket: str = Field("mailsync-mail", description="S3 bucket for raw MIME and large bodies")
    queue_url: str = Field("", description="SQS FIFO queue of sync jobs")
    kms_key_id: str = Field("alias/mailsync", description="KMS key for credentials and S3 SSE-KMS")
    allow_private_hosts: bool = Field(False, description="Allow IMAP/SMTP hosts on private networks")
    poll_seconds: int = Field(300, ge=1, description="How often an IMAP account is polled")
    due_shards: int = Field(4, ge=1, le=64, description="Shards of the due-accounts index")
    sync_time_budget_seconds: int = Field(600, ge=5, description="Work per worker invocation")
    sync_batch_size: int = Field(100, ge=1, le=500, description="Mails fetched and stored per batch")
    imap_timeout_seconds: float = Field(30.0, gt=0)
    public_url: str = Field(
        "", description="Public base URL of the API (OAuth callbacks); else the request host"
    )
    state_secret: str = Field("", description="HMAC key of OAuth state tokens (required for OAuth)")

    # Google Workspace (docs/google-workspace.md). Endpoints are configurable so tests use fakes.
    google_client_id: str = Field(
        "", validation_alias=AliasChoices("GOOGLE_CLIENT_ID", "MAILSYNC_GOOGLE_CLIENT_ID")
    )
    google_client_secret: str = Field(
        "", validation_alias=AliasChoices("GOOGLE_CLIENT_SECRET", "MAILSYNC_GOOGLE_CLIENT_SECRET")
    )
    google_auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_uri: str = "https://oauth2.googleapis.com/token"
    google_certs_uri: str = "https://www.googleapis.com/oauth2/v1/certs"
    gmail_api_base: str = "https://gmail.googleapis.com"
    google_pubsub_topic: str = ""
    google_push_audience: str = ""
    google_push_service_account: str = ""
    google_poll_seconds: int = Field(900, ge=1, description="Polling backs push up at this slow interval")

    # Microsoft 365 (docs/microsoft-365.md). The authority and Graph base are configurable so
    # tests use the fake (tests/fakes/graph.py); REQUESTS_CA_BUNDLE lets them trust its TLS.
    microsoft_client_id: str = Field(
        "", validation_alias=AliasChoices("MICROSOFT_CLIENT_ID", "MAILSYNC_MICROSOFT_CLIENT_ID")
    )
    microsoft_client_secret: str = Field(
        "", validation_alias=AliasChoices("MICROSOFT_CLIENT_SECRET", "MAILSYNC_MICROSOFT_CLIENT_SECRET")
    )
    microsoft_authority: str = "https://login.microsoftonline.com/organizations"
    graph_api_base: str = "https://graph.microsoft.com/v1.0"
    microsoft_poll_seconds: int = Field(
        900, ge=1, description="Polling backs change notifications up at this slow interval"
    )

    # Outbound webhooks (usecases/webhooks.py, README "Webhooks").
    webhook_queue_url: str = Field("", description="SQS standard queue of webhook delivery jobs")
    webhook_retry_schedule: Annotated[tuple[int, ...], NoDecode] = Field(
        DEFAULT_WEBHOOK_RETRY_SCHEDULE,
        description="Comma-separated waits in seconds after each failed attempt (1-20 of them, "
        "each 1..86400; the attempts are one more than the waits)",
    )

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> tuple[int, ...]:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                value = tuple(int(p) for p in parts)
            except ValueError as e:
                raise ValueError("MAILSYNC_WEBHOOK_RETRY_SCHEDULE: comma-separated whole seconds") from e
        if not isinstance(value, list | tuple):
            raise ValueError("MAILSYNC_WEBHOOK_RETRY_SCHEDULE: comma-separated whole seconds")
        waits = tuple(int(v) for v in value)
        if not 1 <= len(waits) <= 20 or not all(1 <= w <= 86400 for w in waits):
            raise ValueError("MAILSYNC_WEBHOOK_RETRY_SCHEDULE: 1-20 waits, each 1..86400 seconds")
        return waits


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
