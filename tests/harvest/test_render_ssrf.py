"""A hostile world for `--render` (issue 16): a page on an allowed host cannot reach a loopback service (item 1);
pop-ups do not pile up and a browser that stops answering is killed, process tree and all (item 10).

`allowed.test` and `rebind.test` resolve to 127.0.0.1 for the guard, and 127.0.0.1/32 is let through
(`allow_networks`), so the fixture site plays an allowed public host; the hostile service listens on
127.0.0.2, a loopback address the guard refuses, on the site's own port. Chromium is told (with
`--host-resolver-rules`) that `rebind.test` is 127.0.0.2: a browser resolving names itself would go there.
The same page in a bare Chromium (no proxy) reaches the hostile service through every vector, which proves
each attempt really runs; through the Renderer, the hostile service sees nothing at all.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvest.fetch.client import Fetcher
from harvest.fetch.policy import FetchPolicy
from harvest.fetch.proxy import REFUSED_HEADER, GuardedProxy
from harvest.fetch.ssrf import AddressGuard, Resolver
from harvest.scrape.render import CHROMIUM, Renderer, url_check
from tests.support.processes import alive, wait_until_gone
from tests.support.site import (
    LoopbackTarget,
    Request,
    Response,
    Site,
    add_escape_routes,
    add_unruly_routes,
    hostile_fetch_routes,
)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"
)

ROOT = Path(__file__).resolve().parents[2]
RULES = "--host-resolver-rules=MAP allowed.test 127.0.0.1, MAP rebind.test 127.0.0.2"
BARE_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
VECTORS = {"/css", "/img", "/frame", "/fetch", "/ws", "TLS", "/t/escape/rebind"}  # what the bare browser leaks


@pytest.fixture
def target(site: Site) -> Iterator[LoopbackTarget]:
    """The hostile loopback service, on 127.0.0.2 and the fixture site's port."""
    with LoopbackTarget("127.0.0.2", site.port) as hostile:
        add_escape_routes(site, hostile.origin, f"http://rebind.test:{site.port}")
        yield hostile


def guarded_fetcher(**policy: object) -> Fetcher:
    resolver = Resolver(overrides={"allowed.test": ["127.0.0.1"], "rebind.test": ["127.0.0.1"]})
    return Fetcher(FetchPolicy(allow_networks=("127.0.0.1/32",), **policy), resolver=resolver)  # type: ignore[arg-type]


