"""Hostile servers (issue 16): answers that keep a fetch busy without ever letting one socket read time out
(the item deadline must hold from connect through status line, headers and body), and pages whose markup
costs far more memory to parse than to send (a page limit, and a parse that keeps only what is used)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harvest.fetch import Fetcher, FetchPolicy
from harvest.fetch.content import PAGE_MAX_BYTES
from harvest.fetch.ssrf import Resolver
from harvest.scrape.extract import compile_selector, extract_page, parse_html
from harvest.scrape.prune import MAX_KEPT, prune_html
from tests.support.site import Site, hostile_fetch_routes, hostile_page_routes

pytestmark = pytest.mark.timeout(90)  # before the fix these ran for as long as the server kept talking

DEADLINE = 2.0
POLICY = FetchPolicy(allow_private=True, per_host_rate=0, item_deadline=DEADLINE, read_timeout=30.0)


@pytest.fixture
def hostile(site: Site) -> Site:
    hostile_fetch_routes(site)
    return site


@pytest.mark.parametrize("path", ["/hostile/trickle-headers?delay=0.2", "/hostile/endless-continue"])
@pytest.mark.parametrize("kind", ["image", "page"])
def test_headers_that_never_end_hit_the_item_deadline(hostile: Site, path: str, kind: str) -> None:
    with Fetcher(POLICY) as fetcher:
        result = fetcher.fetch(hostile.url(path), kind=kind)  # type: ignore[arg-type]
    assert not result.ok
    assert result.error_kind == "timeout", (result.error_kind, result.error)
    assert "item deadline" in (result.error or ""), result.error
    assert result.attempts == 1, result  # the deadline is spent: no retry


def test_the_fetcher_works_after_a_cut_off_request(hostile: Site) -> None:
    """The cut connection is not reused: the next fetch from the same thread and host succeeds."""
    with Fetcher(POLICY) as fetcher:
        assert fetcher.fetch(hostile.url("/hostile/trickle-headers"), kind="image").error_kind == "timeout"
        for _ in range(3):
            result = fetcher.fetch(hostile.url("/img/" + hostile.photo_names[0]), kind="image")
            assert result.ok, result.error
            assert result.data == hostile.photo()


# -- pages that cost far more to parse than to send (issue 16, item 9) ----------------------------------------

MEMORY_BUDGET_MB = 300  # peak RSS for `harvest scrape` of a 9.5 MB dense page: 119 MB measured, 717 MB before


@pytest.fixture
def dense(site: Site) -> Site:
    hostile_page_routes(site)
    return site


def dense_page(megabytes: float) -> bytes:
    return (
        b"<html><body><img src='/a.jpg'>" + b"<i></i>" * int(megabytes * 1024 * 1024 / 7) + b"<img src='/b.jpg'></body>"
    )


def test_a_dense_page_reaches_beautifulsoup_pruned() -> None:
    """Five megabytes of `<i></i>`: 750,000 elements in the markup, a handful in the parsed page, and the
    images on both sides of them still found."""
    soup = parse_html(dense_page(5))
    assert len(soup.find_all(True)) < 10
    assert [c.url for c in extract_page(soup, "http://x.test/").images] == [
        "http://x.test/a.jpg",
        "http://x.test/b.jpg",
    ]


def test_pruning_keeps_what_selectors_and_labels_read() -> None:
    html = (
        "<html><head><title>Shop &amp; more</title></head><body><div class='gallery'><span></span>"
        "<h1 class='category'>Cat<br>food</h1><p><img src='  /img/1.jpg ' alt='one'></p></div>"
        "<ul><li class='next'><a href='/page/2'>next</a></li></ul><i></i>"
        "<a href='/full.jpg'><b>Big</b></a></body></html>"
    )
    soup = parse_html(html)
    assert soup.title is not None and soup.title.string == "Shop & more"
    assert soup.select_one("h1.category").get_text(" ") == "Cat food"  # type: ignore[union-attr]
    found = extract_page(soup, "http://x.test/", select=compile_selector("div.gallery img", "--select"))
    assert [(c.url, c.alt) for c in found.images] == [("http://x.test/img/1.jpg", "one")]
    links = extract_page(soup, "http://x.test/", follow=compile_selector("li.next a", "--follow")).links
    assert links == ["http://x.test/page/2"]
    assert ("http://x.test/full.jpg", "Big") in [(c.url, c.alt) for c in extract_page(soup, "http://x.test/").images]


def test_a_page_over_the_page_limit_is_refused(dense: Site) -> None:
    with Fetcher(POLICY) as fetcher:
        result = fetcher.fetch(dense.url(f"/hostile/dense?mb={PAGE_MAX_BYTES / 2**20 + 1}"), kind="page")
    assert result.error_kind == "too_large", (result.error_kind, result.error)


# Runs `harvest scrape` as `python -m harvest.cli` would, and writes the process's own peak (VmHWM) at exit:
# wait4's ru_maxrss would carry over the parent's RSS at fork (Linux keeps it across exec), which is pytest's,
# with torch imported when the whole suite runs.
_PEAK_OF_CLI = """
import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_FILE"], "w") as out:
        out.write(str(kb))
