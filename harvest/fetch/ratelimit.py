"""Per-host politeness: a token bucket for the request rate, a cap on concurrent requests, pauses.

A host that answers 429/503 with Retry-After pauses every thread's requests to it, not only the one
that was told; a host that keeps failing to connect is skipped for a while instead of tying up workers
until each item's deadline (the "hangs at the tail" complaint).

The worker processes of one machine share these limits through harvest.fetch.sharedlimit; workers on several
machines share the rate, Crawl-delay and Retry-After holds through the catalog (harvest.fetch.catalogshare).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["HostLimiter", "HostLimits", "HostPaused", "LimiterTimeout", "take_token"]


class LimiterTimeout(Exception):
    """No slot or token became free before the item's deadline; `kind` says which fetch error it is."""

    def __init__(self, message: str, kind: str = "timeout") -> None:
        super().__init__(message)
        self.kind = kind


class HostPaused(Exception):
    """The host failed too often in a row; its items fail fast until the pause ends."""


class HostLimits(Protocol):
    """What the Fetcher needs of a limiter: HostLimiter (threads of one process) or SharedHostLimiter."""

    def slot(self, host: str, deadline: float, spacing: float = 0.0) -> AbstractContextManager[float]: ...
    def hold_off(self, host: str, seconds: float) -> None: ...
    def record(self, host: str, *, ok: bool) -> None: ...


def take_token(
    tokens: float, updated: float, not_before: float, now: float, deadline: float, *, rate: float, burst: int, host: str
) -> tuple[float, float]:
    """The token-bucket step shared by the thread and process limiters: (start time, tokens left).

    The token is reserved at once (the bucket may go negative), so requests waiting for one queue up in
    order. Raises LimiterTimeout when the request could not start before `deadline`.
    """
    start = max(now, not_before)
    if rate > 0:
        tokens = min(float(burst), tokens + (now - updated) * rate)
        if tokens < 1.0:
            start = max(start, now + (1.0 - tokens) / rate)
    if start > deadline:
        kind = "rate_limited" if not_before > now else "timeout"
        raise LimiterTimeout(f"{host} may not be asked again before the deadline", kind)
    return start, tokens - 1.0 if rate > 0 else tokens


@dataclass
class _Host:
    tokens: float
    updated: float
    active: int = 0
    not_before: float = 0.0  # monotonic time before which no request starts (Retry-After)
    failures: int = 0
    paused_until: float = 0.0
    cond: threading.Condition = field(default_factory=threading.Condition)


class HostLimiter:
    """Token bucket (`rate` per second, `burst` deep) and at most `concurrency` requests per host.

    `rate <= 0` means no rate limit. Time spent waiting here is returned so that callers can keep
    politeness waits out of an item's network deadline.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        concurrency: int,
        *,
        failure_limit: int = 0,
        pause: float = 30.0,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.concurrency = max(1, concurrency)
        self.failure_limit = failure_limit
        self.pause = pause
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()

    def _host(self, host: str) -> _Host:
        with self._lock:
            state = self._hosts.get(host)
            if state is None:
                state = self._hosts[host] = _Host(tokens=float(self.burst), updated=time.monotonic())
            return state

    @contextmanager
    def slot(self, host: str, deadline: float, spacing: float = 0.0) -> Iterator[float]:
        """Hold one of the host's request slots; yields the seconds spent waiting for it. `spacing`: the next
        request to the host starts at least this many seconds after this one (robots.txt Crawl-delay)."""
        state = self._host(host)
        started = time.monotonic()
        with state.cond:
            if state.paused_until > started:
                raise HostPaused(f"{host} failed {self.failure_limit} times in a row; skipped for now")
            while state.active >= self.concurrency:
                remaining = deadline - time.monotonic()
                if (remaining <= 0 or not state.cond.wait(remaining)) and state.active >= self.concurrency:
                    raise LimiterTimeout(f"no free connection slot for {host} before the deadline")
            state.active += 1
        try:
            self._take_token(state, host, deadline, spacing)
            yield time.monotonic() - started
        finally:
            with state.cond:
                state.active -= 1
                state.cond.notify()

    def _take_token(self, state: _Host, host: str, deadline: float, spacing: float = 0.0) -> None:
        with state.cond:
            now = time.monotonic()
            start, state.tokens = take_token(
                state.tokens,
                state.updated,
                state.not_before,
                now,
                deadline,
                rate=self.rate,
                burst=self.burst,
                host=host,
            )
            state.updated = now
            if spacing > 0:
                state.not_before = max(state.not_before, start + spacing)
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def hold_off(self, host: str, seconds: float) -> None:
        """Start no request to `host` for `seconds` (a Retry-After the host sent)."""
        state = self._host(host)
        with state.cond:
            state.not_before = max(state.not_before, time.monotonic() + seconds)

    def record(self, host: str, *, ok: bool) -> None:
        """Count connection failures in a row; pause the host when there are too many."""
        if self.failure_limit <= 0:
            return
        state = self._host(host)
        with state.cond:
            if ok:
                state.failures = 0
                return
            state.failures += 1
            if state.failures >= self.failure_limit:
                state.paused_until = time.monotonic() + self.pause
                state.failures = 0
