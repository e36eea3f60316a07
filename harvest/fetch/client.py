"""The Fetcher: one polite, bounded, SSRF-guarded GET of a page or an image, as a FetchResult.

Every step that can go wrong on the network ends in a FetchResult with an `error_kind`, never an
exception, so collectors can count failures by kind and mark their frontier rows. Order per hop:
scheme → SSRF (resolve through the cache) → robots.txt → per-host slot and token → GET (no automatic
redirects) → status → X-Robots-Tag → Content-Type → streamed body with size, deadline and sniffing.
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from harvest.fetch.connection import GuardedAdapter
from harvest.fetch.content import (
    PAGE_MAX_BYTES,
    SNIFF_BYTES,
    image_type_ok,
    noai_directive,
    sniff_image,
    sniff_non_image,
)
from harvest.fetch.deadline import Watchdog
from harvest.fetch.policy import FetchPolicy
from harvest.fetch.ratelimit import HostLimiter, HostLimits, HostPaused, LimiterTimeout
from harvest.fetch.robots import RobotsCache, RobotsStore
from harvest.fetch.ssrf import AddressGuard, BlockedAddress, Resolver

__all__ = ["ERROR_KINDS", "FetchKind", "FetchResult", "Fetcher", "parse_retry_after"]

logger = logging.getLogger(__name__)

FetchKind = Literal["page", "image"]
ERROR_KINDS = (
    "robots",
    "ssrf",
    "scheme",
    "invalid_url",
    "timeout",
    "too_large",
    "http_4xx",
    "http_5xx",
    "http_other",
    "rate_limited",
    "connection",
    "content_type",
    "noai",
    "redirect_loop",
)
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_CRAWL_DELAY = 10.0  # seconds: a larger robots.txt Crawl-delay is cut to this (one host cannot stall a run)
_ACCEPT = {
    "image": "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8,*/*;q=0.5",
    "page": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "robots": "text/plain,*/*;q=0.5",
}
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchResult:
    """What one fetch produced: the body, or why there is none (`error_kind` is one of ERROR_KINDS)."""

    url: str
    final_url: str
    status: int | None
    content_type: str | None
    data: bytes | None
    error: str | None
    error_kind: str | None
    fetched_at: datetime
    elapsed: float
    attempts: int
    headers: Mapping[str, str] = field(default_factory=dict)  # response headers of the final hop

    @property
    def ok(self) -> bool:
        return self.error is None and self.data is not None


class FetchError(Exception):
    """A fetch failed for a reason with a kind; `status` is the HTTP status when there was one."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


