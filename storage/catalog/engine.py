"""Database engines: SQLite tuned for several writing processes, or PostgreSQL by URL."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from storage.catalog.reconnect import wait_for_restarts
from storage.errors import GleanerError

__all__ = ["BUSY_TIMEOUT_MS", "make_engine"]

BUSY_TIMEOUT_MS = 60_000


def make_engine(url: str) -> Engine:
    """An engine for `sqlite:///path` or `postgresql://...`; other SQLAlchemy URLs pass through."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise GleanerError(f"invalid catalog URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, pool_pre_ping=True, future=True)
    wait_for_restarts(engine)  # a restart of the server is waited out, not fatal (storage.catalog.reconnect)
    return engine


def _sqlite_engine(url: Any) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself below; the driver must not start transactions on its own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        with suppress(Exception):  # a read-only or shared file keeps its mode
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Writers take the lock up front (BEGIN IMMEDIATE): a deferred transaction that upgrades from
        # read to write fails at once with "database is locked" instead of waiting for the busy timeout.
        mode = "IMMEDIATE" if conn.get_execution_options().get("gleaner_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
