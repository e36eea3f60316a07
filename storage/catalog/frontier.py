"""The crawl frontier: every URL a collector job means to fetch, with its state, attempts and last error.

It lives in the catalog so that a killed job resumes where it stopped: `done` rows are skipped, `failed`
rows are retried, `skipped` rows (robots, not an image, 404...) are not. Rows are keyed by
(job, kind, url), so adding the same URL twice is a no-op. A failed or skipped row keeps its error's kind
in `error_kind` (robots, ssrf, timeout, rejected...), which is what reruns select on.

Several workers can share one job: `claim` hands each a batch of pending rows under a lease (its owner and a
deadline; `FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite), marking a row clears its lease,
and `release_stale` frees the claims of owners that are gone (lapsed, or a dead process on this host).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from storage.catalog.liveness import process_exists
from storage.catalog.schema import frontier
from storage.catalog.sql import now

__all__ = [
    "STATES",
    "FrontierEntry",
    "FrontierUpdate",
    "add_urls",
    "claim",
    "frontier_counts",
    "job_key",
    "lease_owner",
    "mark_batch",
    "mark_done",
    "mark_failed",
    "mark_skipped",
    "pending",
    "pending_by_kind",
    "release_claims",
    "release_stale",
    "requeue_failed",
    "requeue_refused",
    "retry_urls",
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
    """A state change for `mark_batch`: `state` is done, failed or skipped; `detail` the sha256 or error;
    `error_kind` the error's kind (robots, timeout, rejected...) for failed and skipped rows."""

    kind: str
    url: str
    state: str
    detail: str | None = None
    error_kind: str | None = None


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
        from sqlalchemy.dialects import postgresql, sqlite

        if dialect == "sqlite":
            statement = sqlite.insert(frontier).on_conflict_do_nothing(index_elements=["job", "kind", "url"])
        elif dialect == "postgresql":
            statement = postgresql.insert(frontier).on_conflict_do_nothing(index_elements=["job", "kind", "url"])
        else:  # pragma: no cover - other databases are not supported targets
            raise NotImplementedError(f"catalog on {dialect} is not supported")
        _STATEMENTS[dialect] = statement
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
        .values(state="done", sha256=sha256, last_error=None, error_kind=None, **_UNLEASED, **_counted())
    )


def mark_failed(conn: Connection, job: str, kind: str, url: str, error: str, error_kind: str | None = None) -> None:
    """A failure worth retrying later (timeouts, 5xx, 429, connection errors)."""
    conn.execute(
        frontier.update()
        .where(_key(job, kind, url))
        .values(state="failed", last_error=error, error_kind=error_kind, **_UNLEASED, **_counted())
    )


def mark_skipped(conn: Connection, job: str, kind: str, url: str, reason: str, error_kind: str | None = None) -> None:
    """A final refusal (robots, not an image, 404...): not retried, not even by `requeue_failed`."""
    conn.execute(
        frontier.update()
        .where(_key(job, kind, url))
        .values(state="skipped", last_error=reason, error_kind=error_kind, **_UNLEASED, **_counted())
    )


_UNLEASED: dict[str, Any] = {"lease_owner": None, "lease_until": None}


def _counted() -> dict[str, Any]:
    return {"attempts": frontier.c.attempts + 1, "updated_at": now()}


def mark_batch(conn: Connection, job: str, updates: Sequence[FrontierUpdate]) -> None:
    """Apply many state changes in one round trip per state (collectors flush these every few hundred)."""
    stamp = now()
    by_state: dict[str, list[dict[str, Any]]] = {}
    for update in updates:
        if update.state not in STATES or update.state == "pending":
            raise ValueError(f"cannot mark a frontier row {update.state!r}")
        by_state.setdefault(update.state, []).append(
            {"b_kind": update.kind, "b_url": update.url, "b_detail": update.detail, "b_error_kind": update.error_kind}
        )
    where = (frontier.c.job == job) & (frontier.c.kind == bindparam("b_kind")) & (frontier.c.url == bindparam("b_url"))
    for state, params in by_state.items():
        values: dict[str, Any] = {"state": state, "attempts": frontier.c.attempts + 1, "updated_at": stamp}
        values.update(_UNLEASED)
        if state == "done":
            values.update(sha256=bindparam("b_detail"), last_error=None, error_kind=None)
        else:
            values.update(last_error=bindparam("b_detail"), error_kind=bindparam("b_error_kind"))
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


def requeue_refused(conn: Connection, job: str, error_kinds: Sequence[str]) -> int:
    """Back to pending: skipped rows refused for one of `error_kinds` (e.g. robots, when a run ignores robots)."""
    if not error_kinds:
        return 0
    result = conn.execute(
        frontier.update()
        .where((frontier.c.job == job) & _refused(error_kinds))
        .values(state="pending", updated_at=now()),
        execution_options={"preserve_rowcount": True},
    )
    return max(0, result.rowcount)


