"""The hostile world of the reliability suite's hostile-inputs test: every hostile file, body, route and page
in one place, each with the reason a user should read for it.

- `make_corpus(dir)`: tests/hostile.py's corpus plus the bombs and polyglots it lacks (a TIFF declaring 10
  gigapixels, a GIF of 10,000 frames, files whose first bytes claim one format and whose rest is another) and
  a FIFO; returns file name → a substring of the reason ingest gives.
- `HostileWorld`: three fixture sites on 127.0.0.1. `main` serves good photos, every corpus file as an image
  body, and the hostile routes (gzip bomb, endless body, Content-Length that lies both ways, redirect loop,
  headers and a body dripped for ever; pages: malformed, nested 300 and 100,000 deep, binary, over the page
  limit, a gzip bomb); `robots` has a 50 MB robots.txt (only its first 512 KiB are read; it disallows /blocked/);
  `limited` answers 429 with Retry-After: 999999. `world.url_list()` is what `harvest urls` gets,
  `world.scrape_site()` registers the pages `harvest scrape` starts from (`world.scrape_seed`): each an `Offer`
  of good items with their bytes and hostile items with the substring their problem entry's reason must hold.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.hostile import frames_bomb_gif, make_fifo, make_hostile_corpus, valid_png
from tests.support.site import Handler, Request, Response, Site, hostile_fetch_routes

__all__ = ["DEADLINE_REASON", "GOOD_PHOTOS", "ITEM_TIMEOUT_S", "HostileWorld", "Offer", "extra_files", "make_corpus"]

GOOD_PHOTOS = 6  # good images per role (URL list, scrape page, robots origin): a few, so the run stays quick
ROBOTS_BYTES = 50 * 1024 * 1024
GZIP_BOMB_BYTES = 1024**3  # what the gzip bomb inflates to (1 MiB on the wire)
DEPTH = 100_000  # nesting of the deep page: libxml2 stops at 256 (2,048 with huge_tree)
CONTENT_TYPES = {".png": "image/png", ".gif": "image/gif", ".webp": "image/webp", ".tif": "image/tiff",
                 ".svg": "image/svg+xml"}  # fmt: skip

ITEM_TIMEOUT_S = 20  # the web collectors run with --item-timeout ITEM_TIMEOUT_S (see test_hostile_inputs)
DEADLINE_REASON = f"{ITEM_TIMEOUT_S}-s item deadline"  # the option took effect: the reason names it


# -- files ---------------------------------------------------------------------------------------------------


def tiff_bomb(side: int = 100_000) -> bytes:
    """A 138-byte little-endian TIFF whose one IFD declares a side x side bilevel image (10 gigapixels)."""
    entries = [(256, 4, side), (257, 4, side), (258, 3, 1), (259, 3, 32773), (262, 3, 0), (273, 4, 0),
               (277, 3, 1), (278, 4, side), (279, 4, 16)]  # fmt: skip
    data_at = 8 + 2 + len(entries) * 12 + 4
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(entries)))
    for tag, kind, value in entries:
        value = data_at if tag == 273 else value  # StripOffsets: the 16 bytes after the IFD
        out += struct.pack("<HHIHH", tag, kind, 1, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind, 1, value)
    return bytes(out + struct.pack("<I", 0) + bytes(16))


def _zip(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


def extra_files(photo: bytes) -> dict[str, tuple[bytes, str]]:
    """The bombs and polyglots tests/hostile.py lacks: name → (bytes, substring of the reason)."""
    return {
        "gigapixel.tif": (tiff_bomb(), "bomb"),
        "ten-thousand-frames.gif": (frames_bomb_gif(side=2000, frames=10_000), "bomb"),
        # polyglots: the first bytes say one thing, the rest is another
        "gifar-script.gif": (b"GIF89a/*\x00\x00\x00\x00*/=1;alert(document.domain);//" + b"A" * 200, "not an image"),
        "jpeg-head-html.jpg": (b"\xff\xd8\xff\xe0<html><body><script>alert(1)</script></body></html>", "corrupt"),
        "png-head-zip.png": (b"\x89PNG\r\n\x1a\n" + _zip("evil.html", "<script>alert(1)</script>"), "not a recognised"),
        "pdf-then-jpeg.jpg": (b"%PDF-1.4\n1 0 obj<<>>endobj\n" + photo, "PDF"),
        "html-then-png.png": (b"<html><body>hi</body></html>" + valid_png(), "HTML"),
    }


def make_corpus(folder: Path, photo: Path, *, fifo: bool = True) -> dict[str, str]:
    """Write every hostile file into `folder` (a FIFO too, unless `fifo` is off); name → reason substring."""
    expected = make_hostile_corpus(folder, photo=photo)
    for name, (data, reason) in extra_files(photo.read_bytes()).items():
        (folder / name).write_bytes(data)
        expected[name] = reason
    if fifo:
        make_fifo(folder / "pipe.jpg")
        expected["pipe.jpg"] = "not a regular file"
    return expected


# -- bodies ----------------------------------------------------------------------------------------------------


def _gzip_member(data: bytes) -> bytes:
    member = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    return member.compress(data) + member.flush()


def _gzip_bomb(head: bytes) -> Iterator[bytes]:
    """A gzip stream of `head` and GZIP_BOMB_BYTES zero bytes, one 16 MiB member after another (1 MiB on the
    wire): the head makes it look like what it claims to be (a JPEG, a page) to whoever sniffs it."""
    block = 16 * 1024 * 1024
    yield _gzip_member(head + bytes(block))
    zeros = _gzip_member(bytes(block))
    for _ in range(GZIP_BOMB_BYTES // block - 1):
        yield zeros


def _gzip_bomb_response(request: Request) -> Response:
    image = request.path.endswith(".jpg")
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" if image else b"<html><body>"
    content_type = "image/jpeg" if image else "text/html"
    return Response(200, _gzip_bomb(head), {"Content-Type": content_type, "Content-Encoding": "gzip"})


def _robots_txt() -> Response:
    """50 MB: one real rule first, then a rule for a path nobody asks for, again and again."""
    head = b"User-agent: *\nDisallow: /blocked/\n"
    line = b"Disallow: /nothing/here/at/all/but/bytes/0123456789\n"
    chunk = line * (64 * 1024 // len(line))
    count = (ROBOTS_BYTES - len(head)) // len(chunk)

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(count):
            yield chunk

    return Response(200, body(), {"Content-Type": "text/plain"}, length=len(head) + count * len(chunk))


def _retry_after_forever(_request: Request) -> Response:
    return Response(429, b"come back in eleven days", {"Retry-After": "999999", "Content-Type": "text/plain"})


def _short_length(request: Request) -> Response:
    """Content-Length says 1,000 bytes; the whole photo follows, on a connection kept alive."""
    return Response(
        200, request.site.photo(request.arg("img")), {"Content-Type": "image/jpeg", "Content-Length": "1000"}
    )


def _long_length(request: Request) -> Response:
    """Content-Length says 5,000,000 bytes; the photo follows and the connection closes."""
    photo = request.site.photo(request.arg("img"))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 5000000\r\n\r\n"
    return Response(body=head + photo, raw=True)


# -- pages ------------------------------------------------------------------------------------------------------


def _html(body: str) -> str:
    return f"<!doctype html><html><head><title>hostile</title></head><body>{body}</body></html>"


def _malformed(image: str) -> bytes:
    """Unclosed and broken tags, NUL and invalid bytes, entities out of range, markup in comments and scripts."""
    return (
        b"<html<<body><p <div class='x'\x00><a href='/nowhere'>\x00\xff\xfe</b></i></p></table>&#xffffffff;&#0;"
        b"<!-- <img src='/img/in-a-comment.jpg'> --><script>document.write('<img src=/img/in-a-script.jpg>')"
        b"</script><![CDATA[ junk ]]><img src='" + image.encode() + b"' alt='half\x00' <p>< / ><img src='/img/x"
    )


def _deep(image: str) -> bytes:
    """DEPTH unclosed `<div><font>` pairs, the image at the bottom (libxml2 gives up at 2,048 even with huge_tree)."""
    return b"<html><body>" + b"<div><font>" * DEPTH + f"<img src='{image}'>".encode() + b"</body></html>"


def _nested(image: str) -> bytes:
    """300 levels of `<div>` (over libxml2's default 255), closed again, and the image after them."""
    return b"<html><body>" + b"<div class='level'>" * 300 + b"</div>" * 300 + f"<img src='{image}'>".encode()


def _binary(image: str) -> bytes:
    noise = bytes((n * 2654435761) >> 13 & 0xFF for n in range(200_000))
    return noise + f"<img src='{image}'>".encode() + noise[:1000]


def _huge_page(streamed: bool) -> Response:
    """11 MiB of page (over the 10 MiB page limit): with its Content-Length, or streamed without one."""
    chunk = b"<p>" + b"words " * 10_000 + b"</p>"
    count = 11 * 1024 * 1024 // len(chunk) + 1
    body = iter([b"<html><body>", *([chunk] * count)])
    return Response(200, body, {"Content-Type": "text/html"}, length=None if streamed else 12 + count * len(chunk))


def _page_handler(body: bytes) -> Handler:
    return lambda _request: Response(200, body, {"Content-Type": "text/html"})


@dataclass
class HostileWorld:
    """The three sites and what each URL they serve should come to (see the module docstring)."""

    main: Site
    robots: Site
    limited: Site
    corpus: dict[str, bytes]  # hostile file name → bytes (no FIFO: it cannot be served)
    reasons: dict[str, str]  # hostile file name → reason substring at ingest

    @classmethod
    def start(cls, photos: list[Path], folder: Path) -> HostileWorld:
        main, robots, limited = Site(photos[0].parent), Site(photos[0].parent), Site()
        for site in (main, robots, limited):
            site.start()
        reasons = make_corpus(folder, photos[0], fifo=False)
        corpus = {name: (folder / name).read_bytes() for name in reasons if (folder / name).is_file()}
        world = cls(main, robots, limited, corpus, {n: r for n, r in reasons.items() if n in corpus})
        world._routes()
        return world

    def stop(self) -> None:
        for site in (self.main, self.robots, self.limited):
            site.stop()

    def _routes(self) -> None:
        main = self.main
        hostile_fetch_routes(main)
        main.route("/hx/file/", self._file)
        main.route("/hx/gzip-bomb", _gzip_bomb_response)
        main.route("/hx/short-length.jpg", _short_length)
        main.route("/hx/long-length.jpg", _long_length)
        self.robots.route("/robots.txt", lambda _r: _robots_txt())
        self.robots.route("/blocked/", lambda r: Response.image(r.site.photo(r.path.rsplit("/", 1)[-1])))
        self.limited.route("/hx/429", _retry_after_forever)

    def _file(self, request: Request) -> Response:
        name = request.path.rsplit("/", 1)[-1]
        data = self.corpus.get(name)
        if data is None:
            return Response.text("not found", 404)
        return Response.image(data, CONTENT_TYPES.get(os.path.splitext(name)[1], "image/jpeg"))

    # -- what the collectors get ---------------------------------------------------------------------------

    def _good(self, site: Site, names: list[str]) -> dict[str, bytes]:
        return {site.url(f"/img/{name}"): site.photo(name) for name in names}

    def hostile_image_urls(self) -> dict[str, str]:
        """Every hostile image URL → the substring its problem entry's reason must hold."""
        main = self.main
        # Over HTTP the fetch layer sniffs a body before ingest sees it: text, markup and empty bodies are refused
        # as "not an image" there; the rest reach ingest, which gives the same reason as for a local file.
        sniffed = {"empty.jpg": "empty body", "notes.jpg": "not an image", "page.png": "not an image",
                   "drawing.svg": "not an image", "html-then-png.png": "not an image",
                   "pdf-then-jpeg.jpg": "not an image"}  # fmt: skip
        urls = {main.url(f"/hx/file/{name}"): sniffed.get(name, reason) for name, reason in self.reasons.items()}
        urls |= {
            main.url("/hx/gzip-bomb.jpg"): "over the",
            main.url("/fault/endless"): "over the",
            main.url("/fault/huge"): "Content-Length 10,737,418,240",
            main.url("/hx/short-length.jpg"): "truncated",
            main.url("/hx/long-length.jpg"): "short of the announced Content-Length",
            main.url("/fault/loop"): "redirect loop",
            main.url("/hostile/trickle-headers"): DEADLINE_REASON,
            main.url("/fault/slow?delay=1"): DEADLINE_REASON,
            self.limited.url("/hx/429"): "HTTP 429",
            self.robots.url(f"/blocked/{self.robots.photo_names[0]}"): "disallowed by",
        }
        return urls

    def url_list(self) -> Offer:
        """`harvest urls`'s list: good images on `main` and on the 50-MB-robots origin, and every hostile URL."""
        names = self.main.photo_names
        good = self._good(self.main, names[:GOOD_PHOTOS]) | self._good(self.robots, names[GOOD_PHOTOS:][:2])
        return Offer(good, self.hostile_image_urls())

    @property
    def scrape_seed(self) -> str:
        return self.main.url("/hxs/index.html")

    def scrape_site(self) -> Offer:
        """Register the scrape site's pages (see the module docstring) and say what they offer."""
        main = self.main
        names = main.photo_names[2 * GOOD_PHOTOS :]
        good = self._good(main, names[:GOOD_PHOTOS]) | self._good(self.robots, names[GOOD_PHOTOS:][:2])
        images = list(good) + list(self.hostile_image_urls())
        survivors: dict[str, str] = {}
        renderers = {"malformed": _malformed, "deep": _deep, "nested": _nested, "binary": _binary}
        for (page, render), name in zip(renderers.items(), names[GOOD_PHOTOS + 2 :], strict=False):
            good |= self._good(main, [name])
            main.route(f"/hxs/{page}.html", _page_handler(render(f"/img/{name}")))
            survivors[main.url(f"/hxs/{page}.html")] = page
        main.route("/hxs/huge.html", lambda _r: _huge_page(streamed=False))
        main.route("/hxs/huge-streamed.html", lambda _r: _huge_page(streamed=True))
        hostile_pages = {
            main.url("/hxs/huge.html"): "over the",
            main.url("/hxs/huge-streamed.html"): "over the",
            main.url("/hx/gzip-bomb.html"): "over the",
            main.url("/fault/loop?as=page"): "redirect loop",
            main.url("/hostile/trickle-headers?as=page"): DEADLINE_REASON,
        }
        links = [url.removeprefix(main.base_url) for url in [*survivors, *hostile_pages]]
        index = "".join(f"<img src='{url}'>" for url in images) + "".join(f"<a href='{link}'>x</a>" for link in links)
        main.route("/hxs/index.html", _page_handler(_html(index).encode()))
        return Offer(good, hostile_pages | self.hostile_image_urls(), survivors)


@dataclass(frozen=True)
class Offer:
    """What a collector is given: good items (→ their bytes, each must be catalogued once), hostile items (→ the
    substring the reason of their one problem entry must hold), and hostile pages that a browser shows (→ what
    they are: each must be read without a problem entry, its image found)."""

    good: dict[str, bytes]
    hostile: dict[str, str]
    survivors: dict[str, str] = field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        return [*self.good, *self.hostile]
