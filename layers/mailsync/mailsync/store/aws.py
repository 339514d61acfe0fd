"""Lazily created boto3 clients (nothing touches AWS at import time; cold starts matter).

``AWS_ENDPOINT_URL`` (moto's server in the local runner) is honoured by botocore itself.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    import boto3  # imported on first use: keeps handler import time low

    return boto3.session.Session().client(service)


def reset() -> None:
    """Forget cached clients (tests and the local runner switch endpoints)."""
    client.cache_clear()
