"""Images of a mail, end to end over Dovecot and moto: inline ``cid:`` images render from
the mail's own parts; remote images stay blocked until ``images=load``, and then load
through our proxy route, which never tells the sender anything of the reader."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest

from mailsync.config import get_settings
from mailsync.domain import images
from mailsync.providers.image_http import HttpImageFetcher, ImageUnavailable
from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient

pytestmark = pytest.mark.integration

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f80f0000010100005b1d5a6b0000000049454e44ae426082"
)
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
READER = {
    "X-Forwarded-For": "203.0.113.77",
    "Forwarded": "for=203.0.113.77",
    "User-Agent": "ReaderBrowser/9.9",
    "Cookie": "crm_session=reader-cookie-value",
    "Referer": "https://crm.example/customers/42",
    "Accept-Language": "de-DE",
}


class ImageServer:
    """A sender's image host on loopback: records every request it gets."""

    def __init__(self) -> None:
        seen = self.requests = []  # type: list[tuple[str, dict[str, str]]]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                seen.append((self.path, dict(self.headers.items())))
                path = urlsplit(self.path).path
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/pixel.gif")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, ctype = {
                    "/pixel.gif": (GIF, "image/gif"),
                    "/logo.svg": (
                        b"<svg xmlns='http://www.w3.org/2000/svg'><script>1</script></svg>",
                        "image/svg+xml",
                    ),
                    "/page.html": (b"<script>alert(1)</script>", "text/html"),
                }.get(path, (b"", "text/plain"))
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", ctype)
                self.send_header("Set-Cookie", "tracker=1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.close()


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch, aws) -> Iterator[bytes]:  # noqa: ANN001
    from tests.support.secrets import register

    register("image link secret", "image-test-secret")  # MAILSYNC_STATE_SECRET here
    monkeypatch.setenv("MAILSYNC_STATE_SECRET", "image-test-secret")
    monkeypatch.setenv("MAILSYNC_PUBLIC_URL", "https://api.mailsync.test")
    get_settings.cache_clear()
    yield images.image_key(b"image-test-secret")
    get_settings.cache_clear()