class _Retryable(Exception):
    def __init__(self, error: FetchError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Redirect:
    location: str
    status: int


@dataclass(frozen=True)
class _Body:
    status: int
    content_type: str | None
    data: bytes
    headers: Mapping[str, str]


@dataclass
class _Clock:
    """The item's network deadline; time spent queueing politely for a host is added back."""

    budget: float
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.deadline = self.started + self.budget

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def extend(self, seconds: float) -> None:
        self.deadline += max(0.0, seconds)


@dataclass
class _Trace:
    final_url: str
    attempts: int = 0
    status: int | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _host_key(url: str) -> str:
    return urlsplit(url).netloc.lower()


def _watched_pools(manager: Any, watchdog: Watchdog) -> None:
    """Make every connection a pool hands out known to the watchdog (the one place a request's connection
    shows itself before the status line and headers are read)."""

    def watched(pool_class: type) -> type:
        class WatchedPool(pool_class):
            def _get_conn(self, timeout: float | None = None) -> Any:
                connection = super()._get_conn(timeout)
                watchdog.attach(connection)
                return connection

        return WatchedPool

    manager.pool_classes_by_scheme = {
        scheme: watched(pool_class) for scheme, pool_class in manager.pool_classes_by_scheme.items()
    }


def _socket_of(response: requests.Response) -> socket.socket | None:
    connection = getattr(response.raw, "connection", None)
    return getattr(connection, "sock", None)


class Fetcher:
    """Thread-safe fetcher; each worker thread gets its own pooled requests.Session.

    `resolver` replaces the DNS cache (tests point names at chosen addresses with `Resolver(overrides=...)`).
    Fetchers in several processes share one politeness budget when given the same `limiter`
    (a SharedHostLimiter) and `robots_dir` (see harvest.download); fetchers on several machines, a
    CatalogHostLimiter and `robots_store` (harvest.fetch.catalogshare).
    """

    def __init__(
        self,
        policy: FetchPolicy = FetchPolicy(),
        *,
        resolver: Resolver | None = None,
        limiter: HostLimits | None = None,
        robots_dir: Path | None = None,
        robots_store: RobotsStore | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver or Resolver(ttl=policy.dns_ttl)
        self.guard = AddressGuard(
            self.resolver, allow_private=policy.allow_private, allow_networks=policy.allow_networks
        )
        self.limiter: HostLimits = limiter or HostLimiter(
            policy.per_host_rate,
            policy.per_host_burst,
            policy.per_host_concurrency,
            failure_limit=policy.host_failure_limit,
            pause=policy.host_pause,
        )
        self.robots = RobotsCache(self._fetch_robots, policy.user_agent, shared_dir=robots_dir, store=robots_store)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()  # set by close(): fetches in progress stop at their next step
        self._watchdog = Watchdog()  # cuts a request off at the item deadline, headers included

    # -- public API -------------------------------------------------------------------------------------

    def fetch(self, url: str, *, kind: FetchKind, referer: str | None = None) -> FetchResult:
        """GET `url` within the policy; network and HTTP problems come back as an error result."""
        clock = _Clock(self.policy.item_deadline)
        trace = _Trace(final_url=url)
        if self._closed.is_set():
            return self._result(url, trace, clock, error=FetchError("connection", "the fetcher is closed"))
        try:
            body = self._follow(url, kind, referer, clock, trace, check_robots=self.policy.obey_robots)
        except FetchError as exc:
            return self._result(url, trace, clock, error=exc)
        except Exception as exc:  # a bug or an exotic library error must not stop a whole crawl
            logger.warning("unexpected error fetching %s", url, exc_info=True)
            return self._result(url, trace, clock, error=FetchError("connection", f"{type(exc).__name__}: {exc}"))
        return FetchResult(
            url=url,
            final_url=trace.final_url,
            status=body.status,
            content_type=body.content_type,
            data=body.data,
            error=None,
            error_kind=None,
            fetched_at=datetime.now(UTC),
            elapsed=time.monotonic() - clock.started,
            attempts=trace.attempts,
            headers=dict(body.headers),
        )

    def allowed_by_robots(self, url: str) -> bool:
        """Whether robots.txt lets this user agent fetch `url` (always True with obey_robots off)."""
        if not self.policy.obey_robots:
            return True
        if urlsplit(url).scheme not in ("http", "https"):
            return False
        return self.robots.allowed(url)

    def close(self) -> None:
        """Close the sessions; fetches still running give up at their next chunk or retry (Ctrl-C exits fast),
        and later fetches fail at once."""
        self._closed.set()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._watchdog.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- steps --------------------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxies from the environment: the guard must see the real address
            adapter = GuardedAdapter(self.guard, pool_connections=64, pool_maxsize=4)
            _watched_pools(adapter.poolmanager, self._watchdog)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = self.policy.user_agent
            if self.policy.ca_bundle:
                session.verify = self.policy.ca_bundle
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _result(self, url: str, trace: _Trace, clock: _Clock, *, error: FetchError) -> FetchResult:
        return FetchResult(
            url=url,
            final_url=trace.final_url,
            status=error.status if error.status is not None else trace.status,
            content_type=trace.content_type,
            data=None,
            error=error.message,
            error_kind=error.kind,
            fetched_at=datetime.now(UTC),
            elapsed=time.monotonic() - clock.started,
            attempts=trace.attempts,
            headers=dict(trace.headers),
        )

    def _follow(
        self,
        url: str,
        kind: str,
        referer: str | None,
        clock: _Clock,
        trace: _Trace,
        *,
        check_robots: bool,
        max_bytes: int | None = None,
    ) -> _Body:
        """Redirects by hand, so that every hop passes the scheme, SSRF and robots checks again."""
        current = url
        seen = {url}
        for _hop in range(self.policy.max_redirects + 1):
            trace.final_url = current
            self._admit(current, clock, check_robots=check_robots)
            outcome = self._with_retries(current, kind, referer, clock, trace, max_bytes=max_bytes)
            if isinstance(outcome, _Body):
                return outcome
            if outcome.location in seen:
                raise FetchError("redirect_loop", f"redirect loop: {current} → {outcome.location}", outcome.status)
            seen.add(outcome.location)
            current = outcome.location
        raise FetchError("redirect_loop", f"more than {self.policy.max_redirects} redirects", trace.status)

    def _admit(self, url: str, clock: _Clock, *, check_robots: bool) -> None:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise FetchError("invalid_url", f"invalid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise FetchError("scheme", f"only http and https URLs are fetched, not {parts.scheme or 'no scheme'}:")
        if not parts.hostname:
            raise FetchError("invalid_url", "URL without a host")
        try:
            self.guard.addresses(parts.hostname)
        except BlockedAddress as exc:
            raise FetchError("ssrf", str(exc)) from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise FetchError("connection", f"cannot resolve {parts.hostname}: {exc}") from None
        if check_robots:
            started = time.monotonic()
            rules, path = self.robots.rules_for_url(url)
            clock.extend(time.monotonic() - started)  # the one-off robots fetch is not this item's fault
            origin = f"{parts.scheme}://{parts.netloc}"
            if rules.unavailable:  # RFC 9309: do not crawl; a retryable failure, not a final refusal
                raise FetchError(rules.unavailable, f"{origin}/robots.txt {rules.note}: not fetching until it answers")
            if not rules.allowed(path):
                raise FetchError("robots", f"disallowed by {origin}/robots.txt")

    def _with_retries(
        self, url: str, kind: str, referer: str | None, clock: _Clock, trace: _Trace, *, max_bytes: int | None
    ) -> _Body | _Redirect:
        """Retry 429/5xx/connection errors: Retry-After when given, else exponential backoff with jitter."""
        host = _host_key(url)
        retry = 0
        while True:
            trace.attempts += 1
            try:
                return self._attempt(url, kind, referer, clock, trace, host, max_bytes=max_bytes)
            except _Retryable as exc:
                error = exc.error
                if retry >= self.policy.retries:
                    raise error from None
                if exc.retry_after is not None:
                    wait = exc.retry_after
                    self.limiter.hold_off(host, wait)
                else:
                    step = min(self.policy.backoff_max, self.policy.backoff_base * 2**retry)
                    wait = step / 2 + random.uniform(0, step / 2)
                if wait >= clock.remaining() or self._closed.is_set():
                    raise FetchError(
                        error.kind,
                        f"{error.message}; gave up: waiting {wait:.1f} s would pass the item deadline",
                        error.status,
                    ) from None
                time.sleep(wait)
                retry += 1

    def _crawl_delay(self, url: str, kind: str) -> float:
        """The robots.txt Crawl-delay of the URL's host (at most MAX_CRAWL_DELAY), 0 for none."""
        if kind == "robots" or not self.policy.obey_robots:  # (the robots.txt fetch itself: no recursion)
            return 0.0
        delay = self.robots.rules_for_url(url)[0].crawl_delay
        return min(delay, MAX_CRAWL_DELAY) if delay and delay > 0 else 0.0

    def _attempt(
        self,
        url: str,
        kind: str,
        referer: str | None,
        clock: _Clock,
        trace: _Trace,
        host: str,
        *,
        max_bytes: int | None,
    ) -> _Body | _Redirect:
        policy = self.policy
        headers = {"Accept": _ACCEPT.get(kind, "*/*")}
        if referer:
            headers["Referer"] = referer
        try:
            spacing = self._crawl_delay(url, kind)
            with self.limiter.slot(host, time.monotonic() + policy.item_deadline, spacing) as waited:
                clock.extend(waited)
                remaining = clock.remaining()
                if remaining <= 0:
                    raise FetchError("timeout", f"no answer within the {policy.item_deadline:g}-s item deadline")
                timeout = (min(policy.connect_timeout, remaining), min(policy.read_timeout, remaining))
                with self._watchdog.watch(time.monotonic() + remaining) as watch:
                    try:
                        response = self._session().get(
                            url, headers=headers, stream=True, allow_redirects=False, timeout=timeout
                        )
                        try:
                            outcome = self._handle(response, url, kind, clock, trace, max_bytes=max_bytes)
                        finally:
                            response.close()
                    except (FetchError, _Retryable):
                        raise
                    except Exception:
                        if watch.fired:  # the watchdog cut the connection: that is the deadline, not the server
                            raise FetchError(
                                "timeout",
                                f"no complete answer within the {policy.item_deadline:g}-s item deadline",
                                trace.status,
                            ) from None
                        raise
            self.limiter.record(host, ok=True)
            return outcome
        except HostPaused as exc:
            raise FetchError("connection", str(exc)) from None
        except LimiterTimeout as exc:
            raise FetchError(exc.kind, str(exc)) from None
        except BlockedAddress as exc:
            raise FetchError("ssrf", str(exc)) from None
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError) as exc:
            self.limiter.record(host, ok=False)
            raise _Retryable(FetchError("timeout", f"timed out: {_short(exc)}")) from None
        except requests.exceptions.SSLError as exc:
            raise FetchError("connection", f"TLS error: {_short(exc)}") from None
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.NewConnectionError,
            ConnectionError,
        ) as exc:
            self.limiter.record(host, ok=False)
            raise _Retryable(FetchError("connection", _short(exc))) from None
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            urllib3.exceptions.LocationValueError,
        ) as exc:
            raise FetchError("invalid_url", _short(exc)) from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise FetchError("connection", _short(exc)) from None

    def _handle(
        self,
        response: requests.Response,
        url: str,
        kind: str,
        clock: _Clock,
        trace: _Trace,
        *,
        max_bytes: int | None,
    ) -> _Body | _Redirect:
        status = response.status_code
        headers = response.headers
        content_type = headers.get("Content-Type")
        trace.status, trace.content_type, trace.headers = status, content_type, headers
        describe = f"HTTP {status} {response.reason or ''}".strip()
        if status in _REDIRECTS:
            location = headers.get("Location")
            if not location:
                raise FetchError("http_other", f"{describe} without a Location header", status)
            return _Redirect(urljoin(url, location.strip()), status)
        if status == 429 or status == 408 or status >= 500:
            retry_after = parse_retry_after(headers.get("Retry-After")) if status in (429, 503) else None
            error_kind = "rate_limited" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"
            raise _Retryable(FetchError(error_kind, describe, status), retry_after)
        if status >= 400:
            raise FetchError("http_4xx", describe, status)
        if not 200 <= status < 300:
            raise FetchError("http_other", describe, status)
        if self.policy.respect_noai and kind != "robots":
            directive = noai_directive([headers.get("X-Robots-Tag", "")], self.policy.user_agent)
            if directive:
                raise FetchError("noai", f"X-Robots-Tag: {directive}", status)
        if kind == "image" and not image_type_ok(content_type):
            raise FetchError("content_type", f"Content-Type {content_type} is not an image", status)
        limit = max_bytes if max_bytes is not None else self.policy.max_bytes
        if kind == "page":
            limit = min(limit, PAGE_MAX_BYTES)
        declared = headers.get("Content-Length", "")
        if max_bytes is None and declared.isdigit() and int(declared) > limit:
            raise FetchError("too_large", f"Content-Length {int(declared):,} is over the {limit:,}-byte limit", status)
        data = self._read_body(response, clock, limit, sniff=kind == "image", truncate=max_bytes is not None)
        return _Body(status, content_type, data, headers)

    def _read_body(
        self, response: requests.Response, clock: _Clock, limit: int, *, sniff: bool, truncate: bool
    ) -> bytes:
        """Stream the body: stop at once past the size limit, the deadline, or a head that is no image."""
        status = response.status_code
        raw = response.raw
        sock = _socket_of(response)
        chunks: list[bytes] = []
        total = 0
        checked = not sniff
        while True:
            remaining = clock.remaining()
            if self._closed.is_set():
                raise FetchError("connection", "the fetcher was closed while reading", status)
            if remaining <= 0:
                raise FetchError(
                    "timeout",
                    f"body incomplete at the {self.policy.item_deadline:g}-s item deadline ({total:,} bytes read)",
                    status,
                )
            if sock is not None:
                sock.settimeout(max(0.001, min(self.policy.read_timeout, remaining)))
            chunk = raw.read1(_CHUNK, decode_content=True)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                if truncate:
                    chunks.append(chunk[: len(chunk) - (total - limit)])
                    break
                raise FetchError("too_large", f"body over the {limit:,}-byte limit", status)
            chunks.append(chunk)
            if not checked and total >= SNIFF_BYTES:
                _check_sniff(b"".join(chunks)[:SNIFF_BYTES], status)
                checked = True
        data = b"".join(chunks)
        if not checked:
            _check_sniff(data[:SNIFF_BYTES], status)
        return data

    def _fetch_robots(self, robots_url: str) -> tuple[int | None, bytes | None]:
        """One robots.txt fetch for RobotsCache: (status, body); (None, None) when unreachable."""
        clock = _Clock(self.policy.item_deadline)
        trace = _Trace(final_url=robots_url)
        try:
            body = self._follow(
                robots_url, "robots", None, clock, trace, check_robots=False, max_bytes=self.policy.robots_max_bytes
            )
        except FetchError as exc:
            logger.info("robots.txt %s: %s: %s", robots_url, exc.kind, exc.message)
            return exc.status, None
        return body.status, body.data


