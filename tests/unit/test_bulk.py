"""bulk_reason / is_bulk on a corpus of real-world header blocks, and on garbage.

Each header block is parsed as production parses it (``BytesParser`` with the default
policy, then :func:`header_map` over ``raw_items()``), so values arrive raw: folded,
with encoded words. The sender is the From address as :func:`parse_addresses` reads it.
Addresses and ids are anonymised; the field layout is what the named sender writes, and
every assertion depends only on the fields written out here. Blocks marked
"constructed" isolate one rule and do not claim to copy a particular sender.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from email import policy
from email.parser import BytesParser

import pytest

from mailsync.domain.bulk import bulk_reason, is_bulk
from mailsync.domain.mime import header_map
from mailsync.domain.mimeheaders import parse_addresses

pytestmark = pytest.mark.unit


def mail(block: str) -> tuple[dict[str, list[str]], str | None]:
    """(header_map, From e-mail) of a header block written with one field per line."""
    raw = block.strip("\n").replace("\n", "\r\n").encode("utf-8") + b"\r\n\r\n"
    msg = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    headers = header_map(msg.raw_items())
    senders = parse_addresses(headers.get("from", []))
    return headers, senders[0].email if senders else None


NEWSLETTER = """
Return-Path: <bounce-mc.us5_4711.815-broker=agency.example@mail93.atl11.rsgsv.net>
From: Immo Weekly <news@immo-weekly.example>
To: broker@agency.example
Subject: =?utf-8?Q?Die_Zinsen_sinken_=E2=80=93_Ihr_Wochenr=C3=BCckblick?=
Date: Tue, 05 Mar 2024 08:00:12 +0000
Message-ID: <a1b2c3d4e5f6.0.4711@mail93.atl11.rsgsv.net>
List-Unsubscribe: <https://immo-weekly.us5.list-manage.com/unsubscribe?u=abc&id=def&e=123>,
 <mailto:unsubscribe-mc.us5_abc.def-123@unsubscribe.mailchimpapp.net?subject=unsubscribe>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
