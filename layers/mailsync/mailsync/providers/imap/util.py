"""Small text helpers shared by the IMAP modules: server texts arrive as bytes or str."""

from __future__ import annotations

import re

__all__ = ["server_message", "to_text"]


def to_text(value: object) -> str:
    """``value`` as text (bytes decoded as UTF-8, undecodable bytes replaced)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def server_message(exc: BaseException) -> str:
    """The server's text of an imaplib/imapclient error, without Python reprs."""
    msg = str(exc)
    m = re.search(r"b'(.*)'|b\"(.*)\"", msg)
    if m:
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        prefix = msg[: m.start()].strip()
        return f"{prefix} {inner}".strip()
    return msg
