"""The service's own OpenAPI document, read as a tenant reads it."""

from __future__ import annotations

import json
import re
from typing import Any


def served_spec() -> dict[str, Any]:
    from mailsync.api.app import app, openapi_options

    return json.loads(app.get_openapi_json_schema(**openapi_options()))


def documented_codes(spec: dict[str, Any]) -> set[str]:
    """The error codes the spec names (in backticks in each error answer's description) and
    those of mailsync.errors' classes. Enum values (`starttls`) and parameter names (`after`)
    in the same descriptions are not codes."""
    from mailsync import errors

    def classes(c: type) -> list[type]:
        return [c, *(x for sub in c.__subclasses__() for x in classes(sub))]

    values = set(re.findall(r'"enum": \[([^\]]*)\]', json.dumps(spec)))
    enums = {v.strip(' "') for group in values for v in group.split(",")}
    params = {
        p["name"] for ops in spec["paths"].values() for op in ops.values() for p in op.get("parameters", [])
    }
    codes = {c.code for c in classes(errors.MailsyncError) if isinstance(getattr(c, "code", None), str)}
    for ops in spec["paths"].values():
        for op in ops.values():
            for status, resp in op.get("responses", {}).items():
                if status[0] in "45":
                    codes |= set(re.findall(r"`([a-z_]+)`", resp.get("description", "")))
    return codes - enums - params
