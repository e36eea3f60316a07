"""The workers of a job run: `harvest jobs run NAME` starts a run of the job, or joins the one in progress.

One job never has two runs at once, and several processes (on one machine or many) may serve one run. Each
worker has a `run_workers` row with a heartbeat. Starting or joining, and leaving, happen under one lock per
job (PostgreSQL: an advisory transaction lock; SQLite: the write transaction, which is the database's write
lock), so two workers starting at once cannot both start a run, and exactly one worker — the last one out —
finishes the run: its status and the counts of all its workers.

A worker is alive while its row is not left and its process exists (a pid of this host) or, on another host,
its heartbeat is younger than `STALE_AFTER`. A running run with no live worker was killed: the next
`start_or_join` marks it interrupted (its workers' counts kept) and starts a new run, which resumes the
sources' frontiers where the killed one stopped.

The one-worker runs of `harvest import`, `scrape`, `urls` and `watch` have a worker row too
(`start_worker_run`, `end_worker_run`), so the next run of any collector marks a killed one interrupted
instead of leaving it `running` for ever (issue 16 item 18). Runs without worker rows (training runs, runs
recorded before schema v10) are never judged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, select, text

from storage.catalog.core import Catalog
from storage.catalog.liveness import process_exists
from storage.catalog.runs import finish_run, start_run
from storage.catalog.schema import run_workers, runs
from storage.catalog.sql import now

__all__ = [
    "HEARTBEAT_SECONDS",
    "JOB_RUN_KIND",
    "STALE_AFTER",
    "JoinedRun",
    "LeftRun",
    "WorkerHeartbeat",
    "beat",
    "end_worker_run",
    "job_run_workers",
    "leave",
    "merge_summaries",
    "start_or_join",
    "start_worker_run",
    "worker_name",
]

log = logging.getLogger(__name__)

JOB_RUN_KIND: Final = "job"
HEARTBEAT_SECONDS: Final = 20.0  # how often a worker says it is alive
STALE_AFTER: Final = 90.0  # a worker on another host whose heartbeat is older than this is gone


@dataclass(frozen=True)
class JoinedRun:
    run_id: int
    started: bool  # True: this worker started the run; False: it joined one in progress
    interrupted: list[int] = field(default_factory=list)  # runs of the job found abandoned and marked interrupted


@dataclass(frozen=True)
class LeftRun:
    """What `leave` did: the run's status after this worker left (`running` while others still serve it)."""

    status: str
    finished: bool  # this worker was the last one out and finished the run
    summary: dict[str, Any] | None  # the run's summary, when finished


def worker_name() -> str:
    """This process as a worker: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def start_or_join(conn: Connection, job: str, config: dict[str, Any], owner: str) -> JoinedRun:
    """Join the job's run in progress, or start one (config is recorded with it and must hold "job": job).
    Runs of the job whose workers are all gone are marked interrupted first."""
    _lock(conn, job)
    stamp = now()
    joinable: int | None = None
    interrupted: list[int] = []
    for run_id in _running(conn, job):
        if joinable is None and any(_alive(row, stamp) for row in _workers(conn, run_id)):
            joinable = run_id
        else:
            _finish(conn, run_id, "interrupted", stamp)
            interrupted.append(run_id)
    started = joinable is None
    run_id = start_run(conn, JOB_RUN_KIND, config) if joinable is None else joinable
    conn.execute(
        run_workers.insert().values(run_id=run_id, owner=owner, joined_at=stamp, heartbeat_at=stamp, left_at=None)
    )
    return JoinedRun(run_id=run_id, started=started, interrupted=interrupted)


def start_worker_run(conn: Connection, kind: str, config: dict[str, Any], owner: str) -> JoinedRun:
    """Start a run that one worker serves (`harvest import`, `scrape`, `urls`, `watch`), after marking
    interrupted every running run whose workers are all gone."""
    stamp = now()
    interrupted = _interrupt_abandoned(conn, stamp)
    run_id = start_run(conn, kind, config)
    conn.execute(
        run_workers.insert().values(run_id=run_id, owner=owner, joined_at=stamp, heartbeat_at=stamp, left_at=None)
    )
    return JoinedRun(run_id=run_id, started=True, interrupted=interrupted)


def end_worker_run(conn: Connection, run_id: int, owner: str, status: str, summary: dict[str, Any]) -> None:
    """Finish a one-worker run with its status and summary."""
    finish_run(conn, run_id, status, summary)
    conn.execute(
        run_workers.update()
        .where((run_workers.c.run_id == run_id) & (run_workers.c.owner == owner))
        .values(left_at=now(), status=status)
    )


def _interrupt_abandoned(conn: Connection, stamp: datetime) -> list[int]:
    running = select(runs.c.id).where(runs.c.status == "running")
    judged = select(run_workers.c.run_id).where(run_workers.c.run_id.in_(running)).distinct()
    abandoned = []
    for run_id in sorted(int(r) for r in conn.execute(judged).scalars()):
        if not any(_alive(row, stamp) for row in _workers(conn, run_id)):
            _finish(conn, run_id, "interrupted", stamp, keep_summary=True)
            abandoned.append(run_id)
    return abandoned


def beat(conn: Connection, run_id: int, owner: str) -> None:
    """This worker is alive."""
    conn.execute(
        run_workers.update()
        .where((run_workers.c.run_id == run_id) & (run_workers.c.owner == owner))
        .values(heartbeat_at=now())
    )


def leave(conn: Connection, run_id: int, owner: str, status: str, summary: dict[str, Any]) -> LeftRun:
    """This worker is done with the run (`status`: done, interrupted or failed; `summary`: its counts). When no
    live worker remains, the run is finished: with this last worker's status and every worker's counts
    summed."""
    job = _job_of(conn, run_id)
    _lock(conn, job)
    stamp = now()
    conn.execute(
        run_workers.update()
        .where((run_workers.c.run_id == run_id) & (run_workers.c.owner == owner))
        .values(left_at=stamp, heartbeat_at=stamp, status=status, summary=summary)
    )
    if any(_alive(row, stamp) for row in _workers(conn, run_id)):
        return LeftRun(status="running", finished=False, summary=None)
    final = _finish(conn, run_id, status, stamp)
    return LeftRun(status=status, finished=True, summary=final)


def job_run_workers(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    """The run's workers: owner, joined_at, heartbeat_at, left_at, status, summary."""
    return [dict(row._mapping) for row in _workers(conn, run_id)]


