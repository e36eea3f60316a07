"""Rendered pages: Playwright with the system Chromium, for pages whose images only appear through JavaScript.

Playwright's sync API must be driven from the thread that started it, so one private thread owns the
browser and every `render()` call (from any crawler thread) is handed to it. The browser and its context
are started once and reused; each page gets a fresh tab that is closed afterwards. Requests the page makes
go through route interception, so the SSRF guard and robots.txt apply to sub-resources as they do to the
crawler's own fetches. A page that times out or crashes becomes an error result, never an exception; a
browser that died is started again for the next page.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from harvest.fetch.client import Fetcher
from harvest.fetch.ssrf import BlockedAddress

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "RenderedPage", "Renderer", "UrlCheck", "url_check"]

log = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
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
    ) -> None:
        self.check_url = check_url
        self.user_agent = user_agent
        self.scroll_rounds = max(0, scroll_rounds)
        self.timeout = timeout
        self.settle = settle
        self.executable = executable
        self.deadline = deadline or 2 * timeout + self.scroll_rounds * (settle + 2.0) + 10.0
        self.blocked: list[tuple[str, str]] = []  # sub-resource requests refused by the guard: (url, reason)
        self._lock = threading.Lock()
        self._worker = _BrowserThread(self)

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
                    self._worker = _BrowserThread(self)
            message = f"page did not settle within {self.deadline:.0f}s"
            return RenderedPage(url, url, error_kind="timeout", error=message)
        except Exception as exc:  # the worker stopped under this call (closing, or abandoned)
            return RenderedPage(url, url, error_kind="browser", error=_first_line(exc))
        return page if page is not None else RenderedPage(url, url, error_kind="browser", error="no result")

    def close(self) -> None:
        """Close the browser (on its own thread) and stop the thread."""
        with self._lock:
            worker = self._worker
        worker.stop(timeout=30.0)

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _BrowserThread:
    """A daemon thread that owns one Playwright instance, its browser and context; jobs arrive on a queue."""

    def __init__(self, config: Renderer) -> None:
        self.config = config
        self._queue: queue.Queue[tuple[str | None, Future[RenderedPage | None]] | None] = queue.Queue()
        self._playwright: Any = None
        self._browser: Any = None
        self._context: Any = None
        self._thread = threading.Thread(target=self._run, name="render", daemon=True)
        self._thread.start()

    def submit(self, url: str | None) -> Future[RenderedPage | None]:
        """Render `url` on the browser thread; `None` only makes sure the browser runs."""
        future: Future[RenderedPage | None] = Future()
        self._queue.put((url, future))
        return future

    def abandon(self) -> None:
        """Stop taking work; the thread closes its browser if the stuck call ever returns."""
        self._drain()
        self._queue.put(None)

    def stop(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

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
                url, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    if url is None:
                        self._ensure_browser()
                        future.set_result(None)
                    else:
                        future.set_result(self._render(url))
                except BaseException as exc:  # never let one page kill the thread
                    future.set_exception(exc)
        finally:
            self._stop()
            self._drain()

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        if self._playwright is None:
            self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=self.config.executable, args=list(CHROMIUM_ARGS), headless=True
        )
        options: dict[str, Any] = {"service_workers": "block", "accept_downloads": False}
        if self.config.user_agent:
            options["user_agent"] = self.config.user_agent
        self._context = self._browser.new_context(**options)
        self._context.set_default_timeout(self.config.timeout * 1000)
        self._context.route("**/*", self._route)

    def _stop(self) -> None:
        for closer in (
            lambda: self._context and self._context.close(),
            lambda: self._browser and self._browser.close(),
            lambda: self._playwright and self._playwright.stop(),
        ):
            try:
                closer()
            except Exception as exc:
                log.debug("browser shutdown step failed: %r", exc)
        self._context = self._browser = self._playwright = None

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
        try:
            page = self._context.new_page()
            page.on("response", on_response)
            page.on("crash", lambda _page: crashed.append(True))
            response = page.goto(url, wait_until="load", timeout=self.config.timeout * 1000)
            status = response.status if response is not None else None
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
            return RenderedPage(url, url, error_kind=kind, error=_first_line(exc))
        finally:
            if page is not None:
                try:
                    page.close()
                except Exception as exc:
                    log.debug("closing a page failed: %r", exc)

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


def url_check(fetcher: Fetcher, obey_robots: bool) -> UrlCheck:
    """The fetch layer's rules as a yes/no for the browser: scheme, SSRF guard, robots.txt."""

    def check(url: str) -> tuple[str, str] | None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            return ("invalid_url", f"invalid URL: {url[:200]}")
        if parts.scheme not in ("http", "https") or not host:
            return ("scheme", f"only http and https URLs are fetched: {url[:200]}")
        try:
            fetcher.guard.addresses(host)
        except BlockedAddress as exc:
            return ("ssrf", str(exc))
        except (OSError, UnicodeError, ValueError) as exc:
            return ("connection", f"cannot resolve {host}: {exc}")
        if obey_robots and not fetcher.allowed_by_robots(url):
            return ("robots", "disallowed by robots.txt")
        return None

    return check


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
