"""Hostile MIME: every mail is read with best-effort text or quarantined with a reason,
within bounded time and memory (figures printed). MAILSYNC_FUZZ_EXAMPLES raises the
number of mutations per corpus mail (``make fuzz``)."""

from __future__ import annotations

import os
import random
import sysconfig
import time
import tracemalloc
from pathlib import Path

import pytest

from mailsync.domain import mimelimits
from mailsync.domain.mime import parse_message
from mailsync.domain.scan import scan_message

pytestmark = pytest.mark.unit

CORPUS = Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"
MUTATIONS = int(os.environ.get("MAILSYNC_FUZZ_EXAMPLES", "3"))
PEAK_BYTES = 64 * 1024 * 1024  # generous: a 1 MB mail must not cost more than this
SECONDS = 10.0  # generous, per mail, on a loaded 2-core machine


def deep(levels: int) -> bytes:
    head = b'From: a@example.com\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    opens = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i - 1, i)
        for i in range(1, levels)
    )
    core = b"--b%d\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b%d--\r\n" % (levels - 1, levels - 1)
    return head + opens + core + b"".join(b"--b%d--\r\n" % i for i in reversed(range(levels - 1)))


def many(parts: int) -> bytes:
    head = b'From: a@example.com\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
    body = b"--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n" + b"".join(
        b'--B\r\nContent-Disposition: attachment; filename="f%d.bin"\r\n\r\nxx\r\n' % i for i in range(parts)
    )
    return head + body + b"--B--\r\n"


HOSTILE = {
    "deep-1000": (deep(1000), "too_deep"),
    "parts-10000": (many(10000), "too_many_parts"),
    "subject-1MB": (
        b"From: a@example.com\r\nSubject: " + b"A" * 1_000_000 + b"\r\n\r\nbody\r\n",
        "header_too_long",
    ),
    "to-1MB": (
        b"From: a@example.com\r\nTo: " + b"x@example.org, " * 70_000 + b"\r\n\r\nb\r\n",
        "header_too_long",
    ),
    "nul-bytes": (b"From: a\x00@example.com\r\nSubject: n\x00ul\r\n\r\nbo\x00dy\r\n", None),
    "broken-base64": (
        b"Subject: b\r\nContent-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29y!!!bGQ=\r\n===\r\n",
        None,
    ),
    "bad-charset": (
        b"Subject: =?x-nope?q?caf=E9?=\r\nContent-Type: text/plain; charset=x-nope\r\n\r\ncaf\xe9\r\n",
        None,
    ),
    "8bit-headers": (b"From: J\xfcrgen <j@example.de>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nhi\r\n", None),
    "missing-boundary": (b'Content-Type: multipart/mixed; boundary="X"\r\n\r\nno delimiter at all\r\n', None),
    "deep-20": (deep(20), None),
}


def measure(raw: bytes) -> tuple[object, float, int]:
    tracemalloc.start()
    t = time.perf_counter()
    try:
        scanned = scan_message(raw)
        full = parse_message(raw)
    finally:
        elapsed = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert scanned.quarantine_reason == full.quarantine_reason
    return full, elapsed, peak


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_mail_is_read_or_quarantined_within_bounds(name: str) -> None:
    raw, reason = HOSTILE[name]
    parsed, elapsed, peak = measure(raw)
    print(f"{name}: {len(raw)} bytes, {elapsed:.2f} s, peak {peak / 1e6:.1f} MB, {parsed.quarantine_reason}")
    assert parsed.quarantine_reason == reason
    assert parsed.size == len(raw)
    assert elapsed < SECONDS and peak < PEAK_BYTES
    if reason is None:
        assert parsed.text is not None  # best-effort text
    else:
        assert parsed.text is None and parsed.attachments == [] and parsed.body_parts == []
    assert len(parsed.subject) <= mimelimits.MAX_SUBJECT_CHARS
    assert all(len(getattr(parsed, f)) <= mimelimits.MAX_ADDRESSES for f in ("from_", "to", "cc", "bcc"))


def test_quarantined_mail_keeps_its_header_fields() -> None:
    parsed = parse_message(deep(1000).replace(b"Subject: deep", b"Subject: deep\r\nMessage-ID: <d@x>"))
    assert parsed.quarantine_reason == "too_deep"
    assert parsed.subject == "deep" and parsed.message_id == "d@x"
    assert [a.email for a in parsed.from_] == ["a@example.com"]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="CPython's test_email corpus is not installed")
def test_cpython_corpus_and_its_mutations_never_break_the_reader() -> None:
    rng = random.Random(14)
    tried = quarantined = 0
    worst_time = worst_peak = 0.0
    for path in sorted(CORPUS.glob("msg_*.txt")):
        base = path.read_bytes()
        variants = [base]
        for _ in range(MUTATIONS):
            i = rng.randrange(len(base) + 1)
            variants.append(base[:i])  # truncated
            variants.append(
                base[:i] + bytes(rng.randrange(256) for _ in range(8)) + base[i:]
            )  # spliced bytes
            variants.append(base.replace(b"boundary=", b"boundary=x", 1))  # boundary now missing
        for raw in variants:
            parsed, elapsed, peak = measure(raw)
            tried += 1
            quarantined += parsed.quarantine_reason is not None
            worst_time, worst_peak = max(worst_time, elapsed), max(worst_peak, peak)
            assert parsed.size == len(raw)
            assert parsed.quarantine_reason is not None or parsed.html is None or "<script" not in parsed.html
    print(
        f"corpus: {tried} mails, {quarantined} quarantined, worst {worst_time:.3f} s, peak {worst_peak / 1e6:.1f} MB"
    )
    assert tried > 60 and worst_time < SECONDS and worst_peak < PEAK_BYTES