List-Id: abc123def456 mc list <abc123def456.4711.list-id.mcsv.net>
X-Mailer: MailChimp Mailer - **CIDa1b2c3d4e5f6**
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="_----------=_MCPart_1234567890"
"""

# The daily agenda published as a spam sample at mainsleaze.spambouncer.org (Jan 2012).
GOOGLE_CALENDAR_AGENDA = """
MIME-Version: 1.0
Reply-To: Broker <broker@agency.example>
Auto-Submitted: auto-generated
Message-ID: <0016e6d7e1a2b3c4d5e6f7@google.com>
Date: Sun, 22 Jan 2012 06:00:00 +0000
Subject: You have no events scheduled today.
From: Google Calendar <calendar-notification@google.com>
To: broker@agency.example
Content-Type: multipart/alternative; boundary=0016e6d7e1a2b3c4d5e6f8
"""

OUT_OF_OFFICE = """
From: Petra Lang <p.lang@hausverwaltung.example>
To: broker@agency.example
Subject: Abwesenheitsnotiz: Re: =?utf-8?Q?Expos=C3=A9?= Musterstrasse 12
Date: Wed, 06 Mar 2024 10:02:03 +0100
Message-ID: <vacation.1709715723.4711@hausverwaltung.example>
In-Reply-To: <CAF=abc123@agency.example>
Auto-Submitted: auto-replied
X-Autoreply: yes
Content-Type: text/plain; charset=utf-8
"""

# The mail from Outlook that Exchange answered below: it asks not to be auto-replied to.
EXCHANGE_ORIGINAL = """
From: Broker <broker@agency.example>
To: Jana Schmidt <j.schmidt@bank.example>
Subject: Finanzierung Objekt 4711
Thread-Topic: Finanzierung Objekt 4711
Thread-Index: AdpvB3KxYzq1m8kZTbKc5x0Vb2rWxA==
Date: Thu, 07 Mar 2024 09:15:00 +0000
Message-ID: <AM0PR01MB1234ABCD@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>
Accept-Language: de-DE, en-US
Content-Language: de-DE
X-MS-Has-Attach:
X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="_000_AM0PR01MB1234_"
"""

# Whether Exchange writes auto-replied or auto-generated here, any keyword but "no" is bulk.
EXCHANGE_AUTO_REPLY = """
From: Jana Schmidt <j.schmidt@bank.example>
To: Broker <broker@agency.example>
Subject: Automatische Antwort: Finanzierung Objekt 4711
Thread-Topic: Finanzierung Objekt 4711
Thread-Index: AdpvB3KxYzq1m8kZTbKc5x0Vb2rWxAAAAbcd
Date: Thu, 07 Mar 2024 09:15:02 +0000
Message-ID: <AM0PR02MB5678EFGH@AM0PR02MB5678.eurprd02.prod.exchangelabs.com>
In-Reply-To: <AM0PR01MB1234ABCD@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>
Auto-Submitted: auto-replied
X-MS-Exchange-Inbox-Rules-Loop: j.schmidt@bank.example
X-MS-Has-Attach:
X-Auto-Response-Suppress: All
MIME-Version: 1.0
Content-Type: text/plain; charset="iso-8859-1"
"""

# The header bounce_header() in Postfix's bounce_notify_util.c writes (cleanup qualifies the
# sender); that version adds no Auto-Submitted, so the report type is what tells it.
POSTFIX_BOUNCE = """
Return-Path: <>
Date: Tue,  5 Mar 2024 09:12:44 +0100 (CET)
From: MAILER-DAEMON@mx.agency.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: broker@agency.example
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F1A2B3C4D.1709626364/mx.agency.example"
Message-Id: <20240305081244.5E6F7A8B9C@mx.agency.example>
"""

GMAIL_BOUNCE = """
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: broker@agency.example
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: <CAF=abc123@agency.example>
In-Reply-To: <CAF=abc123@agency.example>
X-Failed-Recipients: old.tenant@gone.example
Message-ID: <65e6d5a1.050a0220.ab12c.0000.GMR@mx.google.com>
Date: Tue, 05 Mar 2024 01:02:03 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000a1b2c3d4e5f6a7b8"; report-type=delivery-status
"""

# Constructed: a DSN from an address that is no daemon's, parameter quoted and capitalised.
RELAY_BOUNCE = """
From: Mail Relay <mailsystem@relay.example>
To: broker@agency.example
Subject: Returned mail: see transcript for details
MIME-Version: 1.0
Content-Type: Multipart/Report; report-type="Delivery-Status";
 boundary="relay-4711"
"""

MAILMAN = """
From: Erika Muster <erika@muster.example>
To: makler-forum@lists.verband.example
Subject: [Makler-Forum] Neue Widerrufsbelehrung
Message-ID: <5f0e1d2c@muster.example>
X-BeenThere: makler-forum@lists.verband.example
X-Mailman-Version: 2.1.39
Precedence: list
List-Id: Forum der Makler <makler-forum.lists.verband.example>
List-Unsubscribe: <https://lists.verband.example/mailman/options/makler-forum>,
 <mailto:makler-forum-request@lists.verband.example?subject=unsubscribe>
List-Archive: <https://lists.verband.example/pipermail/makler-forum/>
List-Post: <mailto:makler-forum@lists.verband.example>
List-Help: <mailto:makler-forum-request@lists.verband.example?subject=help>
List-Subscribe: <https://lists.verband.example/mailman/listinfo/makler-forum>,
 <mailto:makler-forum-request@lists.verband.example?subject=subscribe>
