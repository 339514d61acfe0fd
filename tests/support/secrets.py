"""The registry of every secret the tests use, and the scanner that looks for them.

Fixtures and fakes :func:`register` what they hand out or accept: Dovecot passwords (through
:meth:`Dovecot.add_user`, hooked in tests/conftest.py), the fakes' access and refresh tokens
and client secrets (tests/fakes/), Graph ``clientState`` values, tenant API keys. Text the
suite produced is fed with :func:`feed` (log records, captured stdout/stderr, files named by
:func:`watch_file` such as the e2e runner's log) and :func:`findings` says where a secret
showed up, in its plain, base64 (standard and URL-safe alphabets, also inside a longer
base64 text, RFC 4648) or URL-encoded (RFC 3986 percent-encoding, and ``+`` for spaces) form.

Invariants
----------
* A finding names the secret's kind and a hash prefix (sha256, 12 hex digits), never the
  secret: the report of a leak must not leak it again.
* Secrets shorter than :data:`MIN_LENGTH` are not registered (``key-t1``: a word that can
  occur anywhere would only give false alarms).
* Fed text is reduced at once to its distinct tokens (runs of characters a token, a
  base64 text or a percent-encoded text consists of), each with the first place it was seen,
  so the suite's whole log costs memory in proportion to its distinct words, not its size.
  Text that a secret with other characters (a space, ``@``) could hide in is kept in a
  spool file and searched directly at the end.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "Finding",
    "Registry",
    "feed",
    "findings",
    "forms",
    "register",
    "registered",
    "registry",
    "watch_file",
]

MIN_LENGTH = 8
_TOKEN_CHARS = r"A-Za-z0-9._~+/=%-"
_TOKEN = re.compile(f"[{_TOKEN_CHARS}]{{{MIN_LENGTH},}}")
_TOKENLIKE = re.compile(f"[{_TOKEN_CHARS}]+")
_PREFIX = MIN_LENGTH


@dataclass(frozen=True)
class Finding:
    kind: str
    digest: str  # sha256 prefix of the secret
    form: str  # plain, base64 (either alphabet), url
    where: str

    def __str__(self) -> str:
        return f"{self.kind} sha256:{self.digest} ({self.form}) in {self.where}"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def _b64_inner(data: bytes, offset: int, urlsafe: bool) -> str:
    """The base64 characters that encode only ``data``'s bits when ``data`` starts ``offset``
    bytes into a longer text (its neighbours change the characters at both ends)."""
    enc = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(b"\0" * offset + data).decode()
    first = -(-8 * offset // 6)  # ceil
    last = 8 * (offset + len(data)) // 6  # exclusive
    return enc[first:last]


def forms(secret: str) -> dict[str, str]:
    """Every form of ``secret`` the scanner looks for: ``{text: form name}``."""
    data = secret.encode()
    out: dict[str, str] = {secret: "plain"}
    for urlsafe in (False, True):
        full = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode().rstrip("=")
        out.setdefault(full, "base64")
        for offset in (0, 1, 2):
            inner = _b64_inner(data, offset, urlsafe)
            if len(inner) >= MIN_LENGTH:
                out.setdefault(inner, "base64")
    for encoded in (quote(secret, safe=""), quote_plus(secret, safe="")):
        out.setdefault(encoded, "url")
    return out


class Registry:
    """Secrets and the text seen (see the module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.secrets: dict[str, str] = {}  # secret -> kind
        self._tokens: dict[str, str] = {}  # distinct token -> where first seen
        self._files: list[tuple[Path, str]] = []
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.fed_chars = 0

    def register(self, kind: str, secret: str | None) -> None:
        if secret and len(secret) >= MIN_LENGTH:
            with self._lock:
                self.secrets.setdefault(secret, kind)

    def registered(self, kind: str, secret: str) -> str:
        """:meth:`register` ``secret`` and return it (for use inside an expression)."""
        self.register(kind, secret)
        return secret

    def watch_file(self, path: Path | str, where: str | None = None) -> None:
        """Scan ``path`` (e.g. a subprocess's log) at the end, whatever it holds by then."""
        with self._lock:
            self._files.append((Path(path), where or str(path)))

    def feed(self, text: str, where: str) -> None:
        if not text:
            return
        tokens = _TOKEN.findall(text)
        with self._lock:
            self.fed_chars += len(text)
            for t in tokens:
                self._tokens.setdefault(t, where)
            if not _TOKENLIKE.fullmatch(text):  # one line per text: a secret holds no newline
                self._spool.write(f"{where.replace(chr(10), ' ')}\0{text.replace(chr(10), chr(0))}\n")

    def _feed_files(self) -> None:
        for path, where in list(self._files):
            try:
                self.feed(path.read_text(errors="replace"), where)
            except OSError:
                pass
        self._files.clear()

    def findings(self) -> list[Finding]:
        """Every place a registered secret was seen, once per (secret, form, place)."""
        self._feed_files()
        with self._lock:
            index: dict[str, list[tuple[str, str, str]]] = {}  # prefix -> (text, form, secret)
            odd: list[tuple[str, str, str]] = []  # forms a token cannot hold
            for secret in self.secrets:
                for text, form in forms(secret).items():
                    if _TOKENLIKE.fullmatch(text):
                        index.setdefault(text[:_PREFIX], []).append((text, form, secret))
                    else:
                        odd.append((text, form, secret))
            found: set[Finding] = set()
            for token, where in self._tokens.items():
                for i in range(len(token) - _PREFIX + 1):
                    for text, form, secret in index.get(token[i : i + _PREFIX], ()):
                        if token.startswith(text, i):
                            found.add(Finding(self.secrets[secret], digest(secret), form, where))
            if odd:
                self._spool.seek(0)
                for line in self._spool:
                    where, _, text = line.partition("\0")
                    for needle, form, secret in odd:
                        if needle in text:
                            found.add(Finding(self.secrets[secret], digest(secret), form, where))
                self._spool.seek(0, 2)
        return sorted(found, key=str)


#: The session's registry (fixtures and fakes feed it; tests/conftest.py reports it).
registry = Registry()
register = registry.register
registered = registry.registered
feed = registry.feed
watch_file = registry.watch_file
findings = registry.findings


# -- the pytest session (hooks in tests/conftest.py) ------------------------------------------

_STD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class _LogFeed(logging.Handler):
    """Feeds every log record, with its ``extra`` fields and traceback, to the registry."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [record.getMessage()]
            parts += [f"{k}={v}" for k, v in record.__dict__.items() if k not in _STD_ATTRS]
            if record.exc_info:
                parts.append(logging.Formatter().formatException(record.exc_info))
            test = os.environ.get("PYTEST_CURRENT_TEST", "session")
            registry.feed("\n".join(parts), f"log record of {record.name} ({test})")
        except Exception:  # noqa: BLE001, S110 - a broken record must not break the test
            pass


_found: list[Finding] = []
_handler = _LogFeed()


def ensure_log_feed() -> None:
    """(Re)attach the root handler: a test or library may have reset the root's handlers."""
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)