def merge_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Workers' summaries added up: numbers summed, lists joined, dicts merged the same way, others kept."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, bool):
                merged[key] = bool(merged.get(key)) or value
            elif isinstance(value, int | float):
                merged[key] = merged.get(key, 0) + value
            elif isinstance(value, list):
                merged[key] = [*merged.get(key, []), *value]
            elif isinstance(value, dict):
                merged[key] = merge_summaries([merged.get(key) or {}, value])
            else:
                merged.setdefault(key, value)
    return merged


def _finish(
    conn: Connection, run_id: int, status: str, stamp: datetime, *, keep_summary: bool = False
) -> dict[str, Any]:
    """Close the run: workers still on it (gone) are marked interrupted, their counts summed into the run's
    (`keep_summary`: a one-worker run's own summary, if it has one, stays)."""
    conn.execute(
        run_workers.update()
        .where((run_workers.c.run_id == run_id) & run_workers.c.left_at.is_(None))
        .values(left_at=stamp, status="interrupted")
    )
    rows = _workers(conn, run_id)
    summary = merge_summaries([dict(row.summary or {}) for row in rows])
    if keep_summary:
        summary = {**(conn.execute(select(runs.c.summary).where(runs.c.id == run_id)).scalar_one() or {}), **summary}
    started = conn.execute(select(runs.c.started_at).where(runs.c.id == run_id)).scalar_one()
    summary["seconds"] = round((stamp - _utc(started)).total_seconds(), 3)
    summary["workers"] = len(rows)
    finish_run(conn, run_id, status, summary)
    return summary


def _running(conn: Connection, job: str) -> list[int]:
    name = runs.c.config["job"].as_string()
    query = select(runs.c.id).where((runs.c.kind == JOB_RUN_KIND) & (name == job) & (runs.c.status == "running"))
    return [int(run_id) for run_id in conn.execute(query.order_by(runs.c.id.desc())).scalars()]


def _job_of(conn: Connection, run_id: int) -> str:
    config = conn.execute(select(runs.c.config).where(runs.c.id == run_id)).scalar_one()
    return str((config or {}).get("job", ""))


def _workers(conn: Connection, run_id: int) -> list[Any]:
    query = select(run_workers).where(run_workers.c.run_id == run_id).order_by(run_workers.c.joined_at)
    return list(conn.execute(query))


def _alive(row: Any, stamp: datetime) -> bool:
    if row.left_at is not None:
        return False
    host, _, pid = str(row.owner).partition(":")
    if host == socket.gethostname() and pid.isdigit():
        return process_exists(int(pid))
    return stamp - _utc(row.heartbeat_at) < timedelta(seconds=STALE_AFTER)


def _lock(conn: Connection, job: str) -> None:
    """Serialise starting, joining and leaving runs of `job` (SQLite: the write transaction already does)."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha1(f"gleaner-job:{job}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class WorkerHeartbeat:
    """Records every HEARTBEAT_SECONDS that this worker of `run_id` is alive (a worker on another host is judged
    by it), from a thread, until the `with` block ends."""

    def __init__(self, catalog: Catalog, run_id: int, owner: str, every: float = HEARTBEAT_SECONDS) -> None:
        self.catalog, self.run_id, self.owner, self.every = catalog, run_id, owner, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="gleaner-worker-heartbeat", daemon=True)

    def __enter__(self) -> WorkerHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.catalog.transact(lambda conn: beat(conn, self.run_id, self.owner), what="a worker heartbeat")
            except Exception:  # a catalog hiccup: the next beat tries again, well within STALE_AFTER
                log.warning("could not record the heartbeat of %s", self.owner, exc_info=True)
