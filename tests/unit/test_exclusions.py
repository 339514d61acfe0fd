"""The exclusion rules (``domain.exclusions``): normalisation, validation and matching."""

from __future__ import annotations

import pytest

from mailsync.domain.exclusions import MAX_ENTRIES, ExcludeRules, InvalidRule

pytestmark = pytest.mark.unit


def test_entries_are_normalised_deduplicated_and_sorted() -> None:
    r = ExcludeRules.parse(
        [" Dr.Mueller@Praxis.DE ", "dr.mueller@praxis.de"], ["Kanzlei.example.", "müller.de"]
    )
    assert r.addresses == ("dr.mueller@praxis.de",)
    assert r.domains == ("kanzlei.example", "xn--mller-kva.de")
    assert ExcludeRules.from_dict(r.as_dict()) == r


@pytest.mark.parametrize(
    ("participant", "hit"),
    [
        ("dr.mueller@praxis.de", True),
        ("anwalt@kanzlei.example", True),
        ("anwalt@mail.kanzlei.example", True),  # a subdomain
        ("info@badkanzlei.example", False),  # not a subdomain
        ("kanzlei.example@other.example", False),  # the domain as a local part
        ("mueller@praxis.de", False),
        ("dr.mueller@praxis.de.evil.example", False),
    ],
)
def test_an_address_matches_exactly_and_a_domain_with_its_subdomains(participant: str, hit: bool) -> None:
    r = ExcludeRules.parse(["dr.mueller@praxis.de"], ["kanzlei.example"])
    assert r.matches(["kunde@versicherer.example", participant]) is hit


def test_no_rules_match_nothing_and_have_no_digest() -> None:
    assert not ExcludeRules().matches(["a@b.example"])
    assert ExcludeRules().digest() is None
    a, b = ExcludeRules.parse(["a@b.example"]), ExcludeRules.parse([], ["b.example"])
    assert a.digest() and b.digest() and a.digest() != b.digest()
    assert ExcludeRules.parse(["A@b.example"]).digest() == a.digest()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "kein-at",
        "@example.com",
        "a@",
        "a..b@example.com",
        ".a@example.com",
        "a@localhost",
        "a b@example.com",
    ],
)
def test_bad_addresses_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRule) as e:
        ExcludeRules.parse([bad])
    assert e.value.code == "invalid_address"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "localhost",
        "exa mple.com",
        "-bad.example",
        "bad-.example",
        "a..example",
        "1.2.3.4",
        "x" * 64 + ".example",
    ],
)
def test_bad_domains_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRule) as e:
        ExcludeRules.parse([], [bad])
    assert e.value.code == "invalid_domain"


def test_at_most_500_entries_in_all() -> None:
    half = MAX_ENTRIES // 2
    ok = ExcludeRules.parse(
        [f"u{i}@example.com" for i in range(half)], [f"d{i}.example" for i in range(half)]
    )
    assert len(ok.addresses) + len(ok.domains) == MAX_ENTRIES
    with pytest.raises(InvalidRule) as e:
        ExcludeRules.parse(
            [f"u{i}@example.com" for i in range(half + 1)], [f"d{i}.example" for i in range(half)]
        )
    assert e.value.code == "too_many_entries"