def _check_sniff(head: bytes, status: int) -> None:
    if not head:
        raise FetchError("content_type", "empty body", status)
    if sniff_image(head) is None:
        raise FetchError("content_type", f"body is {sniff_non_image(head)}, not an image", status)


def _incomplete_read(exc: BaseException) -> http.client.IncompleteRead | None:
    """The IncompleteRead inside a urllib3/requests exception (its arguments, causes and contexts), if any."""
    seen: list[BaseException] = [exc]
    for current in seen:
        if isinstance(current, http.client.IncompleteRead):
            return current
        if len(seen) < 16:
            seen.extend(arg for arg in (*current.args, current.__cause__, current.__context__)
                        if isinstance(arg, BaseException) and arg not in seen)  # fmt: skip
    return None


def _short(exc: BaseException) -> str:
    """The innermost useful message of a requests/urllib3 exception chain, on one line. A body cut short of its
    Content-Length (a server that announced more than it sent) says so in words, not as a nested repr."""
    cut = _incomplete_read(exc)
    if cut is not None:
        read = len(cut.partial) if isinstance(cut.partial, bytes | bytearray) else int(cut.partial)
        missing = f"{cut.expected:,} bytes" if isinstance(cut.expected, int) else "bytes"
        return f"the connection closed {missing} short of the announced Content-Length ({read:,} bytes read)"
    text = str(exc) or type(exc).__name__
    if "Caused by" in text:
        text = text.split("Caused by", 1)[1].strip(" ()")
    return " ".join(text.split())[:300]
