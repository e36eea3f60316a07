"""The crawl frontier: every URL a collector job means to fetch, with its state, attempts and last error.

It lives in the catalog so that a killed job resumes where it stopped: `done` rows are skipped, `failed`
rows are retried, `skipped` rows (robots, not an image, 404...) are not. Rows are keyed by
(job, kind, url), so adding the same URL twice is a no-op.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from storage.catalog.schema import frontier
from storage.catalog.sql import now

__all__ = [
    "STATES",
    "FrontierEntry",
    "FrontierUpdate",
    "add_urls",
    "frontier_counts",
    "job_key",
    "mark_batch",
    "mark_done",
    "mark_failed",
    "mark_skipped",
    "pending",
    "requeue_failed",
]

STATES = ("pending", "done", "failed", "skipped")
_INSERT_CHUNK = 1000  # rows per executemany


@dataclass(frozen=True)
class FrontierEntry:
    url: str
    kind: str  # page | image
    depth: int = 0
    referrer: str | None = None
    label: str | None = None
    extra: dict[str, Any] | None = None  # e.g. an image's alt text on the page that listed it


@dataclass(frozen=True)
class FrontierUpdate:
    """A state change for `mark_batch`: `state` is done, failed or skipped; `detail` the sha256 or error."""

    kind: str
    url: str
    state: str
    detail: str | None = None


def job_key(kind: str, *parts: str) -> str:
    """A stable id for one command's job, e.g. `urls:<sha1 of the list's absolute path>`."""
    digest = hashlib.sha1("\0".join(parts).encode("utf-8")).hexdigest()
    return f"{kind}:{digest}"


def _insert_ignore(conn: Connection) -> Any:
    """INSERT ... ON CONFLICT (job, kind, url) DO NOTHING, built once per dialect: executed with a list of
    rows it runs as one executemany, without compiling a statement per chunk."""
    dialect = conn.dialect.name
    statement = _STATEMENTS.get(dialect)
    if statement is None:
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # pragma: no cover - other databases are not supported targets
            raise NotImplementedError(f"catalog on {dialect} is not supported")
        statement = _STATEMENTS[dialect] = insert(frontier).on_conflict_do_nothing(
            index_elements=["job", "kind", "url"]
        )
    return statement


_STATEMENTS: dict[str, Any] = {}


def add_urls(conn: Connection, job: str, entries: Iterable[FrontierEntry]) -> int:
    """Insert entries that are not there yet (insert-ignore on job, kind, url); returns how many were new."""
    statement = _insert_ignore(conn)
    stamp = now()
    added = 0
    iterator = iter(entries)
    while chunk := list(islice(iterator, _INSERT_CHUNK)):
        rows = [
            {
                "job": job,
                "url": e.url,
                "kind": e.kind,
                "state": "pending",
                "attempts": 0,
                "depth": e.depth,
                "referrer": e.referrer,
                "label": e.label,
                "last_error": None,
                "sha256": None,
                "updated_at": stamp,
                "extra": e.extra,
            }
            for e in chunk
        ]
        result = conn.execute(statement, rows, execution_options={"preserve_rowcount": True})
        added += max(0, result.rowcount)
    return added


def pending(
    conn: Connection, job: str, kind: str | None = None, limit: int | None = None, *, after_id: int | None = None
) -> list[dict[str, Any]]:
    """Pending rows in insertion order; page through a large job with `after_id` (the last row's id)."""
    query = select(frontier).where((frontier.c.job == job) & (frontier.c.state == "pending"))
    if kind is not None:
        query = query.where(frontier.c.kind == kind)
    if after_id is not None:
        query = query.where(frontier.c.id > after_id)
    query = query.order_by(frontier.c.id)
    if limit is not None:
        query = query.limit(limit)
    return [dict(row._mapping) for row in conn.execute(query)]


def _key(job: str, kind: str, url: str) -> Any:
    return (frontier.c.job == job) & (frontier.c.kind == kind) & (frontier.c.url == url)


def mark_done(conn: Connection, job: str, kind: str, url: str, sha256: str | None = None) -> None:
    conn.execute(
        frontier.update()
        .where(_key(job, kind, url))
        .values(state="done", sha256=sha256, last_error=None, attempts=frontier.c.attempts + 1, updated_at=now())
    )


def mark_failed(conn: Connection, job: str, kind: str, url: str, error: str) -> None:
    """A failure worth retrying later (timeouts, 5xx, 429, connection errors)."""
    conn.execute(
        frontier.update()
        .where(_key(job, kind, url))
        .values(state="failed", last_error=error, attempts=frontier.c.attempts + 1, updated_at=now())
    )


def mark_skipped(conn: Connection, job: str, kind: str, url: str, reason: str) -> None:
    """A final refusal (robots, not an image, 404...): not retried, not even by `requeue_failed`."""
    conn.execute(
        frontier.update()
        .where(_key(job, kind, url))
        .values(state="skipped", last_error=reason, attempts=frontier.c.attempts + 1, updated_at=now())
    )


def mark_batch(conn: Connection, job: str, updates: Sequence[FrontierUpdate]) -> None:
    """Apply many state changes in one round trip per state (collectors flush these every few hundred)."""
    stamp = now()
    by_state: dict[str, list[dict[str, Any]]] = {}
    for update in updates:
        if update.state not in STATES or update.state == "pending":
            raise ValueError(f"cannot mark a frontier row {update.state!r}")
        by_state.setdefault(update.state, []).append(
            {"b_kind": update.kind, "b_url": update.url, "b_detail": update.detail}
        )
    where = (frontier.c.job == job) & (frontier.c.kind == bindparam("b_kind")) & (frontier.c.url == bindparam("b_url"))
    for state, params in by_state.items():
        values: dict[str, Any] = {"state": state, "attempts": frontier.c.attempts + 1, "updated_at": stamp}
        if state == "done":
            values.update(sha256=bindparam("b_detail"), last_error=None)
        else:
            values["last_error"] = bindparam("b_detail")
        conn.execute(frontier.update().where(where).values(**values), params)


def requeue_failed(conn: Connection, job: str) -> int:
    """Put the job's failed rows back to pending (a rerun, or `--retry-failed`); returns how many."""
    result = conn.execute(
        frontier.update()
        .where((frontier.c.job == job) & (frontier.c.state == "failed"))
        .values(state="pending", updated_at=now()),
        execution_options={"preserve_rowcount": True},
    )
    return max(0, result.rowcount)


def frontier_counts(conn: Connection, job: str) -> dict[str, int]:
    """Rows of the job per state; every state is present, zero when empty."""
    counts = dict.fromkeys(STATES, 0)
    query = select(frontier.c.state, func.count()).where(frontier.c.job == job).group_by(frontier.c.state)
    for state, count in conn.execute(query):
        counts[state] = int(count)
    return counts