def newsletter(remote: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Versicherer <news@insurer.example>"
    msg["To"] = "alice@example.test"
    msg["Subject"] = "Ihr Vertrag"
    msg["Message-ID"] = "<vertrag@insurer.example>"
    msg.set_content("Ihr Vertrag")
    msg.add_alternative(
        f'<p><img src="cid:logo@insurer.example" alt="Logo"> Guten Tag'
        f'<img src="{remote}/pixel.gif?recipient=alice" alt="" width="1" height="1"></p>',
        subtype="html",
    )
    msg.get_payload()[1].add_related(PNG, "image", "png", cid="<logo@insurer.example>")
    return msg.as_bytes()


def path_of(link: str) -> str:
    assert link.startswith("https://api.mailsync.test/v1/images/"), link
    return urlsplit(link).path


def srcs(html: str) -> list[str]:
    import re

    return re.findall(r'<img src="([^"]+)"', html)


@pytest.fixture
def mail(tenant, dovecot, imap_user, image_server, signed):  # noqa: ANN001
    acc = connect(dovecot, imap_user)
    dovecot.append(imap_user[0], "INBOX", newsletter(image_server.base))
    sync(acc)
    (msg,) = mirror(acc)
    return msg


def test_inline_images_render_and_remote_ones_stay_blocked(mail, image_server):  # noqa: ANN001
    api = ApiClient("key-t1", "alice")
    detail = api.get(f"/v1/messages/{mail['id']}").body
    (cid_link,) = srcs(detail["html"])  # the logo has a src; the tracking pixel does not
    assert detail["remote_images"] == 1
    assert f'href="{image_server.base}/pixel.gif?recipient=alice"' in detail["html"]
    status, headers, data = api.raw("GET", path_of(cid_link), auth=False)  # as an <img> loads it
    assert status == 200 and data == PNG and headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert image_server.requests == []  # reading the mail told the sender nothing


def test_loaded_remote_images_come_through_the_proxy_without_the_readers_identity(mail, image_server):  # noqa: ANN001
    api = ApiClient("key-t1", "alice")
    detail = api.get(f"/v1/messages/{mail['id']}", images="load").body
    assert detail["remote_images"] == 1
    links = srcs(detail["html"])
    assert len(links) == 2 and image_server.base not in detail["html"]
    status, headers, data = api.raw("GET", path_of(links[1]), READER, auth=False)
    assert status == 200 and data == GIF and headers["Content-Type"] == "image/gif"
    assert "Set-Cookie" not in headers  # the sender's cookie never reaches the reader
    ((path, sent),) = image_server.requests
    assert path == "/pixel.gif?recipient=alice"
    leaked = [v for v in READER.values() if any(v in h for h in sent.values())]
    assert leaked == [] and not {"Cookie", "Referer", "X-Forwarded-For", "Forwarded"} & set(sent)
    assert sent["User-Agent"].startswith("mailsync-image-proxy")


def test_forged_expired_and_orphaned_links_serve_nothing(mail, signed):  # noqa: ANN001
    api = ApiClient("key-t1", "alice")
    (cid_link,) = srcs(api.get(f"/v1/messages/{mail['id']}").body["html"])
    token = path_of(cid_link).rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    status, _, body = api.raw("GET", f"/v1/images/{forged}", auth=False)
    assert status == 404 and b'"not_found"' in body
    stale = images.ImageRef("t1", mail["id"], "cid", "logo@insurer.example", int(time.time()) - 1)
    status, _, body = api.raw("GET", f"/v1/images/{images.sign_token(signed, stale)}", auth=False)
    assert status == 410 and b'"link_expired"' in body
    other = images.ImageRef("t2", mail["id"], "cid", "logo@insurer.example", int(time.time()) + 60)
    status, _, _ = api.raw("GET", f"/v1/images/{images.sign_token(signed, other)}", auth=False)
    assert status == 404  # the message is t1's: a t2 link to it finds nothing
    assert api.raw("GET", path_of(cid_link), auth=False)[0] == 200
    assert api.delete(f"/v1/messages/{mail['id']}").status == 204  # to the unsynced Trash
    assert api.raw("GET", path_of(cid_link), auth=False)[0] == 404  # gone here: its links die too
    status, _, body = api.raw("GET", "/v1/images/not-a-token", auth=False)
    assert status == 422 and b'"invalid_request"' in body


def test_the_proxy_serves_raster_images_only(mail, image_server, signed):  # noqa: ANN001
    api = ApiClient("key-t1", "alice")
    for path in ("/logo.svg", "/page.html", "/missing.png"):
        ref = images.ImageRef("t1", mail["id"], "url", image_server.base + path, int(time.time()) + 60)
        status, _, body = api.raw("GET", f"/v1/images/{images.sign_token(signed, ref)}", auth=False)
        assert status == 502 and b'"image_unavailable"' in body, (path, body)


def test_the_fetcher_follows_a_few_redirects_and_never_reaches_private_hosts(image_server):  # noqa: ANN001
    assert HttpImageFetcher(allow_private=True).fetch(image_server.base + "/redirect").data == GIF
    with pytest.raises(ImageUnavailable, match="host_not_allowed"):
        HttpImageFetcher().fetch(image_server.base + "/pixel.gif")  # loopback, in production settings
    for address in ("169.254.169.254", "10.0.0.1", "::ffff:127.0.0.1"):
        resolver = lambda host, port, a=address: [(0, 0, 0, "", (a, port))]  # noqa: E731
        with pytest.raises(ImageUnavailable, match="host_not_allowed"):
            HttpImageFetcher(resolver=resolver).fetch("http://images.sender.example/x.png")
