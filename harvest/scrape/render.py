"""Rendered pages: Playwright with the system Chromium, for pages whose images only appear through JavaScript.

Playwright's sync API must be driven from the thread that started it, so one private thread owns the
browser and every `render()` call (from any crawler thread) is handed to it. The browser and its context
are started once and reused; each page gets a fresh tab, and every tab (pop-ups too) is closed afterwards.
All the browser's traffic goes through an in-process forward proxy (`harvest.fetch.proxy`) that applies the
SSRF guard to every connection, redirect hops included, and dials the address it checked; route
interception adds robots.txt for the requests the page makes. A page that times out or crashes becomes an
error result, never an exception; a browser that died is started again for the next page, and one that
stopped answering is killed (its whole process tree) before a fresh one takes over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harvest.fetch.client import Fetcher
from harvest.fetch.proxy import REFUSED_HEADER, GuardedProxy
from harvest.fetch.ssrf import AddressGuard, BlockedAddress, Resolver

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "FetcherCheck", "RenderedPage", "Renderer", "UrlCheck", "url_check"]

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",  # QUIC (and WebTransport over it) cannot go through the proxy
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",  # WebRTC: no UDP of its own, only the proxy
)
# Returns None when the URL may be requested, else (error_kind, message), e.g. ("robots", "...").
UrlCheck = Callable[[str], tuple[str, str] | None]
START_TIMEOUT = 120.0  # seconds to wait for Chromium to start (slow on a busy machine)
_STATE_JS = "() => [document.querySelectorAll('img').length, document.documentElement.scrollHeight]"
_SCROLL_JS = "() => { window.scrollTo(0, document.documentElement.scrollHeight); return true; }"
_HTML_JS = "() => document.documentElement.outerHTML"


@dataclass(frozen=True)
class RenderedPage:
    """The rendered DOM of one page and the images the browser loaded while showing it."""

    url: str
    final_url: str
    status: int | None = None
    html: str = ""
    image_urls: list[str] = field(default_factory=list)
    scroll_rounds: int = 0
    error_kind: str | None = None
    error: str | None = None
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def ok(self) -> bool:
        return self.error_kind is None


class Renderer:
    """One Chromium for a whole crawl; `render(url)` is safe to call from any thread (pages run one at a time).

    The browser starts on the first page that passes the checks. Each page has a deadline on top of
    Playwright's own timeouts, in case some call still waits on a page that never answers: then the browser
    thread is abandoned (a daemon thread cannot keep the process alive) and the next page gets a fresh browser.
    """

    def __init__(
        self,
        *,
        check_url: UrlCheck,
        user_agent: str | None = None,
        scroll_rounds: int = 10,
        timeout: float = 30.0,
        settle: float = 1.5,
        executable: str = CHROMIUM,
        deadline: float | None = None,
        guard: AddressGuard | None = None,
        chromium_args: Sequence[str] = (),
    ) -> None:
        self.check_url = check_url
        # The proxy's guard: the fetcher's (`url_check` carries it), else the strict default (fail closed).
        self.guard = guard or getattr(check_url, "guard", None) or AddressGuard(Resolver())
        self.chromium_args = tuple(chromium_args)
        self.user_agent = user_agent
        self.scroll_rounds = max(0, scroll_rounds)
        self.timeout = timeout
        self.settle = settle
        self.executable = executable
        self.deadline = deadline or 2 * timeout + self.scroll_rounds * (settle + 2.0) + 10.0
        # Requests refused by the guard or the proxy, (url, reason): the latest ones, since a hostile page can
        # make millions of refused requests in one crawl.
        self.blocked: deque[tuple[str, str]] = deque(maxlen=1000)
        self._lock = threading.Lock()
        self._worker = _BrowserThread(self)
        self._abandoned: list[_BrowserThread] = []  # joined by close(): a live Playwright thread at exit crashes

    def render(self, url: str) -> RenderedPage:
        """Load, scroll and snapshot one page; every failure comes back as an error result."""
        refusal = self.check_url(url)
        if refusal is not None:  # refused pages never start a browser
            return RenderedPage(url, url, error_kind=refusal[0], error=refusal[1])
        with self._lock:
            worker = self._worker
        try:  # starting Chromium is not the page's time: it has its own, generous limit
            worker.submit(None).result(timeout=START_TIMEOUT)
        except Exception as exc:
            return RenderedPage(url, url, error_kind="browser", error=f"cannot start Chromium: {_first_line(exc)}")
        future = worker.submit(url)
        try:
            page = future.result(timeout=self.deadline)
        except FutureTimeout:
            with self._lock:
                if self._worker is worker:
                    worker.abandon()
                    worker.kill()  # a stuck Chromium would spin on; the stuck call then fails and the thread ends
                    self._abandoned.append(worker)
                    self._worker = _BrowserThread(self)
            message = f"page did not settle within {self.deadline:.0f}s"
            return RenderedPage(url, url, error_kind="timeout", error=message)
        except Exception as exc:  # the worker stopped under this call (closing, or abandoned)
            return RenderedPage(url, url, error_kind="browser", error=_first_line(exc))
        return page if page is not None else RenderedPage(url, url, error_kind="browser", error="no result")

    def open_tabs(self) -> int:
        """Tabs open in the browser between pages: 0 unless pop-ups or pages leak (diagnostics and tests)."""
        with self._lock:
            worker = self._worker
        return int(worker.call(worker.open_tabs).result(timeout=START_TIMEOUT))

    def processes(self) -> list[int]:
        """Pids of the current Chromium's process tree, browser first (diagnostics and tests)."""
        with self._lock:
            worker = self._worker
        return worker.processes()

    def close(self) -> None:
        """Close the browser (on its own thread) and stop the thread."""
        with self._lock:
            worker, abandoned, self._abandoned = self._worker, self._abandoned, []
        if not worker.stop(timeout=30.0):
            worker.kill()
        for old in abandoned:  # killed already; their threads end once the stuck call has failed
            if not old.stop(timeout=30.0):
                old.kill()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _BrowserThread:
    """A daemon thread that owns one Playwright instance, its browser and context; jobs arrive on a queue."""

    def __init__(self, config: Renderer) -> None:
        self.config = config
        self._queue: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._playwright: Any = None
        self._browser: Any = None
        self._context: Any = None
        self._proxy: GuardedProxy | None = None
        self._marker = f"--gleaner-render={uuid.uuid4().hex}"  # finds this thread's Chromium in /proc
        self._thread = threading.Thread(target=self._run, name="render", daemon=True)
        self._thread.start()

    def submit(self, url: str | None) -> Future[RenderedPage | None]:
        """Render `url` on the browser thread; `None` only makes sure the browser runs."""
        return self.call(self._ensure_browser if url is None else lambda: self._render(url))

    def call(self, job: Callable[[], Any]) -> Future[Any]:
        """Run `job` on the browser thread (the only thread that may touch Playwright's objects)."""
        future: Future[Any] = Future()
        self._queue.put((job, future))
        return future

    def open_tabs(self) -> int:
        """How many tabs the context has open (on the browser thread)."""
        return len(self._context.pages) if self._context is not None else 0

    def processes(self) -> list[int]:
        """Pids of this thread's Chromium process tree."""
        return _process_tree(self._marker)

    def abandon(self) -> None:
        """Stop taking work; the thread closes its browser if the stuck call ever returns."""
        self._drain()
        self._queue.put(None)

    def stop(self, timeout: float) -> bool:
        """Ask the thread to close its browser; whether it finished within `timeout`."""
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def kill(self) -> None:
        """SIGKILL this thread's Chromium and every process under it (renderers, zygotes, GPU process)."""
        for pid in self.processes():
            with contextlib.suppress(OSError):  # gone already
                os.kill(pid, signal.SIGKILL)

    def _drain(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job[1].set_exception(RuntimeError("the browser was restarted"))

    def _run(self) -> None:
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    break
                work, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(work())
                except BaseException as exc:  # never let one page kill the thread
                    future.set_exception(exc)
        finally:
            self._stop()
            self._drain()

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        config = self.config
        self._proxy = GuardedProxy(
            config.guard, idle_timeout=max(config.timeout, 5.0), on_refuse=self._proxy_refused
        ).start()
        if self._playwright is None:
            self._playwright = sync_playwright().start()
        args = [
            *CHROMIUM_ARGS,
            f"--proxy-server={self._proxy.url}",
            "--proxy-bypass-list=<-loopback>",  # loopback goes through the proxy (and its guard) too
            *config.chromium_args,
            self._marker,
        ]
        self._browser = self._playwright.chromium.launch(
            executable_path=config.executable,
            args=args,
            headless=True,
            ignore_default_args=["--disable-popup-blocking"],  # Chromium's own pop-up blocker stays on
        )
        options: dict[str, Any] = {"service_workers": "block", "accept_downloads": False}
        if config.user_agent:
            options["user_agent"] = config.user_agent
        self._context = self._browser.new_context(**options)
        self._context.set_default_timeout(config.timeout * 1000)
        self._context.route("**/*", self._route)
        self._context.route_web_socket("**/*", lambda ws: ws.close())  # no WebSocket reaches any server

    def _proxy_refused(self, target: str, kind: str, reason: str) -> None:
        self.config.blocked.append((target, f"{kind}: {reason}"))

    def _close_proxy(self) -> None:
        if self._proxy is not None:
            self._proxy.close()

    def _stop(self) -> None:
        for closer in (
            lambda: self._context and self._context.close(),
            lambda: self._browser and self._browser.close(),
            lambda: self._playwright and self._playwright.stop(),
            self._close_proxy,
        ):
            try:
                closer()
            except Exception as exc:
                log.debug("browser shutdown step failed: %r", exc)
        self._context = self._browser = self._playwright = self._proxy = None

    def _route(self, route: Any, request: Any) -> None:
        url = request.url
        if not url.startswith(("http://", "https://")):
            route.continue_()
            return
        refusal = self.config.check_url(url)
        if refusal is None:
            route.continue_()
        else:
            self.config.blocked.append((url, f"{refusal[0]}: {refusal[1]}"))
            route.abort("blockedbyclient")

    def _ensure_browser(self) -> None:
        """Start Chromium, or start it again after it died (a crash of the browser, not of one tab)."""
        if self._browser is None or not self._browser.is_connected():
            self._stop()
            try:
                self._start()
            except Exception:
                self._stop()
                raise

    def _render(self, url: str) -> RenderedPage:
        try:
            self._ensure_browser()
        except Exception as exc:
            return RenderedPage(url, url, error_kind="browser", error=f"cannot start Chromium: {_first_line(exc)}")
        return self._visit(url)

    def _visit(self, url: str) -> RenderedPage:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        images: dict[str, None] = {}
        crashed: list[bool] = []

        def on_response(response: Any) -> None:
            try:
                if response.request.resource_type == "image" and 200 <= response.status < 300:
                    images.setdefault(response.url, None)
            except Exception:  # a response of a closing page: nothing to learn from it
                return

        page = None
        refused_before = len(self.config.blocked)
        try:
            page = self._context.new_page()
            page.on("response", on_response)
            page.on("crash", lambda _page: crashed.append(True))
            page.on("popup", _close_quietly)
            response = page.goto(url, wait_until="load", timeout=self.config.timeout * 1000)
            status = response.status if response is not None else None
            refused = response.headers.get(REFUSED_HEADER.lower()) if response is not None else None
            if refused:  # the proxy refused the document (a redirect hop to a guarded address)
                return RenderedPage(url, page.url, status, error_kind=refused, error=_last_reason(self.config))
            if status is not None and status >= 400:
                kind = "http_4xx" if status < 500 else "http_5xx"
                return RenderedPage(url, page.url, status, error_kind=kind, error=f"HTTP {status}")
            final = page.url
            refusal = self.config.check_url(final) if final != url else None
            if refusal is not None:  # a redirect led somewhere the guard refuses
                return RenderedPage(url, final, status, error_kind=refusal[0], error=refusal[1])
            rounds = self._scroll(page)
            return RenderedPage(url, page.url, status, self._query(page, _HTML_JS), list(images), rounds)
        except PlaywrightTimeout as exc:
            return RenderedPage(url, url, error_kind="timeout", error=_first_line(exc))
        except PlaywrightError as exc:
            kind = "crash" if crashed else "render"
            tunnel = "ERR_TUNNEL_CONNECTION_FAILED" in str(exc) and len(self.config.blocked) > refused_before
            if tunnel:  # an https:// hop of the document that the proxy refused
                return RenderedPage(url, url, error_kind="ssrf", error=_last_reason(self.config))
            return RenderedPage(url, url, error_kind=kind, error=_first_line(exc))
        finally:
            self._close_pages()

    def _close_pages(self) -> None:
        """Close every tab of the context: the visited one and any pop-up that got through, including one
        whose creation was still on its way (a round trip to the browser makes it known before the check)."""
        for _ in range(5):
            try:
                pages = list(self._context.pages)
                if not pages:
                    self._context.cookies()  # a round trip: pages opened meanwhile are announced by now
                    pages = list(self._context.pages)
            except Exception as exc:
                log.debug("listing pages failed: %r", exc)
                return
            if not pages:
                return
            for page in pages:
                _close_quietly(page)

    def _query(self, page: Any, script: str) -> Any:
        """Run a script in the page with a timeout: `page.evaluate` has none, and waits for ever on a page
        whose script spins; `wait_for_function` gives up, and the tab can still be closed afterwards."""
        handle = page.wait_for_function(
            f"() => JSON.stringify(({script})())", polling=100, timeout=self.config.timeout * 1000
        )
        return json.loads(handle.json_value())

    def _scroll(self, page: Any) -> int:
        """Scroll to the bottom until neither the number of images nor the page height grows."""
        last = self._query(page, _STATE_JS)
        rounds = 0
        for _ in range(self.config.scroll_rounds):
            self._query(page, _SCROLL_JS)
            rounds += 1
            deadline = time.monotonic() + self.config.settle
            grown = False
            while time.monotonic() < deadline:
                page.wait_for_timeout(100)
                state = self._query(page, _STATE_JS)
                if state != last:
                    last, grown = state, True
                    break
            if not grown:
                break
        return rounds


class FetcherCheck:
    """The fetch layer's rules as a yes/no for the browser: scheme, SSRF guard, robots.txt.

    It carries the fetcher's `guard`, so a Renderer built from it gives its proxy the same guard.
    """

    def __init__(self, fetcher: Fetcher, obey_robots: bool) -> None:
        self.fetcher = fetcher
        self.guard = fetcher.guard
        self.obey_robots = obey_robots

    def __call__(self, url: str) -> tuple[str, str] | None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            return ("invalid_url", f"invalid URL: {url[:200]}")
        if parts.scheme not in ("http", "https") or not host:
            return ("scheme", f"only http and https URLs are fetched: {url[:200]}")
        try:
            self.guard.addresses(host)
        except BlockedAddress as exc:
            return ("ssrf", str(exc))
        except (OSError, UnicodeError, ValueError) as exc:
            return ("connection", f"cannot resolve {host}: {exc}")
        if self.obey_robots and not self.fetcher.allowed_by_robots(url):
            return ("robots", "disallowed by robots.txt")
        return None


def url_check(fetcher: Fetcher, obey_robots: bool) -> FetcherCheck:
    """The check `Renderer` applies to pages and their requests, from `fetcher`'s policy."""
    return FetcherCheck(fetcher, obey_robots)


def _close_quietly(page: Any) -> None:
    try:
        page.close()
    except Exception as exc:  # closed already, or the browser is gone
        log.debug("closing a page failed: %r", exc)


def _last_reason(config: Renderer) -> str:
    return config.blocked[-1][1] if config.blocked else "refused by the SSRF guard"


def _process_tree(marker: str) -> list[int]:
    """Pids of the processes whose command line holds `marker`, and of all their descendants (from /proc)."""
    parents: dict[int, int] = {}
    roots: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: nothing to find, the browser is closed the ordinary way
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        if marker.encode() in cmdline.split(b"\0"):
            roots.append(int(entry.name))
    tree, frontier = list(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree += children
        frontier += children
    return tree


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