def bare_chromium_visits(urls: list[str], *extra: str) -> None:
    """The attack pages in Chromium without the proxy: what the renderer used to be exposed to."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*BARE_ARGS, RULES, *extra])
        try:
            page = browser.new_page()
            for url in urls:
                with contextlib.suppress(PlaywrightError):  # a document that is a GIF: it was requested all the same
                    page.goto(url, wait_until="load", timeout=30_000)
        finally:
            browser.close()


def test_a_bare_browser_reaches_the_loopback_service_through_every_vector(site: Site, target: LoopbackTarget) -> None:
    """The control: without the proxy, every attempt of the page lands on the hostile service."""
    origin = f"http://allowed.test:{site.port}"
    bare_chromium_visits([f"{origin}/t/escape/page?run=bare", f"{origin}/fault/redirect?to={target.origin}/main"])
    assert site.hits["/t/escape/done"] >= 1  # the page's attempts had all settled
    assert VECTORS | {"/main"} <= set(target.paths)
    assert target.datagrams > 0  # the STUN request of the page's RTCPeerConnection


def test_rendered_pages_cannot_reach_a_loopback_service(site: Site, target: LoopbackTarget) -> None:
    origin = f"http://allowed.test:{site.port}"
    done_before, rebind_before = site.hits["/t/escape/done"], site.hits["/t/escape/rebind"]
    with guarded_fetcher() as fetcher:
        renderer = Renderer(check_url=url_check(fetcher, True), timeout=30, scroll_rounds=1, chromium_args=[RULES])
        try:
            page = renderer.render(f"{origin}/t/escape/page?run=guarded")
            main = renderer.render(f"{origin}/fault/redirect?to={target.origin}/main")
            tls = renderer.render(f"{origin}/fault/redirect?to=https://127.0.0.2:{target.port}/main")
        finally:
            renderer.close()
    assert page.ok, page.error
    assert site.hits["/t/escape/done"] > done_before  # every attempt ran and settled
    assert site.hits["/t/escape/rebind"] > rebind_before  # fetched from the address the guard checked
    assert (main.error_kind, tls.error_kind) == ("ssrf", "ssrf")
    assert "127.0.0.2" in (main.error or "") and "loopback" in (main.error or "")
    assert (target.connections, target.datagrams, target.paths) == (0, 0, [])
    refused = " ".join(url for url, _ in renderer.blocked)
    assert f"127.0.0.2:{target.port}" in refused


def test_a_renderer_given_no_guard_refuses_private_addresses(site: Site) -> None:
    """A check that carries no guard (not built by `url_check`) gets the strict default: fail closed."""
    add_unruly_routes(site)
    before = site.hits["/t/unruly/child"]
    renderer = Renderer(check_url=lambda _url: None, timeout=30, scroll_rounds=0)
    try:
        page = renderer.render(site.url("/t/unruly/child"))
    finally:
        renderer.close()
    assert page.error_kind == "ssrf" and "loopback" in (page.error or "")
    assert site.hits["/t/unruly/child"] == before


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_an_https_page_cannot_reach_the_loopback_service_over_webtransport(tmp_path: Path, photos_dir: Path) -> None:
    """WebTransport (HTTP/3 over UDP, https pages only) never goes through an HTTP proxy; a bare browser
    sends its QUIC packets straight to loopback, the renderer sends none. The page itself and its image come
    through the proxy's TLS tunnel (the certificate is self-made, hence --ignore-certificate-errors)."""
    key, cert = make_certificate(tmp_path, "allowed.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with Site(photos_dir, ssl_context=context) as tls_site, LoopbackTarget("127.0.0.2") as hostile:
        name = tls_site.photo_names[0]
        script = (
            f"new WebTransport('https://127.0.0.2:{hostile.port}/wt').ready"
            ".then(() => fetch('/t/wt/done'), () => fetch('/t/wt/done'));"
        )
        page_html = f"<html><body><img src='/img/{name}'><script>{script}</script><img src='/t/wt/hold'></body></html>"
        tls_site.route("/t/wt/page", lambda _r: Response.html(page_html))
        done = threading.Event()

        def finished(_request: Request) -> Response:
            done.set()
            return Response.text("ok")

        def hold(_request: Request) -> Response:  # keeps the load event back until the attempt has settled
            done.wait(20.0)
            return Response.text("ok")

        tls_site.route("/t/wt/done", finished)
        tls_site.route("/t/wt/hold", hold)
        url = f"https://allowed.test:{tls_site.port}/t/wt/page"

        bare_chromium_visits([url], "--ignore-certificate-errors")
        assert tls_site.hits["/t/wt/done"] == 1 and hostile.datagrams > 0  # the control: QUIC to loopback
        leaked = hostile.datagrams
        done.clear()

        resolver = Resolver(overrides={"allowed.test": ["127.0.0.1"]})
        with Fetcher(FetchPolicy(allow_networks=("127.0.0.1/32",)), resolver=resolver) as fetcher:
            check = url_check(fetcher, False)  # no robots.txt: the fetcher does not trust the certificate
            args = ["--ignore-certificate-errors"]
            renderer = Renderer(check_url=check, timeout=30, scroll_rounds=0, chromium_args=args)
            try:
                page = renderer.render(url)
            finally:
                renderer.close()
        assert page.ok, page.error
        assert tls_site.hits["/t/wt/done"] == 2  # the attempt ran and failed
        assert f"https://allowed.test:{tls_site.port}/img/{name}" in page.image_urls
        assert (hostile.connections, hostile.datagrams) == (0, leaked)


# -- the proxy itself, spoken to directly -------------------------------------------------------------------------


def ask(proxy: GuardedProxy, request: bytes, then: bytes = b"") -> bytes:
    """Send `request` (and `then`) to the proxy and read until it closes the connection."""
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if then:
            reply = sock.recv(65536)
            sock.sendall(then)
        else:
            reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_the_proxy_checks_each_request_and_refuses_what_it_cannot_check(site: Site, target: LoopbackTarget) -> None:
    guard = AddressGuard(Resolver(overrides={"allowed.test": ["127.0.0.1"]}), allow_networks=("127.0.0.1/32",))
    refusals: list[tuple[str, str, str]] = []
    allowed, hostile = f"allowed.test:{site.port}", f"127.0.0.2:{target.port}"
    name = site.photo_names[0]
    with GuardedProxy(guard, idle_timeout=5, on_refuse=lambda *r: refusals.append(r)) as proxy:
        ok = ask(proxy, f"GET http://{allowed}/img/{name} HTTP/1.1\r\nHost: {allowed}\r\n\r\n".encode())
        assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(site.photo(name))
        assert b"\r\nConnection: close\r\n" in ok

        blocked = ask(proxy, f"GET http://{hostile}/x HTTP/1.1\r\nHost: {hostile}\r\n\r\n".encode())
        assert blocked.startswith(b"HTTP/1.1 403") and f"{REFUSED_HEADER}: ssrf".encode() in blocked
        assert ask(proxy, f"CONNECT {hostile} HTTP/1.1\r\n\r\n".encode()).startswith(b"HTTP/1.1 403")
        metadata = ask(proxy, b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n")
        assert metadata.startswith(b"HTTP/1.1 403") and b"metadata" in metadata

        upgrade = f"GET http://{allowed}/img/{name} HTTP/1.1\r\nHost: {allowed}\r\nUpgrade: websocket\r\n"
        assert ask(proxy, (upgrade + "Connection: Upgrade\r\n\r\n").encode()).startswith(b"HTTP/1.1 403")
        assert ask(proxy, b"GET ftp://allowed.test/x HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 403")
        assert ask(proxy, b"GET /relative HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 403")
        # A tunnel to an allowed host carries TLS only: a plaintext (ws://) handshake ends the tunnel.
        site.reset()
        tunnel = ask(proxy, f"CONNECT {allowed} HTTP/1.1\r\n\r\n".encode(), then=b"GET /img/x HTTP/1.1\r\n\r\n")
        assert tunnel.startswith(b"HTTP/1.1 200") and site.hits["/img/x"] == 0
        # A second request on the same browser connection is not passed to the first request's server.
        two = f"GET http://{allowed}/img/{name} HTTP/1.1\r\nHost: {allowed}\r\n\r\n"
        ask(proxy, f"{two}GET http://{hostile}/y HTTP/1.1\r\nHost: {hostile}\r\n\r\n".encode())
        assert site.hits[f"/img/{name}"] == 1 and site.hits["/y"] == 0
    assert (target.connections, target.datagrams) == (0, 0)
    assert {kind for _, kind, _ in refusals} == {"ssrf", "scheme"}

    with GuardedProxy(AddressGuard(Resolver(), allow_private=True), idle_timeout=5) as open_proxy:
        reply = ask(open_proxy, f"GET http://{hostile}/open HTTP/1.1\r\nHost: {hostile}\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 200") and target.paths == ["/open"]  # --allow-private lets it through


# -- pop-ups and a browser that stops answering (issue 16, item 10) ------------------------------------------------


def test_pop_ups_are_closed_and_a_stuck_browser_is_killed_with_its_processes(site: Site) -> None:
    add_unruly_routes(site)
    with Fetcher(FetchPolicy(allow_private=True)) as fetcher:
        # Playwright's own timeout (300 s) is far past the wait below: only the kill can end the stuck page.
        renderer = Renderer(check_url=url_check(fetcher, True), timeout=300, scroll_rounds=1, settle=0.3)
        try:
            for _ in range(3):
                page = renderer.render(site.url("/t/unruly/popups"))
                assert page.ok, page.error
                assert renderer.open_tabs() == 0  # no window of the page outlives its visit
            first = renderer.processes()
            assert first and alive(first[0])  # the browser, found by the marker on its command line

            renderer.deadline = 3.0
            stuck = renderer.render(site.url("/t/unruly/forever"))
            assert stuck.error_kind == "timeout" and "did not settle" in (stuck.error or "")
            assert wait_until_gone(first)  # the spinning renderer is not left burning a core

            renderer.deadline = 120.0
            again = renderer.render(site.url("/t/unruly/popups"))
            assert again.ok, again.error
            second = renderer.processes()
            assert second and set(second).isdisjoint(first)
        finally:
            renderer.close()
    assert wait_until_gone(second)  # closing leaves no Chromium behind


EXITING = """
import sys
from harvest.fetch.client import Fetcher
from harvest.fetch.policy import FetchPolicy
from harvest.scrape.render import Renderer, url_check

with Fetcher(FetchPolicy(allow_private=True)) as fetcher:
    renderer = Renderer(check_url=url_check(fetcher, True), timeout=300, scroll_rounds=0)
    assert renderer.render(sys.argv[1] + "/t/unruly/child").ok
    print(*renderer.processes(), flush=True)
    renderer.deadline = 3.0
    print(renderer.render(sys.argv[1] + "/t/unruly/forever").error_kind, flush=True)
    renderer.close()
"""


def test_a_run_that_abandoned_a_stuck_browser_exits_cleanly(site: Site) -> None:
    """The process used to die with SIGSEGV at exit (a Playwright thread still stuck) and leave Chromium spinning."""
    add_unruly_routes(site)
    done = subprocess.run(
        [sys.executable, "-c", EXITING, site.base_url], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pids, kind = done.stdout.splitlines()
    assert kind == "timeout"
    assert wait_until_gone([int(pid) for pid in pids.split()])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_a_tunnel_to_an_allowed_host_carries_tls_and_close_cuts_it(tmp_path: Path, photos_dir: Path) -> None:
    """CONNECT to a checked host relays TLS end to end (the certificate is the site's own, for its name);
    closing the proxy cuts a tunnel still open, so no thread outlives the browser."""
    key, cert = make_certificate(tmp_path, "images.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    guard = AddressGuard(Resolver(overrides={"images.test": ["127.0.0.1"]}), allow_networks=("127.0.0.1/32",))
    with Site(photos_dir, ssl_context=server_context) as tls_site, GuardedProxy(guard, idle_timeout=30) as proxy:
        name = tls_site.photo_names[0]
        port = int(proxy.url.rsplit(":", 1)[1])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        raw.sendall(f"CONNECT images.test:{tls_site.port} HTTP/1.1\r\n\r\n".encode())
        assert raw.recv(65536).startswith(b"HTTP/1.1 200")
        with client_context.wrap_socket(raw, server_hostname="images.test") as tls:
            tls.sendall(f"GET /img/{name} HTTP/1.1\r\nHost: images.test\r\n\r\n".encode())
            reply = b""
            while not reply.endswith(tls_site.photo(name)):
                reply += tls.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200") and tls_site.hits[f"/img/{name}"] == 1
            proxy.close()  # the tunnel is idle and keep-alive: only close() ends it
            assert tls.recv(65536) == b""


def test_a_server_that_never_finishes_its_head_does_not_hold_a_proxy_connection(site: Site) -> None:
    """Headers dripped a byte at a time, or `100 Continue` for ever: the proxy gives up on the response head
    after its idle timeout instead of serving that one request for hours."""
    hostile_fetch_routes(site)
    guard = AddressGuard(Resolver(), allow_private=True)
    with GuardedProxy(guard, idle_timeout=2) as proxy:
        trickle = ask(proxy, f"GET {site.url('/hostile/trickle-headers')} HTTP/1.1\r\n\r\n".encode())
        endless = ask(proxy, f"GET {site.url('/hostile/endless-continue')} HTTP/1.1\r\n\r\n".encode())
    assert trickle == b""
    assert endless.startswith(b"HTTP/1.1 100") and b" 200 " not in endless
