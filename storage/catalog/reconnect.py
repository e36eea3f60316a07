"""Riding over a restart of the PostgreSQL catalog server (a restart, a fail-over, a cut network).

Two parts, because a restart breaks two things:

- New connections: `pool_pre_ping` replaces a pooled connection the restart cut, but for the second or so a
  restart takes the new one is refused, or told "the database system is shutting down / starting up".
  `wait_for_restarts(engine)` makes new connections to a server the engine has reached before wait for it (up
  to `RECONNECT_S` in all, shared by every connection of the engine); a server never reached (a wrong host,
  port or database) still fails at the first attempt.
- Transactions in flight: the server rolls them back and cuts their connections. SQLAlchemy cannot carry a
  transaction over to a new connection, so the unit of work that opened it runs again: `retrying(unit)`, or
  `Catalog.transact(work)` for one transaction. A unit must be safe to run again: everything it changes is in
  the transactions it opens (or is put back by `on_retry`). A connection lost at COMMIT leaves it unknown
  whether the commit was applied, so a unit must also be idempotent (upserts, claims by owner, marks by URL),
  as the catalog's write functions mostly are. Where one is not (a run's budget reservation), the rare commit
  lost in flight can leave that count off by what its one transaction did; images are never lost or doubled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError

from storage.errors import GleanerError

__all__ = ["RECONNECT_S", "RETRIES", "is_disconnect", "retrying", "wait_for_restarts"]

log = logging.getLogger(__name__)

RECONNECT_S = 60.0  # how long new connections wait, in all, for a server the engine reached before
RETRIES = 5  # how many times a unit of work runs again after a lost connection, in a row, before it fails

T = TypeVar("T")


def is_disconnect(exc: BaseException) -> bool:
    """The catalog server's connection was lost (SQLAlchemy invalidated it, and the pool's older ones)."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def retrying(unit: Callable[[], T], *, on_retry: Callable[[], None] | None = None, what: str = "catalog work") -> T:
    """Run `unit` (whole transactions, safe to run again: see the module's docstring) and run it again when the
    connection to the server was lost in the middle, up to RETRIES times in a row; then fail with one clear
    GleanerError. `on_retry` resets in-memory state the failed attempt may have changed. New connections wait
    for the server themselves (wait_for_restarts), so no sleep is needed here beyond a short pause."""
    attempt = 0
    while True:
        try:
            return unit()
        except DBAPIError as exc:
            if not is_disconnect(exc):
                raise
            attempt += 1
            if attempt > RETRIES:
                first = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
                raise GleanerError(
                    f"lost the connection to the catalog {attempt} times in a row ({what}): {first}"
                ) from exc
            log.warning(
                "lost the connection to the catalog during %s; running it again (%d/%d)", what, attempt, RETRIES
            )
            if on_retry is not None:
                on_retry()
            time.sleep(0.05 * attempt)


def wait_for_restarts(engine: Engine, wait_s: float = RECONNECT_S) -> None:
    """New connections of `engine` to a server it has reached before wait for the server, for up to `wait_s`
    since the first refusal (shared by every connection of the engine, so that once the server has been gone
    that long each new connection fails at once instead of every one waiting the whole time again)."""
    reached = threading.Event()
    lock = threading.Lock()
    outage: dict[str, float] = {}  # "since": the first refusal of the outage in progress, "last": the latest

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        delay = 0.05
        while True:
            try:
                connection = dialect.loaded_dbapi.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                if not reached.is_set():
                    raise
                now = time.monotonic()
                with lock:
                    first = "since" not in outage or now - outage["last"] > wait_s
                    if first:
                        outage["since"] = now
                    outage["last"] = now
                    left = outage["since"] + wait_s - now
                if left <= 0:
                    raise
                level = logging.WARNING if first else logging.DEBUG  # one line per outage, not per attempt
                log.log(level, "catalog server unreachable, waiting up to %.0f s: %s", left, str(exc).splitlines()[0])
                time.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
                continue
            reached.set()
            if outage:
                with lock:
                    outage.clear()
            return connection