Errors-To: makler-forum-bounces@lists.verband.example
Sender: "Makler-Forum" <makler-forum-bounces@lists.verband.example>
"""

# The same list with Mailman's include_rfc2369_headers switched off: List-Id stays.
MAILMAN_WITHOUT_RFC2369 = """
From: Erika Muster <erika@muster.example>
To: makler-forum@lists.verband.example
Subject: [Makler-Forum] Neue Widerrufsbelehrung
X-BeenThere: makler-forum@lists.verband.example
X-Mailman-Version: 2.1.39
Precedence: list
List-Id: Forum der Makler <makler-forum.lists.verband.example>
Sender: "Makler-Forum" <makler-forum-bounces@lists.verband.example>
"""

GITHUB = """
From: Jane Doe <notifications@github.com>
Reply-To: acme/crm-sync <reply+ABCDEF0123456789@reply.github.com>
To: acme/crm-sync <crm-sync@noreply.github.com>
Cc: Broker <broker@agency.example>, Mention <mention@noreply.github.com>
Subject: Re: [acme/crm-sync] Sync stalls on large mailboxes (Issue #42)
Message-ID: <acme/crm-sync/issues/42/2011223344@github.com>
In-Reply-To: <acme/crm-sync/issues/42@github.com>
References: <acme/crm-sync/issues/42@github.com>
List-ID: acme/crm-sync <crm-sync.acme.github.com>
List-Archive: https://github.com/acme/crm-sync
List-Post: <mailto:reply+ABCDEF0123456789@reply.github.com>
List-Unsubscribe: <mailto:unsub+ABCDEF0123456789@reply.github.com>,
 <https://github.com/notifications/unsubscribe/ABCDEF0123456789>
X-GitHub-Sender: janedoe
X-GitHub-Recipient: broker
X-GitHub-Reason: mention
X-Auto-Response-Suppress: All
Precedence: list
"""

# Constructed, one rule each.
PRECEDENCE_BULK = """
From: Hausverwaltung <info@hausverwaltung.example>
Subject: Rundschreiben Heizkostenabrechnung
Precedence: bulk (Rundschreiben an alle Eigentuemer)
"""

PRECEDENCE_FOLDED = """
From: Hausverwaltung <info@hausverwaltung.example>
Subject: Rundschreiben
Precedence:
 Junk
"""

AUTORESPONDER_X_AUTOREPLY = """
From: Info <info@bautraeger.example>
Subject: Ihre Anfrage ist eingegangen
X-Autoreply: yes
"""

AUTORESPONDER_X_AUTORESPOND = """
From: Info <info@bautraeger.example>
Subject: Ihre Anfrage ist eingegangen
X-Autorespond: Ihre Anfrage ist eingegangen
"""

SIEVE_NOTIFICATION = """
From: Mail Notify <notify@agency.example>
Subject: New mail from a client
Auto-Submitted: auto-notified; owner-email="broker@agency.example"
"""

AUTO_SUBMITTED_ENCODED = """
From: Portal <portal@immoportal.example>
Subject: Neue Anfrage zu Ihrem Inserat
Auto-Submitted: =?us-ascii?q?Auto-Generated?= (portal)
"""

SHOP_NOREPLY = """
From: Shop <noreply@shop.example>
To: broker@agency.example
Subject: Ihre Bestellung 4711 wurde versandt
Message-ID: <order-4711-shipped@shop.example>
Content-Type: text/html; charset=utf-8
"""

BULK = {
    "newsletter": (NEWSLETTER, "list_unsubscribe"),
    "google_calendar_agenda": (GOOGLE_CALENDAR_AGENDA, "auto_submitted"),
    "out_of_office": (OUT_OF_OFFICE, "auto_submitted"),
    "exchange_auto_reply": (EXCHANGE_AUTO_REPLY, "auto_submitted"),
    "postfix_bounce": (POSTFIX_BOUNCE, "delivery_report"),
    "gmail_bounce": (GMAIL_BOUNCE, "auto_submitted"),
    "relay_bounce": (RELAY_BOUNCE, "delivery_report"),
    "mailman": (MAILMAN, "list_unsubscribe"),
    "mailman_without_rfc2369": (MAILMAN_WITHOUT_RFC2369, "list_id"),
    "github": (GITHUB, "list_unsubscribe"),
    "precedence_bulk": (PRECEDENCE_BULK, "precedence"),
    "precedence_folded": (PRECEDENCE_FOLDED, "precedence"),
    "x_autoreply": (AUTORESPONDER_X_AUTOREPLY, "auto_reply"),
    "x_autorespond": (AUTORESPONDER_X_AUTORESPOND, "auto_reply"),
    "sieve_notification": (SIEVE_NOTIFICATION, "auto_submitted"),
    "auto_submitted_encoded": (AUTO_SUBMITTED_ENCODED, "auto_submitted"),
    "shop_noreply": (SHOP_NOREPLY, "noreply_sender"),
}

BROKER_MAIL = """
From: Max Mustermann <m.mustermann@immobilien-mustermann.example>
To: Broker <broker@agency.example>
Subject: Besichtigung Musterstrasse 12
Thread-Topic: Besichtigung Musterstrasse 12
Thread-Index: AdpvC4LyZ0r2n9lAUcLd6y1Wc3sXyB==
Date: Fri, 08 Mar 2024 14:30:00 +0100
Message-ID: <DB9PR03MB4711@DB9PR03MB4711.eurprd03.prod.outlook.com>
Accept-Language: de-DE
Content-Language: de-DE
X-MS-Has-Attach: yes
X-Mailer: Microsoft Outlook 16.0
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="_004_DB9PR03MB4711_"
"""

# RFC 3834 §5: "no" is the same as no Auto-Submitted at all; a comment does not change it.
REPLY_AUTO_SUBMITTED_NO = """
From: Petra Lang <p.lang@hausverwaltung.example>
To: broker@agency.example
Subject: Re: Abwesenheitsnotiz: Re: Expose Musterstrasse 12
In-Reply-To: <vacation.1709715723.4711@hausverwaltung.example>
Auto-Submitted: No (written by hand)
"""

OUTLOOK_SUPPRESS_ALL = """
From: Jana Schmidt <j.schmidt@bank.example>
To: Broker <broker@agency.example>
Subject: Re: Finanzierung Objekt 4711
Thread-Topic: Finanzierung Objekt 4711
Message-ID: <AM0PR02MB9999@AM0PR02MB9999.eurprd02.prod.exchangelabs.com>
X-Auto-Response-Suppress: All
X-MS-Has-Attach:
Content-Type: text/plain; charset="utf-8"
"""

FROM_NORBERT = """
From: Norbert Klein <norbert@klein-immobilien.example>
To: broker@agency.example
Subject: Termin morgen
"""

FROM_REPLY = """
From: Kundenservice <reply@versicherung.example>
To: broker@agency.example
Subject: Ihre Police 4711
"""

SUBJECT_UNSUBSCRIBE = """
From: Max Mustermann <m.mustermann@immobilien-mustermann.example>
To: broker@agency.example
Subject: Re: How do I unsubscribe from your newsletter? / =?utf-8?Q?Abmelden?= bitte
Content-Type: text/plain; charset=utf-8
"""

# Constructed: an invitation a person sends with Google Calendar, as far as written here
# (Sender and a text/calendar part, no Auto-Submitted); neither is a rule.
CALENDAR_INVITATION = """
From: Max Mustermann <m.mustermann@immobilien-mustermann.example>
Sender: Google Calendar <calendar-notification@google.com>
To: broker@agency.example
Subject: Einladung: Besichtigung @ Fr. 8. Maerz 2024 14:30 - 15:00 (MEZ)
Reply-To: Max Mustermann <m.mustermann@immobilien-mustermann.example>
Content-Type: multipart/mixed; boundary="000000000000f1e2d3c4b5a6"
"""

# Constructed: report-type belongs to multipart/report only; a read receipt is no bounce.
NOT_A_DELIVERY_REPORT = """
From: Max Mustermann <m.mustermann@immobilien-mustermann.example>
Subject: Gelesen: Besichtigung Musterstrasse 12
Content-Type: multipart/report; report-type=disposition-notification; boundary="mdn"
"""

ORDINARY = {
    "broker_mail": BROKER_MAIL,
    "reply_auto_submitted_no": REPLY_AUTO_SUBMITTED_NO,
    "exchange_original": EXCHANGE_ORIGINAL,
    "outlook_suppress_all": OUTLOOK_SUPPRESS_ALL,
    "from_norbert": FROM_NORBERT,
    "from_reply": FROM_REPLY,
    "subject_unsubscribe": SUBJECT_UNSUBSCRIBE,
    "calendar_invitation": CALENDAR_INVITATION,
    "not_a_delivery_report": NOT_A_DELIVERY_REPORT,
}


@pytest.mark.parametrize(("block", "reason"), BULK.values(), ids=BULK.keys())
def test_bulk_mail_is_flagged_with_the_first_rule_it_meets(block: str, reason: str) -> None:
    headers, sender = mail(block)
    assert bulk_reason(headers, sender) == reason
    assert is_bulk(headers, sender) is True


@pytest.mark.parametrize("block", ORDINARY.values(), ids=ORDINARY.keys())
def test_ordinary_mail_is_not_flagged(block: str) -> None:
    headers, sender = mail(block)
    assert bulk_reason(headers, sender) is None
    assert is_bulk(headers, sender) is False


def test_the_corpus_is_read_as_production_reads_it() -> None:
    """The blocks really reach the functions folded and with their senders."""
    headers, sender = mail(POSTFIX_BOUNCE)
    assert sender == "MAILER-DAEMON@mx.agency.example"
    assert "\n" in headers["content-type"][0]
    assert mail(GOOGLE_CALENDAR_AGENDA)[1] == "calendar-notification@google.com"
    assert mail(FROM_NORBERT)[1] == "norbert@klein-immobilien.example"


@pytest.mark.parametrize(
    "sender",
    [
        "noreply@shop.example",
        "NoReply@shop.example",
        "no-reply@accounts.example",
        "no_reply@bank.example",
        "DoNotReply@portal.example",
        "do-not-reply@portal.example",
        "do_not_reply@portal.example",
        "MAILER-DAEMON@mx.agency.example",
        "postmaster@agency.example",
        "noreply+abc@x.example",
        "no-reply+order-4711@shop.example",
        "Shop <noreply@shop.example>",
        '"noreply"@shop.example',
        " mailer-daemon ",
    ],
)
def test_noreply_senders(sender: str) -> None:
    assert bulk_reason({"subject": ["Ihre Bestellung"]}, sender) == "noreply_sender"


@pytest.mark.parametrize(
    "sender",
    [
        "reply@x.example",
        "norbert@x.example",
        "noreply.team@x.example",
        "noreplyer@x.example",
        "no-reply-support@x.example",
        "postmasters@x.example",
        "info@noreply.example",
        "tag+noreply@x.example",
        "",
        None,
    ],
)
def test_senders_that_only_look_like_noreply(sender: str | None) -> None:
    assert bulk_reason({"subject": ["Termin"]}, sender) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"precedence": ["BULK"]}, "precedence"),
        ({"precedence": ["list;"]}, "precedence"),
        ({"precedence": ["(mailing) junk"]}, "precedence"),
        ({"precedence": ["normal", "bulk"]}, "precedence"),
        ({"precedence": ["first-class"]}, None),
        ({"precedence": ["bulkish"]}, None),
        ({"precedence": ["(bulk)"]}, None),
        ({"auto-submitted": ["auto-generated"]}, "auto_submitted"),
        ({"auto-submitted": ["x-custom-keyword"]}, "auto_submitted"),
        ({"precedence": ["(not \\) junk) bulk"]}, "precedence"),  # a quoted-pair in a comment
        ({"auto-submitted": ["no"]}, None),
        ({"auto-submitted": ["NO; reason=human"]}, None),
        ({"auto-submitted": ["no (auto-generated)"]}, None),
        ({"auto-submitted": ["", "  "]}, None),
        ({"auto-submitted": ["(only a comment)"]}, None),
        ({"x-autoreply": [""]}, None),
        ({"x-autoreply": ["yes"]}, "auto_reply"),
        ({"x-auto-response-suppress": ["All"]}, None),
        ({"x-auto-response-suppress": ["DR, RN, NRN, OOF, AutoReply"]}, None),
        ({"list-unsubscribe": ["   "]}, None),
        ({"list-id": [""], "list-unsubscribe": []}, None),
        ({"list-id": ["<team.lists.example>"]}, "list_id"),
        ({"List-Id": ["<team.lists.example>"]}, None),  # names are looked up lower-cased
        ({"content-type": ["multipart/mixed; report-type=delivery-status"]}, None),
        ({"content-type": ["multipart/report"]}, None),
        ({"content-type": ["multipart/report (bounce); report-type=delivery-status"]}, "delivery_report"),
        (
            {"content-type": ['multipart/report; boundary="a;b(c"; report-type=delivery-status']},
            "delivery_report",
        ),
        ({"content-type": ["text/plain", "multipart/report; report-type=delivery-status"]}, None),
        ({"content-type": ['multipart/report;\r\n report-type="delivery-status"']}, "delivery_report"),
    ],
)
def test_rule_edges(headers: dict[str, list[str]], reason: str | None) -> None:
    assert bulk_reason(headers, "person@agency.example") == reason


def test_rules_are_checked_in_their_documented_order() -> None:
    headers: dict[str, list[str]] = {
        "content-type": ["multipart/report; report-type=delivery-status"],
        "x-autoreply": ["yes"],
        "auto-submitted": ["auto-replied"],
        "precedence": ["bulk"],
        "list-id": ["<l.example>"],
        "list-unsubscribe": ["<mailto:u@l.example>"],
    }
    order = ["list_unsubscribe", "list_id", "precedence", "auto_submitted", "auto_reply", "delivery_report"]
    for name, reason in zip(list(headers)[::-1], order, strict=True):
        assert bulk_reason(headers, "noreply@l.example") == reason
        del headers[name]
    assert bulk_reason(headers, "noreply@l.example") == "noreply_sender"
    assert bulk_reason(headers, "person@l.example") is None


class Exploding(Mapping[str, list[str]]):
    def __getitem__(self, key: str) -> list[str]:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        raise RuntimeError("boom")


HUGE = 2_000_000

GARBAGE_HEADERS: list[object] = [
    None,
    42,
    "list-id",
    b"List-Id: x",
    [("list-id", "x")],
    {},
    {1: 2, None: None},
    Exploding(),
    {"list-id": None, "precedence": 42},
    {"precedence": [None, 1, 2.5, object(), b"\xff\xfe", ["bulk"]]},
    {"auto-submitted": [10**5000]},
    {"auto-submitted": ["(" * HUGE]},
    {"auto-submitted": ["\\" * HUGE]},
    {"precedence": [")" * HUGE + "bulk"]},
    {"content-type": ["multipart/report; report-type=" + "x" * HUGE]},
    {"content-type": ["multipart/report; " + "a=b; " * (HUGE // 5)]},
    {"content-type": ['multipart/report; boundary="' + '"' * HUGE]},
    {"content-type": ["\x00\udcff\r\n\r\n\t;;;==="]},
    {"list-unsubscribe": ["=?utf-8?b?" + "A" * HUGE + "?="]},
    {"list-id": ["=?bogus-charset?q?=ZZ?="] * 10_000},
    {"x-autoreply": {"yes"}},
    {"x-autorespond": 3.14},
]

GARBAGE_SENDERS: list[object] = [
    None,
    "",
    42,
    b"noreply@x.example",
    "@",
    "<",
    ">><<",
    "a" * HUGE,
    "\udcff@x",
    "+@x",
]


@pytest.mark.parametrize("headers", GARBAGE_HEADERS, ids=lambda h: type(h).__name__)
@pytest.mark.parametrize("sender", GARBAGE_SENDERS, ids=lambda s: type(s).__name__)
def test_garbage_never_raises(headers: object, sender: object) -> None:
    started = time.perf_counter()
    reason = bulk_reason(headers, sender)  # type: ignore[arg-type]
    assert reason is None or isinstance(reason, str)
    assert is_bulk(headers, sender) is (reason is not None)  # type: ignore[arg-type]
    assert time.perf_counter() - started < 5.0  # generous: huge values are cut, not scanned


def test_garbage_in_one_field_does_not_hide_another_rule() -> None:
    headers = {"list-id": 42, "list-unsubscribe": [object()], "precedence": "bulk"}
    assert bulk_reason(headers, None) == "precedence"  # type: ignore[arg-type]
    assert bulk_reason(Exploding(), "noreply@x.example") == "noreply_sender"
