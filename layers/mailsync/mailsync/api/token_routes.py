"""``POST /v1/user-tokens``: a short-lived token a browser may hold for one user, minted with
the tenant key (which must never reach a browser). Rules: ``domain/user_tokens.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ConfigDict, Field

from mailsync.api.params import TENANT_SECURITY, error_response, json_response, tenant_caller
from mailsync.api.router import ApiRouter
from mailsync.domain.user_tokens import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, MIN_TTL_SECONDS
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import user_tokens
else:
    user_tokens = lazy_module("mailsync.usecases.user_tokens")

router = ApiRouter()


class UserTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=256, pattern=r"^[^#]+$", description="The user it acts for")
    ttl_seconds: int = Field(
        DEFAULT_TTL_SECONDS, ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS, description="Its lifetime"
    )


class UserToken(BaseModel):
    token: str = Field(
        description="Send as `Authorization: Bearer <token>`, without `X-User-Id`. It acts for its "
        "user alone, never on tenant routes (403 `tenant_key_required`), and stops working when it "
        "expires (401 `token_expired`), when the key that minted it is deleted, or when the user is"
    )
    expires_at: str


@router.post(
    "/v1/user-tokens",
    tags=["user tokens"],
    summary="Mint a user token for a browser (the tenant key never reaches one)",
    security=TENANT_SECURITY,
    responses={
        201: {"description": "Minted", "content": {"application/json": {"model": UserToken}}},
        409: error_response("`user_purging`: the user is being deleted"),
    },
)
def create_user_token(body: UserTokenIn) -> Response[dict[str, Any]]:
    who = tenant_caller(router)
    return json_response(201, user_tokens.mint(who.tenant_id, who.key_id, body.user_id, body.ttl_seconds))
