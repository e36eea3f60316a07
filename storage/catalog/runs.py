"""Run records: every collection or training run leaves a row with its config and summary."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from storage.catalog.schema import runs
from storage.catalog.sql import now

__all__ = ["finish_run", "get_run", "last_job_runs", "mark_run", "run_folder", "start_run"]


def start_run(conn: Connection, kind: str, config: dict[str, Any]) -> int:
    result = conn.execute(runs.insert().values(kind=kind, status="running", config=config, started_at=now()))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def run_folder(conn: Connection, run_id: int) -> str:
    """What a run is called where people read it: its folder (`train run --out`, recorded as `run_dir`), or
    `run N` for a run that recorded none."""
    config = conn.execute(select(runs.c.config).where(runs.c.id == run_id)).scalar()
    if isinstance(config, dict) and config.get("run_dir"):
        return str(config["run_dir"])
    return f"run {run_id}"


def finish_run(conn: Connection, run_id: int, status: str, summary: dict[str, Any]) -> None:
    conn.execute(runs.update().where(runs.c.id == run_id).values(status=status, summary=summary, finished_at=now()))


def mark_run(conn: Connection, run_id: int, status: str) -> None:
    """Set a run's status again (a resumed run is running once more: not finished)."""
    conn.execute(runs.update().where(runs.c.id == run_id).values(status=status, finished_at=None))


def get_run(conn: Connection, run_id: int) -> dict[str, Any] | None:
    """A run's row (kind, status, config, summary, times), or None."""
    row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    return dict(row._mapping) if row else None


# --- job runs as the scheduler reads them (harvest/jobs/schedule.py) ---


def last_job_runs(conn: Connection) -> dict[str, datetime]:
    """When each job's newest run started (UTC), by job name: runs of kind "job" whose config names the job.

    The scheduler decides what is due from these, so a run started by hand, by cron or by another scheduler
    counts as much as its own."""
    name = runs.c.config["job"].as_string()
    rows = conn.execute(
        select(name, func.max(runs.c.started_at)).where(runs.c.kind == "job", name.is_not(None)).group_by(name)
    )
    return {str(job): _utc(started) for job, started in rows if started is not None}


def _utc(moment: datetime) -> datetime:
    """SQLite hands DateTime(timezone=True) back naive; the catalog writes UTC, so say so."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
