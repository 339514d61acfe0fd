"""Signed image links and the sanitizer's use of them (domain/images.py, domain/sanitize.py)."""

from __future__ import annotations

import pytest

from mailsync.domain import images
from mailsync.domain.sanitize import sanitize_html

pytestmark = pytest.mark.unit

KEY = images.image_key(b"deployment secret")
REF = images.ImageRef("t1", "m1", "url", "http://news.example/p.gif?u=alice", 2_000_000_000)


def test_a_token_reads_back_as_what_was_signed() -> None:
    token = images.sign_token(KEY, REF)
    assert images.read_token(KEY, token, now=1_900_000_000) == REF
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature altered
        lambda t: "x" + t,  # payload altered
        lambda t: t.split(".")[0],  # no signature
        lambda t: images.sign_token(images.image_key(b"other secret"), REF),  # another key
        lambda t: "",
    ],
)
def test_a_token_we_did_not_sign_is_refused(change) -> None:  # noqa: ANN001
    with pytest.raises(images.TokenInvalid):
        images.read_token(KEY, change(images.sign_token(KEY, REF)), now=1_900_000_000)


def test_a_payload_swapped_between_tokens_is_refused() -> None:
    # the signature covers the payload: another message's payload with this signature fails
    other = images.ImageRef("t2", "m9", "cid", "logo@x", 2_000_000_000)
    payload = images.sign_token(KEY, other).split(".")[0]
    mac = images.sign_token(KEY, REF).split(".")[1]
    with pytest.raises(images.TokenInvalid):
        images.read_token(KEY, f"{payload}.{mac}", now=0)


def test_an_expired_token_is_told_apart_from_a_forged_one() -> None:
    with pytest.raises(images.TokenExpired):
        images.read_token(KEY, images.sign_token(KEY, REF), now=REF.expires + 1)


def test_the_image_key_is_not_the_oauth_state_key() -> None:
    assert images.image_key(b"s") != b"s" and len(images.image_key(b"s")) == 32


class Links:
    def __init__(self, *, load: bool) -> None:
        self.load = load
        self.remote_seen: list[str] = []

    def cid(self, content_id: str) -> str | None:
        return f"https://api.example/v1/images/cid-{content_id.split('@')[0]}.sig"

    def remote(self, url: str) -> str | None:
        self.remote_seen.append(url)
        return "https://api.example/v1/images/url-1.sig" if self.load else None


HTML = (
    '<p>Hi<img src="cid:logo@acme.example" alt="Logo" width="40" onerror="alert(1)">'
    '<img src="https://tracker.example/open.gif?u=alice" alt="">'
    '<img src="https://api.example/v1/images/forged.sig"></p>'
)


def test_without_links_nothing_loads() -> None:
    out = sanitize_html(HTML)
    assert "src=" not in out  # no image has a src: nothing is fetched on display
    assert 'data-cid="logo@acme.example"' in out
    assert 'href="https://tracker.example/open.gif?u=alice"' in out


def test_cid_images_get_their_link_and_remote_ones_stay_links_when_blocked() -> None:
    links = Links(load=False)
    out = sanitize_html(HTML, links)
    assert '<img src="https://api.example/v1/images/cid-logo.sig" alt="Logo" width="40">' in out
    assert "onerror" not in out and "tracker.example/open.gif" in out
    assert 'src="https://tracker' not in out
    # the sender's own "https://api.example/..." src is not one we handed out: dropped
    assert 'src="https://api.example/v1/images/forged.sig"' not in out
    assert out.count("<img") == 1
    assert links.remote_seen == [
        "https://tracker.example/open.gif?u=alice",
        "https://api.example/v1/images/forged.sig",
    ]


def test_loaded_remote_images_point_only_at_our_proxy() -> None:
    out = sanitize_html(HTML, Links(load=True))
    assert out.count('src="https://api.example/v1/images/url-1.sig"') == 2
    assert "tracker.example" not in out  # the reader's browser never contacts the sender


def test_an_img_src_equal_to_a_handed_out_link_cannot_smuggle_script() -> None:
    evil = '<img src="javascript:alert(1)"><img src="cid:x@y" onload="alert(1)">'
    out = sanitize_html(evil, Links(load=True))
    assert "javascript" not in out and "onload" not in out
    assert out == '<img src="https://api.example/v1/images/cid-x.sig">'
