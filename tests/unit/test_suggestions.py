"""The pure ranking of suggestions (``domain/suggestions.py``): reasons, scores, order, the
free-mail and own-domain rules, name normalisation."""

from __future__ import annotations

import pytest

from mailsync.domain import suggestions as s
from mailsync.domain.records import Contact

pytestmark = pytest.mark.unit

OWNER = s.Owner.of(["alice@makler.test", "alice.private@gmail.com"])


def mail(*participants: tuple[str, str], mid: str = "m1", thread: str = "th1", linked=()) -> s.Mail:  # noqa: ANN001
    return s.Mail(mid, thread, tuple(s.Participant(e, n) for e, n in participants), frozenset(linked))


def contact(cid: str, name: str = "", emails: tuple[str, ...] = ()) -> Contact:
    return Contact(cid, "customer", name, emails, ("*",), "", "")


def test_free_mail_domains_come_from_the_data_file() -> None:
    free = s.free_mail_domains()
    for d in ("gmail.com", "googlemail.com", "gmx.de", "gmx.net", "gmx.at", "web.de", "t-online.de"):
        assert d in free
    for d in ("outlook.com", "hotmail.com", "live.com", "yahoo.com", "icloud.com", "me.com", "aol.com"):
        assert d in free
    for d in ("freenet.de", "posteo.de", "mailbox.org", "proton.me", "protonmail.com"):
        assert d in free
    assert all(d == d.strip().lower() and "#" not in d and " " not in d for d in free)
    assert s.is_free_mail("GMAIL.com") and s.is_free_mail("mail.gmx.net")
    assert (
        not s.is_free_mail("kunde.test") and not s.is_free_mail("com") and not s.is_free_mail("notgmail.com")
    )


def test_names_compare_without_case_accents_punctuation_or_word_order() -> None:
    key = s.normalise_name("Erika Muster")
    assert key == "erika muster"
    for same in ("MUSTER, Erika", "  erika   muster ", "Érika Mūster", '"Muster Erika"'):
        assert s.normalise_name(same) == key, same
    assert s.normalise_name("Jürgen Groß") == s.normalise_name("jurgen gross")
    assert s.normalise_name("Erika Musterfrau") != key
    for nothing in ("", None, "Al", " . ", "erika@muster.test"):
        assert s.normalise_name(nothing) is None, nothing


def test_a_contact_is_indexed_under_its_company_domains_and_its_name() -> None:
    c = contact("c", "Kunde GmbH", ("a@kunde.test", "b@Kunde.test", "c@gmail.com", "d@sub.kunde.test"))
    assert s.contact_index_keys(c) == (frozenset({"kunde.test", "sub.kunde.test"}), "gmbh kunde")
    assert s.contact_index_keys(contact("d", "", ("x@web.de",))) == (frozenset(), None)


def test_the_plan_leaves_out_the_owner_free_mail_and_the_owner_domain() -> None:
    m = mail(
        ("alice@makler.test", "Alice"),
        ("bob@makler.test", "Bob Kollege"),  # a colleague: the owner's company domain
        ("kunde@kunde.test", "Erika Muster"),
        ("privat@gmail.com", "Max Privat"),
        ("info@firma.test", ""),
    )
    p = s.plan(m, OWNER)
    assert p.domains == {"kunde.test", "firma.test"}
    assert p.names == {"erika muster", "max privat", "bob kollege"}  # names match whoever wrote
    assert p.co_addresses == ("kunde@kunde.test", "privat@gmail.com", "info@firma.test")
    # the owner's free-mail address is theirs, but gmail.com is no company of theirs
    assert OWNER.domains == {"makler.test"}


def test_each_reason_scores_and_the_order_is_by_score_then_id() -> None:
    m = mail(("kunde@kunde.test", "Erika Muster"), ("cc@partner.test", ""), mid="m1", thread="th1")
    ev = s.Evidence(
        domain_contacts={"kunde.test": {"dom-b", "dom-a", "all"}},
        name_contacts={"erika muster": {"name", "all"}},
        thread_links={"th1": {"thread": {"m0"}, "all": {"m0"}, "self": {"m1"}}},
        co_links={"cc@partner.test": {"co": {"x1", "x2", "x3"}, "all": {"x1"}, "self": {"m1"}}},
    )
    ranked = s.rank(m, s.plan(m, OWNER), ev)
    got = [(c.contact_id, c.score, c.reasons) for c in ranked]
    assert got == [
        ("all", 100, ("thread_linked", "name_match", "co_participant", "same_domain")),
        ("thread", 40, ("thread_linked",)),
        ("name", 30, ("name_match",)),
        ("co", 24, ("co_participant",)),  # 20 + 2 per further mail
        ("dom-a", 10, ("same_domain",)),
        ("dom-b", 10, ("same_domain",)),
    ]
    # the mail itself is no evidence ("self" only appears through m1): no candidate
    assert "self" not in {c.contact_id for c in ranked}


def test_co_participant_bonus_is_capped_and_counts_distinct_mails_across_addresses() -> None:
    m = mail(("a@x.test", ""), ("b@y.test", ""))
    ev = s.Evidence(
        co_links={
            "a@x.test": {"k": {f"a{i}" for i in range(20)}},
            "b@y.test": {"k": {"a0", "a1"}, "j": {"b0"}},
        }
    )
    ranked = {c.contact_id: c.score for c in s.rank(m, s.plan(m, OWNER), ev)}
    assert ranked == {"k": 20 + s.CO_BONUS_MAX, "j": 20}


def test_contacts_linked_already_are_not_suggested_and_candidates_are_capped() -> None:
    m = mail(("x@big.test", ""), linked=["c000"])
    many = {f"c{i:03d}" for i in range(300)}
    ranked = s.rank(m, s.plan(m, OWNER), s.Evidence(domain_contacts={"big.test": many}))
    assert len(ranked) == s.MAX_CANDIDATES
    assert ranked[0].contact_id == "c001"
    assert all(c.reasons == ("same_domain",) for c in ranked)


def test_free_mail_participants_never_give_same_domain() -> None:
    m = mail(("kunde@gmail.com", ""))
    ev = s.Evidence(domain_contacts={"gmail.com": {"someone"}})  # even if such an item existed
    assert s.rank(m, s.plan(m, OWNER), ev) == []


def test_mail_of_reads_from_to_cc_in_order_once_each() -> None:
    doc = {
        "mid": "m",
        "thread_id": "t",
        "from": [{"name": "Erika", "email": "Kunde@Kunde.test"}],
        "to": [{"name": "", "email": "alice@makler.test"}, {"name": "x", "email": "kunde@kunde.test"}],
        "cc": [{"name": "C", "email": "c@c.test"}],
        "links": {"k1": {"kind": "customer", "auto": [], "manual": True}},
    }
    m = s.mail_of(doc)
    assert [p.email for p in m.participants] == ["kunde@kunde.test", "alice@makler.test", "c@c.test"]
    assert m.participants[0].name == "Erika" and m.linked == {"k1"}


def test_a_suggestion_view_is_the_public_shape() -> None:
    c = s.Candidate("k1", 40, ("thread_linked",))
    view = s.suggestion(c, contact("k1", "Kunde AG")).view()
    assert view == {
        "contact_id": "k1",
        "kind": "customer",
        "name": "Kunde AG",
        "score": 40,
        "reasons": ["thread_linked"],
    }
