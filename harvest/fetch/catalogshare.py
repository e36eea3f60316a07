"""Politeness shared through the catalog, for workers on several machines (PostgreSQL) or several runs.

A SharedHostLimiter shares one machine's memory; pods of a Kubernetes Indexed Job share only the catalog. So:

- `CatalogHostLimiter`: the per-host request rate (with its burst), robots.txt Crawl-delay and Retry-After
  holds come from the catalog's `hosts` rows (storage.catalog.hosts), which every worker updates under the
  row's lock. A worker reserves a few request times at once (about half a second's worth, at most `batch`)
  instead of one round trip per request; a time it cannot use within `grace` is dropped, never used late, so
  the workers together never exceed the rate. Concurrency caps and failure pauses stay per worker: the
  wrapped local limiter (HostLimiter, or SharedHostLimiter for a worker's processes) keeps them.
- `CatalogRobotsStore`: robots.txt answers per scope (the run) and origin in the catalog: one fetch per origin
  for all the workers, which wait for it; a worker that died while fetching loses its claim after
  `lease_seconds`.

Both pickle without their catalog handle (they are Process arguments of the download pool) and open it again,
lazily, in the process that uses them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from harvest.fetch.ratelimit import HostLimits, LimiterTimeout
from harvest.fetch.robots import SharedAnswer
from storage.catalog import Catalog
from storage.catalog.hosts import RobotsAnswer, claim_robots, hold_host, reserve_slots, save_robots

__all__ = ["CatalogHostLimiter", "CatalogRobotsStore", "LazyCatalog", "SharedPoliteness"]

RESERVE_AHEAD = 0.5  # seconds of the host's rate reserved in one round trip
_POLL_FIRST, _POLL_MAX = 0.05, 0.5  # waiting for another worker's robots.txt fetch


@dataclass(frozen=True)
class SharedPoliteness:
    """Share politeness through this catalog: robots.txt answers within `scope` (the run's workers), request
    times per host with every worker; `owner` names this worker (host:pid:run) in a robots.txt claim."""

    catalog_url: str
    scope: str
    owner: str


class LazyCatalog:
    """A catalog handle opened on first use in this process (not pickled: each process opens its own). The
    limiter and the robots store of one pool share one, so a worker process holds one connection pool."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()

    def get(self) -> Catalog:
        with self._lock:
            if self._catalog is None:
                self._catalog = Catalog(self.url, migrate=False)
            return self._catalog

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"])  # type: ignore[misc]


@dataclass
class _Slots:
    """Request start times this process reserved for one host (its monotonic clock), for one spacing."""

    interval: float
    tolerance: float
    starts: deque[float] = field(default_factory=deque)


class CatalogHostLimiter:
    """HostLimits whose rate, Crawl-delay and Retry-After holds hold across every worker sharing the catalog."""

    def __init__(
        self, catalog: str | LazyCatalog, local: HostLimits, rate: float, burst: int, *, batch: int = 8
    ) -> None:
        self.catalog = catalog if isinstance(catalog, LazyCatalog) else LazyCatalog(catalog)
        self.local = local  # concurrency and failure pauses (built with rate 0: the rate is kept here)
        self.rate = rate
        self.burst = max(1, burst)
        self.batch = max(1, batch)
        self._slots: dict[str, _Slots] = {}
        self._locks: dict[str, threading.Lock] = {}  # one per host: a round trip for one host stalls no other
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_slots"], state["_locks"], state["_lock"] = {}, {}, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _host_lock(self, host: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(host, threading.Lock())

    # -- the HostLimits interface -------------------------------------------------------------------------

    @contextmanager
    def slot(self, host: str, deadline: float, spacing: float = 0.0) -> Iterator[float]:
        """A local request slot, then a start time reserved in the catalog; yields the seconds waited."""
        with self.local.slot(host, deadline) as waited:
            started = time.monotonic()
            start = self._start_time(host, deadline, spacing)
            delay = start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield waited + time.monotonic() - started

    def hold_off(self, host: str, seconds: float) -> None:
        """Start no request to `host`, from any worker, for `seconds` (a Retry-After the host sent)."""
        self.local.hold_off(host, seconds)
        with self._host_lock(host):
            self._slots.pop(host, None)  # times reserved before the hold would start too early
        self.catalog.get().transact(lambda conn: hold_host(conn, host, seconds), what="holding off a host")

    def record(self, host: str, *, ok: bool) -> None:
        self.local.record(host, ok=ok)

    # -- reservations ---------------------------------------------------------------------------------------

    def _spacing(self, spacing: float) -> tuple[float, float]:
        """(interval, tolerance) of GCRA: the rate with its burst, or a Crawl-delay's spacing without one."""
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        if spacing > interval:
            return spacing, 0.0
        return interval, (self.burst - 1) * interval

    def _start_time(self, host: str, deadline: float, spacing: float) -> float:
        """This request's start time on the monotonic clock: a reserved one, else reserve a few more."""
        interval, tolerance = self._spacing(spacing)
        if interval <= 0:
            return time.monotonic()  # no rate and no Crawl-delay: nothing to share
        grace = interval  # a time used later than this would let the workers together exceed the rate
        with self._host_lock(host):
            slots = self._slots.get(host)
            if slots is None or (slots.interval, slots.tolerance) != (interval, tolerance):
                slots = self._slots[host] = _Slots(interval, tolerance)
            now = time.monotonic()
            while slots.starts and slots.starts[0] < now - grace:
                slots.starts.popleft()
            if not slots.starts:
                slots.starts.extend(self._reserve(host, interval, tolerance))
            start = slots.starts.popleft()
            if start > deadline:
                slots.starts.appendleft(start)  # another request with a later deadline may use it
                raise LimiterTimeout(f"{host} may not be asked again before the deadline", "rate_limited")
            return start

    def _reserve(self, host: str, interval: float, tolerance: float) -> list[float]:
        count = min(self.batch, max(1, int(RESERVE_AHEAD / interval)))
        reservation = self.catalog.get().transact(
            lambda conn: reserve_slots(conn, host, count, interval=interval, tolerance=tolerance),
            what="reserving request times",
        )
        offset = time.monotonic() - reservation.clock  # database clock -> this process's monotonic clock
        return [start + offset for start in reservation.starts]


class CatalogRobotsStore:
    """robots.txt answers shared by the workers of one scope (a run) through the catalog."""

    def __init__(self, catalog: str | LazyCatalog, scope: str, owner: str, *, lease_seconds: float = 120.0) -> None:
        self.catalog = catalog if isinstance(catalog, LazyCatalog) else LazyCatalog(catalog)
        self.scope = scope
        self.owner = owner
        self.lease_seconds = lease_seconds  # longer than one robots.txt fetch may take (the item deadline)

    def share(self, origin: str, load: Callable[[], SharedAnswer]) -> SharedAnswer:
        poll = _POLL_FIRST
        while True:
            claim = self.catalog.get().transact(
                lambda conn: claim_robots(conn, self.scope, origin, self.owner, lease_seconds=self.lease_seconds),
                what="sharing robots.txt",
            )
            if claim.action == "done" and claim.answer is not None:
                answer = claim.answer
                valid = float("inf") if answer.expires_in is None else answer.expires_in
                return answer.status, answer.body, valid
            if claim.action == "fetch":
                status, body, valid = load()
                expires_in = None if valid == float("inf") else valid
                save = partial(
                    save_robots, scope=self.scope, origin=origin, answer=RobotsAnswer(status, body, expires_in)
                )
                self.catalog.get().transact(save, what="sharing robots.txt")
                return status, body, valid
            time.sleep(poll)  # another worker is fetching it
            poll = min(2 * poll, _POLL_MAX)