def install() -> None:
    """Start collecting: a root log handler, and the registration of every Dovecot password
    and every tenant API key the code under test mints (wrapped, behaviour unchanged)."""
    ensure_log_feed()
    from mailsync.domain import apikeys
    from mailsync_local.dovecot import Dovecot

    add_user = Dovecot.add_user

    def add_user_registered(self: Dovecot, user: str, password: str) -> None:
        register("imap/smtp password", password)
        add_user(self, user, password)

    Dovecot.add_user = add_user_registered  # type: ignore[method-assign]
    new_secret = apikeys.new_secret
    apikeys.new_secret = lambda: registered("tenant api key", new_secret())
    register("oauth state secret", "test-state-secret")  # MAILSYNC_STATE_SECRET of the OAuth tests


def feed_report(report: Any) -> None:
    ensure_log_feed()
    for name, content in report.sections:
        feed(content, f"{report.nodeid} [{name}]")


#: Under pytest-xdist each worker scans what it saw and leaves its result here (set by the
#: controller before the workers start); the controller merges them (``finish``).
WORKER_RESULTS = "MAILSYNC_LEAKSCAN_RESULTS"

_totals: dict[str, Any] = {}


def finish(worker_id: str | None = None) -> bool:
    """Scan; True when a secret was found. A worker writes its result for the controller
    (counts and findings: digests and places, never a secret); the controller merges every
    worker's result with its own."""
    _found[:] = findings()
    kinds = Counter(registry.secrets.values())
    totals = {"kinds": dict(kinds), "fed": registry.fed_chars, "found": [vars(f) for f in _found]}
    results = os.environ.get(WORKER_RESULTS)
    if worker_id is not None and results:
        (Path(results) / f"{worker_id}.json").write_text(json.dumps(totals))
    elif results:
        for path in sorted(Path(results).glob("*.json")):
            got = json.loads(path.read_text())
            kinds.update(got["kinds"])
            totals["fed"] += got["fed"]
            _found.extend(Finding(**f) for f in got["found"])
        totals["kinds"] = dict(kinds)
    _totals.update(totals)
    return bool(_found)


def summary(reporter: Any) -> None:
    kinds = Counter(_totals.get("kinds") or registry.secrets.values())
    fed = _totals.get("fed", registry.fed_chars)
    reporter.write_sep("-", "secrets scan")
    reporter.write_line(
        f"{sum(kinds.values())} secrets registered ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}); "
        f"{fed} characters of logs and output scanned; found: {len(_found)}"
    )
    for f in _found:
        reporter.write_line(f"LEAK: {f}", red=True)
