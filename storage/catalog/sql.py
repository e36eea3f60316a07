"""Small dialect-aware SQL helpers shared by the catalog modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table

__all__ = ["dialect_insert", "insert_ignore", "now", "signed64", "unsigned64"]


def now() -> datetime:
    return datetime.now(UTC)


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT (SQLite's or PostgreSQL's), which has ON CONFLICT clauses. Typed Any: the two
    dialects' Insert classes share those methods but no base class that declares them."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    raise NotImplementedError(f"catalog on {dialect} is not supported")  # pragma: no cover


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any], keys: list[str]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when a row was inserted. Safe under concurrent writers."""
    statement = dialect_insert(conn, table).values(**values).on_conflict_do_nothing(index_elements=keys)
    # psycopg reports rowcount -1 for INSERTs unless SQLAlchemy is asked to keep it
    return bool(conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount == 1)


def signed64(value: int) -> int:
    """Store an unsigned 64-bit hash in a signed BIGINT column."""
    return value - (1 << 64) if value >= (1 << 63) else value


def unsigned64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
