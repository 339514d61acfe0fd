"""The image route: inline and proxied images of a mail, behind signed links.

``GET /v1/images/{token}`` is public (an ``<img>`` cannot send the API key): the token
(``domain/images``) is the authority, handed out by ``GET /v1/messages/{id}`` to a caller who
may read the body. The answer is a raster image with headers that keep it an image: no
sniffing, no script, no referrer, cacheable by the reader's browser only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from mailsync.api.params import error_response
from mailsync.api.router import ApiRouter
from mailsync.domain.images import TOKEN_MAX, TOKEN_SECONDS
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import images
else:
    images = lazy_module("mailsync.usecases.images")

router = ApiRouter()

IMAGE_CSP = "default-src 'none'; sandbox"
Token = Annotated[
    str, Path(min_length=1, max_length=TOKEN_MAX, pattern=r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+$")
]


@router.get(
    "/v1/images/<token>",
    tags=["mail"],
    summary="An inline (cid:) or proxied remote image of a mail, by the signed link in its html",
    responses={
        200: {
            "description": "The image (a raster type: PNG, JPEG, GIF, WebP, AVIF, BMP or ICO; never SVG)",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        404: error_response("`not_found`: not a link we signed, or its message or part is gone"),
        410: error_response("`link_expired`: the link is older than a day; read the message again"),
        502: error_response(
            "`image_unavailable`: the remote image could not be fetched, is larger than 5 MB, "
            "is not a raster image, or its host is not public"
        ),
    },
)
def get_image(token: Token):  # noqa: ANN201 - binary body
    found = images.serve(token)
    return Response(
        status_code=200,
        content_type=found.content_type,
        body=found.data,
        headers={
            "Cache-Control": f"private, max-age={TOKEN_SECONDS}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": IMAGE_CSP,
            "Content-Disposition": "inline",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Resource-Policy": "cross-origin",  # the CRM's page embeds it
        },
    )
