"""`harvest jobs list`'s next_run is when the scheduler runs the job (harvest.jobs.schedule.next_due): now for
a job never run or one whose slot passed since its last start (the catch-up run), else its next slot."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from harvest.jobs.cli import jobs_json
from harvest.jobs.config import Job, JobSource
from storage.catalog.runs import start_run
from storage.catalog.schema import runs
from storage.workspace import open_workspace
from tests.harvest.test_import import harvest
from tests.harvest.test_jobs_config import FOLDER_JOB
from tests.support.jobs import job_config


def next_run(ws: Path) -> datetime:
    result = harvest("jobs", "list", "--json", "-w", ws, cwd=ws.parent)
    assert result.code == 0, result.stderr
    (entry,) = json.loads(result.stdout)["jobs"]
    return datetime.fromisoformat(entry["next_run"])


def started(ws: Path, at: datetime) -> None:
    """A run of the job `inbox` that started `at`."""
    with open_workspace(ws) as workspace, workspace.catalog.write() as conn:
        run_id = start_run(conn, "job", {"job": "inbox"})
        conn.execute(sa.update(runs).where(runs.c.id == run_id).values(started_at=at, status="done"))


def test_next_run_is_now_when_never_run_or_a_slot_was_missed_and_the_next_slot_otherwise(
    ws: Path, tmp_path: Path
) -> None:
    (tmp_path / "inbox").mkdir()
    job_config(ws, FOLDER_JOB)  # "0 3 * * *" in Europe/Paris
    now = datetime.now(UTC)
    assert abs((next_run(ws) - now).total_seconds()) < 60  # never run: due now

    started(ws, now - timedelta(days=2))  # the scheduler was down since: the slots since then were missed
    assert abs((next_run(ws) - datetime.now(UTC)).total_seconds()) < 60

    started(ws, datetime.now(UTC))  # it just ran: the next slot, 03:00 in Paris
    slot = next_run(ws)
    paris = slot.astimezone(ZoneInfo("Europe/Paris"))
    assert (paris.hour, paris.minute) == (3, 0) and slot > datetime.now(UTC)
    assert slot - datetime.now(UTC) <= timedelta(days=1, hours=1)


def test_jobs_json_follows_next_due_with_a_fixed_clock() -> None:
    job = Job(name="digits", schedule="0 3 * * *", timezone="UTC", sources=(JobSource("folder", Path("/inbox")),))
    now = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)

    def entry(last: datetime | None) -> str | None:
        found = jobs_json([job], {} if last is None else {"digits": last}, now)
        value: str | None = found[0]["next_run"]
        return value

    assert entry(None) == now.isoformat()  # never run
    assert entry(datetime(2026, 5, 9, 2, 0, tzinfo=UTC)) == now.isoformat()  # missed today's 03:00
    assert entry(datetime(2026, 5, 10, 3, 0, tzinfo=UTC)) == datetime(2026, 5, 11, 3, 0, tzinfo=UTC).isoformat()
    assert jobs_json([Job(name="x", schedule=None, sources=job.sources)], {}, now)[0]["next_run"] is None
