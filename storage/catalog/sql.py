"""Small dialect-aware SQL helpers shared by the catalog modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table

__all__ = ["insert_ignore", "now", "signed64", "unsigned64"]


def now() -> datetime:
    return datetime.now(UTC)


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any], keys: list[str]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when a row was inserted. Safe under concurrent writers."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - other databases are not supported targets
        raise NotImplementedError(f"catalog on {dialect} is not supported")
    statement = insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
    # psycopg reports rowcount -1 for INSERTs unless SQLAlchemy is asked to keep it
    return conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount == 1


def signed64(value: int) -> int:
    """Store an unsigned 64-bit hash in a signed BIGINT column."""
    return value - (1 << 64) if value >= (1 << 63) else value


def unsigned64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
