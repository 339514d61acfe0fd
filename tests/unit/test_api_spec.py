"""The OpenAPI document states the limits the service enforces on path ids."""

from __future__ import annotations

import pytest

from mailsync.api.app import app
from mailsync.api.params import ID_MAX

pytestmark = pytest.mark.unit


def test_every_path_id_is_limited_to_128_characters_in_the_spec() -> None:
    spec = app.get_openapi_schema(title="mailsync", version="1").model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    seen, unlimited = 0, []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    seen += 1
                    if (p["schema"].get("minLength"), p["schema"].get("maxLength")) != (1, ID_MAX):
                        unlimited.append(f"{method.upper()} {path} {p['name']}")
    assert seen > 20  # every id route is in the spec
    assert unlimited == []