atexit.register(_peak)
sys.argv = ["harvest", *sys.argv[1:]]
runpy.run_module("harvest.cli", run_name="__main__")
"""


@pytest.mark.timeout(300)
def test_scrape_of_a_dense_page_stays_within_its_memory_budget(dense: Site, ws: Path, tmp_path: Path) -> None:
    """The whole `harvest scrape` process, its own peak RSS as the kernel counted it (VmHWM), not an estimate."""
    command = [sys.executable, "-c", _PEAK_OF_CLI, "scrape", dense.url("/hostile/dense?mb=9.5"), "--allow-private",
               "--per-host-rate", "0", "--json", "-w", str(ws)]  # fmt: skip
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_")}
    environment["PEAK_FILE"] = str(tmp_path / "peak")
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        process = subprocess.run(command, cwd=ws.parent, env=environment, stdout=out, stderr=err, timeout=280)
    assert process.returncode == 0, (tmp_path / "err").read_text()
    document = json.loads((tmp_path / "out").read_text())
    assert document["added"] == 2, document
    peak_mb = int((tmp_path / "peak").read_text()) / 1024
    assert peak_mb < MEMORY_BUDGET_MB, f"peak RSS {peak_mb:.0f} MB"


def test_past_the_element_caps_the_images_are_still_found() -> None:
    """Dense markup that pruning cannot drop (every element has an attribute) stops being kept at MAX_KEPT;
    images and links after it are still kept, up to MAX_ELEMENTS."""
    spam = "<i class='x'></i>" * (MAX_KEPT + 10_000)
    pruned = prune_html(f"<html><body>{spam}<img src='/late.jpg'><a href='/next'>n</a></body></html>")
    assert pruned.capped and pruned.kept <= MAX_KEPT + 10
    soup = parse_html(pruned.html)
    found = extract_page(soup, "http://x.test/")
    assert [c.url for c in found.images] == ["http://x.test/late.jpg"] and found.links == ["http://x.test/next"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_over_tls_too_the_deadline_cuts_dripped_headers(tmp_path: Path, photos_dir: Path) -> None:
    """The watchdog shuts the TCP socket under the TLS layer: the TLS read ends too."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=images.test", "-addext", "subjectAltName=DNS:images.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with Site(photos_dir, ssl_context=context) as tls_site:
        hostile_fetch_routes(tls_site)
        resolver = Resolver(overrides={"images.test": ["127.0.0.1"]})
        policy = FetchPolicy(allow_private=True, obey_robots=False, ca_bundle=str(cert), item_deadline=DEADLINE)
        with Fetcher(policy, resolver=resolver) as fetcher:
            result = fetcher.fetch(f"https://images.test:{tls_site.port}/hostile/trickle-headers", kind="image")
            name = tls_site.photo_names[0]
            after = fetcher.fetch(f"https://images.test:{tls_site.port}/img/{name}", kind="image")
    assert result.error_kind == "timeout", (result.error_kind, result.error)
    assert after.ok and after.data == tls_site.photo(name)


def test_the_watchdog_thread_ends_when_no_request_is_in_progress(hostile: Site) -> None:
    """An idle process has no watchdog thread, so that it may still fork its workers (storage.parallel forks
    only a single-threaded process)."""

    def watchdogs() -> int:
        return sum(thread.name == "gleaner-fetch-deadlines" for thread in threading.enumerate())

    with Fetcher(POLICY) as fetcher:
        assert fetcher.fetch(hostile.url("/img/" + hostile.photo_names[0]), kind="image").ok
        waited = 0
        while watchdogs() and waited < 600:  # it ends IDLE seconds after the last request; 60 s at most here
            time.sleep(0.1)
            waited += 1
        assert watchdogs() == 0
        assert fetcher.fetch(hostile.url("/hostile/endless-continue"), kind="image").error_kind == "timeout"


@pytest.mark.parametrize(
    ("page", "images"),
    [
        (b"", []),
        (b"\x00\x00\xff", []),
        (
            b'<?xml version="1.0" encoding="iso-8859-1"?>\n<html><body><img src="a.jpg" alt="caf\xe9"></body></html>',
            [("a.jpg", "café")],
        ),
        (
            b'<html><head><meta charset="windows-1251"></head><body><img src="b.jpg" alt="\xcf\xf0\xe8"></body></html>',
            [("b.jpg", "При")],
        ),
    ],
)
def test_pruned_parsing_of_odd_documents(page: bytes, images: list[tuple[str, str]]) -> None:
    """Empty and binary pages are empty documents; an XML declaration or a `<meta charset>` still decides."""
    found = extract_page(page, "http://x.test/").images
    assert [(c.url.removeprefix("http://x.test/"), c.alt) for c in found] == images
