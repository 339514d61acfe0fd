"""Deterministic, realistic mail for the benchmark.

Every message is built from a seeded RNG, so a run with the same seed and size
produces the same bytes (dates are offsets from ``anchor``):

* sizes are log-uniform between 2 and 50 KB (most mail is small, some is large);
* about 10 % carry an attachment (base64, ``application/pdf`` or ``image/png``);
* about 40 % are ``multipart/alternative`` with an HTML part;
* conversations have real threading headers: each reply has ``In-Reply-To`` of its
  parent and ``References`` of the chain (RFC 5322 §3.6.4), and ``Re:`` subjects.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MIN_SIZE = 2 * 1024
MAX_SIZE = 50 * 1024
ATTACHMENT_SHARE = 0.10
HTML_SHARE = 0.40
OWNER = "me@bench.test"

_WORDS = (
    "account agenda approve budget call client contract customer deadline delivery demo "
    "draft estimate feedback follow forecast invoice launch meeting milestone note offer "
    "order partner payment plan pricing project proposal quarter quote renewal report "
    "request review roadmap sales schedule shipment signed status summary support team "
    "timeline update vendor workshop the a to of and for with on in at we you please "
    "thanks regards next week today tomorrow friday monday attached see below let know "
    "could would should can will have has been are is be this that it our your their"
).split()
_FIRST = "anna ben carla david eva felix greta hugo ines jonas karla leon mia noah olga paul".split()
_LAST = "schmidt meyer weber wagner becker hoffmann koch richter klein wolf neumann braun".split()
_DOMAINS = ("acme.example", "globex.example", "initech.example", "umbrella.example", "hooli.example")


@dataclass(frozen=True)
class Mail:
    raw: bytes
    date: datetime
    message_id: str
    seen: bool


class MailFactory:
    """Builds mail one at a time; conversations continue across calls."""

    def __init__(self, seed: int = 5, anchor: datetime | None = None, span_days: float = 25.0) -> None:
        self.rng = random.Random(seed)
        self.anchor = anchor or datetime(2026, 1, 1, tzinfo=UTC)
        self.span = timedelta(days=span_days)
        self.people = [
            (f"{f.title()} {la.title()}", f"{f}.{la}@{self.rng.choice(_DOMAINS)}")
            for f in _FIRST
            for la in _LAST[:4]
        ]
        self.open: list[tuple[str, list[str], tuple[str, str]]] = []  # subject, chain, counterpart
        self.seq = 0

    def _words(self, n: int) -> str:
        return " ".join(self.rng.choices(_WORDS, k=n))

    def _paragraphs(self, size: int) -> str:
        """Text lines of 8-14 words (blank line between paragraphs) up to ``size`` bytes."""
        words = self.rng.choices(_WORDS, k=size // 5 + 16)
        out: list[str] = []
        total = i = 0
        while total < size:
            n = 8 + (i * 7 + len(out)) % 7
            line = " ".join(words[i : i + n]).capitalize() + "."
            i = (i + n) % (len(words) - 14)
            out.append(line)
            total += len(line) + 2
            if len(out) % 5 == 0:
                out.append("")
        text = "\r\n".join(out)
        return text[:size].rstrip("\r")  # a cut CRLF would leave a bare CR (RFC 5322 §2.3 forbids it)

    def make(self, date: datetime) -> Mail:
        rng = self.rng
        self.seq += 1
        # Continue a conversation (55 %) or start one.
        if self.open and rng.random() < 0.55:
            i = rng.randrange(len(self.open))
            subject, chain, other = self.open[i]
            in_reply_to = chain[-1]
            references = chain[-10:]
            subject_line = "Re: " + subject
        else:
            subject = self._words(rng.randint(3, 7)).capitalize()
            other = rng.choice(self.people)
            chain, in_reply_to, references, i = [], None, [], -1
            subject_line = subject
        mid = f"{self.seq:06d}.{rng.getrandbits(48):012x}@bench.test"
        chain = [*chain, mid]
        if i >= 0:
            self.open[i] = (subject, chain, other)
            if len(chain) >= rng.randint(3, 12):
                self.open.pop(i)
        else:
            self.open.append((subject, chain, other))
            if len(self.open) > 200:
                self.open.pop(0)
        incoming = rng.random() < 0.7
        frm = f'"{other[0]}" <{other[1]}>' if incoming else f"Me <{OWNER}>"
        to = f"Me <{OWNER}>" if incoming else f'"{other[0]}" <{other[1]}>'
        cc = ""
        if rng.random() < 0.3:
            extra = rng.sample(self.people, rng.randint(1, 3))
            cc = ", ".join(f'"{n}" <{e}>' for n, e in extra)

        target = int(MIN_SIZE * (MAX_SIZE / MIN_SIZE) ** rng.random())
        headers = [
            f"Received: from mx{rng.randint(1, 9)}.{rng.choice(_DOMAINS)} (mx.bench.test [192.0.2.{rng.randint(1, 254)}])",
            f"\tby imap.bench.test with ESMTPS id {rng.getrandbits(40):010x}; {_rfc2822(date)}",
            f"Date: {_rfc2822(date)}",
            f"From: {frm}",
            f"To: {to}",
            *([f"Cc: {cc}"] if cc else []),
            f"Subject: {subject_line}",
            f"Message-ID: <{mid}>",
            *([f"In-Reply-To: <{in_reply_to}>"] if in_reply_to else []),
            *([f"References: {' '.join(f'<{r}>' for r in references)}"] if references else []),
            "MIME-Version: 1.0",
            "X-Mailer: bench-mailgen 1.0",
        ]
        head_len = sum(len(h) + 2 for h in headers)
        room = max(400, target - head_len)
        boundary = f"=_b{rng.getrandbits(64):016x}"
        if rng.random() < ATTACHMENT_SHARE:
            att_bytes = max(256, int(room * 0.7 * 3 / 4))  # base64 grows by 4/3
            text = self._paragraphs(max(200, room - att_bytes * 4 // 3 - 420))
            name, ctype = rng.choice((("report.pdf", "application/pdf"), ("photo.png", "image/png")))
            data = rng.randbytes(att_bytes)
            b64 = base64.encodebytes(data).decode().replace("\n", "\r\n")
            headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
            body = (
                f"This is a multi-part message in MIME format.\r\n\r\n--{boundary}\r\n"
                'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
                f"{text}\r\n\r\n--{boundary}\r\n"
                f'Content-Type: {ctype}; name="{name}"\r\nContent-Transfer-Encoding: base64\r\n'
                f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'
                f"{b64}\r\n--{boundary}--\r\n"
            )
        elif rng.random() < HTML_SHARE:
            text = self._paragraphs((room - 400) * 5 // 11)
            html_paras = "".join(f"<p>{p}</p>" for p in text.split("\r\n") if p)
            html = f'<html><head><meta charset="utf-8"></head><body><div style="font-family:Arial">{html_paras}</div></body></html>'
            headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
            body = (
                f"--{boundary}\r\n"
                'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
                f"{text}\r\n\r\n--{boundary}\r\n"
                'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
                f"{html}\r\n\r\n--{boundary}--\r\n"
            )
        else:
            headers.append('Content-Type: text/plain; charset="utf-8"')
            headers.append("Content-Transfer-Encoding: 8bit")
            body = self._paragraphs(room - 2) + "\r\n"
        raw = ("\r\n".join(headers) + "\r\n\r\n" + body).encode()
        return Mail(raw=raw, date=date, message_id=mid, seen=rng.random() < 0.7)

    def batch(self, n: int) -> list[Mail]:
        """``n`` mails spread evenly over ``span_days`` after the anchor, oldest first."""
        step = self.span / max(n, 1)
        start = self.anchor
        return [self.make(start + step * i) for i in range(n)]


def _rfc2822(dt: datetime) -> str:
    from email.utils import format_datetime

    return format_datetime(dt)


def generate(n: int, seed: int = 5, anchor: datetime | None = None, span_days: float = 25.0) -> list[Mail]:
    return MailFactory(seed, anchor, span_days).batch(n)