def retry_urls(conn: Connection, job: str, error_kinds: Sequence[str] = ()) -> dict[str, set[str]]:
    """URLs per kind (page, image) that a retry may fetch: failed rows, and rows refused for `error_kinds`."""
    retried = frontier.c.state == "failed"
    if error_kinds:
        retried = retried | _refused(error_kinds)
    query = select(frontier.c.kind, frontier.c.url).where((frontier.c.job == job) & retried)
    found: dict[str, set[str]] = {"page": set(), "image": set()}
    for kind, url in conn.execute(query):
        found.setdefault(str(kind), set()).add(str(url))
    return found


def _refused(error_kinds: Sequence[str]) -> Any:
    return (frontier.c.state == "skipped") & frontier.c.error_kind.in_(list(error_kinds))


def pending_by_kind(conn: Connection, job: str) -> dict[str, int]:
    """Pending rows of the job per kind (page, image); kinds without any are absent."""
    query = (
        select(frontier.c.kind, func.count())
        .where((frontier.c.job == job) & (frontier.c.state == "pending"))
        .group_by(frontier.c.kind)
    )
    return {str(kind): int(count) for kind, count in conn.execute(query)}


# --- claims with leases -----------------------------------------------------------------------------------


def lease_owner(run_id: int | None = None) -> str:
    """This process's name in the frontier: host, pid and (when known) run, e.g. `box:4242:17`."""
    return f"{socket.gethostname()}:{os.getpid()}:{run_id if run_id is not None else ''}"


def claim(
    conn: Connection,
    job: str,
    owner: str,
    *,
    kind: str | None = None,
    limit: int = 256,
    lease_seconds: float = 600.0,
    after_id: int | None = None,
) -> list[dict[str, Any]]:
    """Take up to `limit` pending rows nobody holds (or whose lease lapsed) for `owner`, in insertion order.

    One UPDATE takes them, so two workers claiming at once never get the same row: SQLite runs the statement
    under its write lock (a SELECT first, then an UPDATE, would let both read the same free rows), PostgreSQL
    locks the chosen rows `FOR UPDATE SKIP LOCKED`. `after_id` pages on."""
    stamp = now()
    free = frontier.c.lease_owner.is_(None) | (frontier.c.lease_until < stamp) | (frontier.c.lease_owner == owner)
    query = select(frontier.c.id).where((frontier.c.job == job) & (frontier.c.state == "pending") & free)
    if kind is not None:
        query = query.where(frontier.c.kind == kind)
    if after_id is not None:
        query = query.where(frontier.c.id > after_id)
    query = query.order_by(frontier.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    until = datetime.fromtimestamp(stamp.timestamp() + lease_seconds, UTC)
    conn.execute(frontier.update().where(frontier.c.id.in_(query)).values(lease_owner=owner, lease_until=until))
    mine = (frontier.c.job == job) & (frontier.c.lease_owner == owner) & (frontier.c.lease_until == until)
    rows = conn.execute(select(frontier).where(mine).order_by(frontier.c.id))
    return [dict(row._mapping) for row in rows]


def release_claims(conn: Connection, job: str, owner: str) -> int:
    """Give back the rows `owner` still holds (a run that stops early); returns how many."""
    result = conn.execute(
        frontier.update().where((frontier.c.job == job) & (frontier.c.lease_owner == owner)).values(**_UNLEASED),
        execution_options={"preserve_rowcount": True},
    )
    return max(0, result.rowcount)


def release_stale(conn: Connection, job: str) -> int:
    """Free the job's claims whose lease lapsed or whose owner was a process of this host that is gone (killed);
    a run calls this before claiming, so a rerun after a SIGKILL resumes at once."""
    stamp = now()
    held = select(frontier.c.lease_owner, frontier.c.lease_until).where(
        (frontier.c.job == job) & frontier.c.lease_owner.isnot(None)
    )
    stale = {
        str(owner) for owner, until in conn.execute(held.distinct()) if _lapsed(until, stamp) or _dead_here(str(owner))
    }
    if not stale:
        return 0
    result = conn.execute(
        frontier.update()
        .where((frontier.c.job == job) & frontier.c.lease_owner.in_(sorted(stale)))
        .values(**_UNLEASED),
        execution_options={"preserve_rowcount": True},
    )
    return max(0, result.rowcount)


def _lapsed(until: datetime | None, stamp: datetime) -> bool:
    if until is None:
        return True
    if until.tzinfo is None:  # SQLite returns naive datetimes
        until = until.replace(tzinfo=UTC)
    return until < stamp


def _dead_here(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not process_exists(int(pid_text))


def frontier_counts(conn: Connection, job: str) -> dict[str, int]:
    """Rows of the job per state; every state is present, zero when empty."""
    counts = dict.fromkeys(STATES, 0)
    query = select(frontier.c.state, func.count()).where(frontier.c.job == job).group_by(frontier.c.state)
    for state, count in conn.execute(query):
        counts[state] = int(count)
    return counts
