"""Request and response schemas of the webhook endpoint routes (part of the OpenAPI spec).

Field names, routes, status codes and error codes here are the public contract (README,
"Webhooks").
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from mailsync.api.schemas import _In
from mailsync.domain.webhooks import DESCRIPTION_MAX, URL_MAX

EVENTS_DESCRIPTION = 'Event types (`message.created`, …), or `["*"]` for every type'


class WebhookEndpointIn(_In):
    url: str = Field(
        min_length=1, max_length=URL_MAX, description="https URL (no user info); its host must be public"
    )
    events: list[str] = Field(min_length=1, max_length=20, description=EVENTS_DESCRIPTION)
    description: str = Field("", max_length=DESCRIPTION_MAX)


class WebhookEndpointPatchIn(_In):
    url: str | None = Field(None, min_length=1, max_length=URL_MAX)
    events: list[str] | None = Field(None, min_length=1, max_length=20, description=EVENTS_DESCRIPTION)
    description: str | None = Field(None, max_length=DESCRIPTION_MAX)
    enabled: StrictBool | None = Field(None, description="true turns a disabled endpoint back on")


class WebhookEndpoint(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: Literal["failing", "manual"] | None = Field(
        description="`failing`: 5 days with only failed deliveries; `manual`: PATCH enabled false; "
        "null while enabled"
    )
    created_at: str
    updated_at: str


class WebhookEndpointCreated(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    secret: str = Field(description="The signing secret (`whsec_…`): shown only here and on rotation")
    created_at: str
    updated_at: str


class WebhookEndpointList(BaseModel):
    items: list[WebhookEndpoint]


class WebhookSecret(BaseModel):
    secret: str = Field(description="The new signing secret; the old one also signs for 24 hours")


class WebhookQueued(BaseModel):
    delivery_id: str
    event_id: str | None = None
    status: Literal["pending"]


class WebhookDelivery(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int = Field(ge=0)
    last_status_code: int | None = Field(description="The HTTP status of the last attempt; null: no answer")
    last_error: str | None
    next_attempt_at: str | None = Field(description="While pending: when the next attempt is due")
    created_at: str


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDelivery]
    next_cursor: str | None = None
