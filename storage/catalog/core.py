"""The Catalog: one engine, migrated on open, with explicit read and write transactions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, text

from storage.catalog.engine import make_engine
from storage.catalog.migrations import upgrade
from storage.catalog.reconnect import retrying
from storage.errors import GleanerError
from storage.interrupts import held_interrupts

__all__ = ["Catalog"]

T = TypeVar("T")

_MIGRATION_LOCK = 0x676C65616E6572  # "gleaner": serialises migrations of PostgreSQL catalogs


class Catalog:
    """Thread-safe handle on the catalog database. Use `write()` for every change."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            try:
                with self.write() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                    upgrade(conn)
            except GleanerError:
                raise
            except Exception as exc:
                raise GleanerError(f"cannot open catalog {_redact(url)}: {exc}") from exc

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock at BEGIN (waits, never fails fast). Ctrl-C and
        SIGTERM wait for its end (storage.interrupts): one raised inside it could leave the lock held. Waiting
        for a connection (a PostgreSQL restart) stays interruptible."""
        with self.engine.connect().execution_options(gleaner_write=True) as conn, held_interrupts(), conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot on both SQLite WAL and PostgreSQL)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def transact(
        self,
        work: Callable[[Connection], T],
        *,
        write: bool = True,
        on_retry: Callable[[], None] | None = None,
        what: str = "catalog work",
    ) -> T:
        """`work(conn)` in one write (or read) transaction, run again on a new connection when the connection to
        the server was lost in the middle (a PostgreSQL restart: storage.catalog.reconnect). `work` must be safe
        to run again: it changes nothing but the catalog, and the same way twice (the catalog's functions), or
        `on_retry` puts back what else it changed."""

        def once() -> T:
            with self.write() if write else self.read() as conn:
                return work(conn)

        return retrying(once, on_retry=on_retry, what=what)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _redact(url: str) -> str:
    """Hide a password in a database URL before it reaches a message."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<catalog>"
