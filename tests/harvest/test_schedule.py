"""`harvest schedule`: when jobs are due, catch-up, timezones and DST, on a fake clock (no sleeps); the runs
the catalog reports; and the real command with child processes (`--once`, Ctrl-C, SIGTERM)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harvest.jobs.config import Job, JobSource
from harvest.jobs.schedule import (
    ChildRunner,
    JobResult,
    Scheduler,
    due_now,
    is_due,
    next_due,
    next_run,
    parse_job_output,
)
from storage.catalog import Catalog
from storage.catalog.runs import get_run, last_job_runs, start_run
from storage.errors import GleanerError
from storage.workspace import init_workspace

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def job(name: str = "digits", schedule: str | None = "0 3 * * *", timezone: str = "UTC") -> Job:
    return Job(name=name, schedule=schedule, timezone=timezone, sources=(JobSource("folder", Path("/inbox")),))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class FakeClock:
    """Time stands still until the scheduler sleeps; sleeping moves it on at once."""

    def __init__(self, start: datetime) -> None:
        self.current = start
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.current += timedelta(seconds=seconds)


class FakeCatalog:
    """Runs recorded as the real runner records them: a start time per job, newest kept."""

    def __init__(self, last: dict[str, datetime] | None = None) -> None:
        self.last = dict(last or {})

    def __call__(self) -> dict[str, datetime]:
        return dict(self.last)


class FakeRunner:
    """Runs a job instantly: records the run in the fake catalog at the clock's time, unless told to fail."""

    def __init__(self, clock: FakeClock, catalog: FakeCatalog, failing: frozenset[str] = frozenset()) -> None:
        self.clock, self.catalog, self.failing = clock, catalog, failing
        self.calls: list[tuple[str, datetime]] = []

    def __call__(self, job: Job) -> JobResult:
        now = self.clock.now()
        self.calls.append((job.name, now))
        if job.name in self.failing:
            raise RuntimeError("the job broke before it recorded a run")
        self.catalog.last[job.name] = now
        return JobResult(job.name, "done", now, run_id=len(self.calls), counts={"added": 3})


def scheduler(
    jobs: list[Job], start: datetime, last: dict[str, datetime] | None = None, **kwargs: object
) -> tuple[Scheduler, FakeClock, FakeRunner, FakeCatalog]:
    clock = FakeClock(start)
    catalog = FakeCatalog(last)
    runner = FakeRunner(clock, catalog, **kwargs)  # type: ignore[arg-type]
    return Scheduler(lambda: jobs, catalog, runner, clock, max_wait=10 * 86400), clock, runner, catalog


# ---- next_run and is_due


def test_next_run_is_the_next_slot_strictly_after() -> None:
    daily = job()
    assert next_run(daily, utc("2026-01-10T01:00")) == utc("2026-01-10T03:00")
    assert next_run(daily, utc("2026-01-10T03:00")) == utc("2026-01-11T03:00")
    assert next_run(daily, utc("2026-01-10T03:00:00.5")) == utc("2026-01-11T03:00")
    assert next_run(job(schedule="*/15 * * * *"), utc("2026-01-10T10:07")) == utc("2026-01-10T10:15")


def test_a_job_without_schedule_has_no_next_run_and_is_never_due() -> None:
    manual = job(schedule=None)
    assert next_run(manual, T0) is None
    assert not is_due(manual, None, T0)


def test_timezone_slots_are_local_wall_clock_times() -> None:
    new_york = job(timezone="America/New_York")
    assert next_run(new_york, utc("2026-01-10T00:00")) == utc("2026-01-10T08:00")  # EST, UTC-5
    assert next_run(new_york, utc("2026-07-10T00:00")) == utc("2026-07-10T07:00")  # EDT, UTC-4
    tokyo = job(schedule="30 9 * * mon", timezone="Asia/Tokyo")
    assert next_run(tokyo, utc("2026-01-10T00:00")) == utc("2026-01-12T00:30")  # Monday 09:30 JST


def test_a_skipped_wall_time_runs_when_the_gap_ends() -> None:
    # Paris springs forward on 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 does not exist.
    paris = job(schedule="30 2 * * *", timezone="Europe/Paris")
    first = next_run(paris, utc("2026-03-28T12:00"))
    assert first == utc("2026-03-29T01:00")
    assert next_run(paris, first) == utc("2026-03-30T00:30")


def test_a_repeated_wall_time_runs_once() -> None:
    # Paris falls back on 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens twice.
    paris = job(schedule="30 2 * * *", timezone="Europe/Paris")
    first = next_run(paris, utc("2026-10-24T12:00"))
    assert first == utc("2026-10-25T00:30")  # the first 02:30 (CEST)
    assert next_run(paris, first) == utc("2026-10-26T01:30")  # not the second 02:30, a day later in CET


@pytest.mark.parametrize("day", ["2026-03-28T12:00", "2026-10-24T12:00"])
def test_slots_across_a_dst_change_only_move_forward(day: str) -> None:
    half_hourly = job(schedule="*/30 * * * *", timezone="Europe/Paris")
    moment, seen = utc(day), []
    for _ in range(100):
        following = next_run(half_hourly, moment)
        assert following is not None and following > moment
        seen.append(following)
        moment = following
    assert len(set(seen)) == len(seen)
    assert seen[-1] - seen[0] < timedelta(days=3)  # no slot lost in a loop or a jump


def test_due_when_never_run_or_a_slot_passed_since_the_last_run() -> None:
    daily = job()
    assert is_due(daily, None, T0)
    assert not is_due(daily, utc("2026-01-10T03:00:05"), utc("2026-01-11T02:59"))
    assert is_due(daily, utc("2026-01-10T03:00:05"), utc("2026-01-11T03:00"))
    assert [j.name for j in due_now([daily, job("other")], {"digits": utc("2026-01-10T04:00")}, T0)] == ["other"]


def test_next_due_is_now_for_a_due_job_and_the_next_slot_otherwise() -> None:
    daily = job()
    assert next_due(daily, None, T0) == T0
    assert next_due(daily, utc("2026-01-07T03:00"), T0) == T0  # slots missed: runs at once, once
    assert next_due(daily, utc("2026-01-10T03:00:01"), T0) == utc("2026-01-11T03:00")
    assert next_due(job(schedule=None), None, T0) is None


# ---- the scheduler on a fake clock


def test_a_job_never_run_runs_in_the_first_pass() -> None:
    sched, _, runner, _ = scheduler([job()], T0)
    result = sched.run_pass()
    assert runner.calls == [("digits", T0)]
    assert [r.job for r in result.ran] == ["digits"]
    assert result.next == [("digits", utc("2026-01-11T03:00"))]


def test_a_job_run_after_its_last_slot_does_not_run() -> None:
    sched, _, runner, _ = scheduler([job()], T0, last={"digits": utc("2026-01-10T03:00:02")})
    result = sched.run_pass()
    assert runner.calls == []
    assert result.ran == [] and result.next == [("digits", utc("2026-01-11T03:00"))]


def test_missed_slots_run_once_then_the_schedule_resumes() -> None:
    # The scheduler was down for three days: three 03:00 slots passed; the job runs once, then daily.
    sched, clock, runner, _ = scheduler([job()], T0, last={"digits": utc("2026-01-07T03:00:01")})
    sched.run_forever(passes=4)
    assert runner.calls == [
        ("digits", T0),
        ("digits", utc("2026-01-11T03:00")),
        ("digits", utc("2026-01-12T03:00")),
        ("digits", utc("2026-01-13T03:00")),
    ]
    assert clock.current == utc("2026-01-13T03:00")


def test_the_loop_sleeps_until_the_nearest_slot_and_no_longer_than_max_wait() -> None:
    jobs = [job("daily"), job("hourly", schedule="0 * * * *")]
    sched, clock, runner, catalog = scheduler(jobs, T0, last={"daily": T0, "hourly": T0})
    sched.run_forever(passes=2)
    assert clock.slept == [3600.0]
    assert runner.calls == [("hourly", utc("2026-01-10T13:00"))]
    capped = Scheduler(lambda: jobs, catalog, runner, clock, max_wait=60)
    capped.run_forever(passes=2)
    assert clock.slept[-1] == 60


def test_a_bad_edit_of_the_jobs_later_is_reported_and_the_scheduler_goes_on() -> None:
    loads: list[int] = []

    def jobs() -> list[Job]:
        loads.append(1)
        if len(loads) == 2:
            raise GleanerError("gleaner.toml: [[jobs]] #1: `schedule` 'every day' is not a cron expression")
        return [job()]

    clock = FakeClock(T0)
    catalog = FakeCatalog()
    runner = FakeRunner(clock, catalog)
    errors: list[str] = []
    sched = Scheduler(jobs, catalog, runner, clock, max_wait=86400)
    sched.run_forever(passes=3, on_error=errors.append)
    assert errors == ["gleaner.toml: [[jobs]] #1: `schedule` 'every day' is not a cron expression"]
    assert runner.calls == [("digits", T0), ("digits", utc("2026-01-12T03:00"))]  # waited max_wait, then on

    def broken() -> list[Job]:
        raise GleanerError("gleaner.toml: invalid TOML")

    first = Scheduler(broken, catalog, runner, clock)
    with pytest.raises(GleanerError):  # at start a mistake stops the scheduler: the person is there to see it
        first.run_forever(passes=3, on_error=errors.append)


def test_runs_started_elsewhere_count_as_last_runs() -> None:
    sched, _, runner, catalog = scheduler([job()], T0, last={"digits": utc("2026-01-09T03:00")})
    catalog.last["digits"] = utc("2026-01-10T11:00")  # a person ran `harvest jobs run digits` since
    assert sched.run_pass().ran == []
    assert runner.calls == []


def test_a_run_started_elsewhere_while_another_job_ran_counts() -> None:
    clock, catalog = FakeClock(T0), FakeCatalog()
    inner = FakeRunner(clock, catalog)

    def long_then_someone_runs_short(j: Job) -> JobResult:
        clock.current += timedelta(hours=2)  # "long" takes two hours; meanwhile a pod ran "short"
        catalog.last["short"] = T0 + timedelta(hours=1)
        return inner(j)

    sched = Scheduler(lambda: [job("long"), job("short")], catalog, long_then_someone_runs_short, clock)
    assert [r.job for r in sched.run_pass().ran] == ["long"]
    assert [name for name, _ in inner.calls] == ["long"]


def test_a_broken_job_fails_alone_and_is_not_retried_before_its_next_slot() -> None:
    jobs = [job("broken"), job("fine")]
    sched, clock, runner, _ = scheduler(jobs, T0, failing=frozenset({"broken"}))
    result = sched.run_pass()
    assert [(r.job, r.status) for r in result.ran] == [("broken", "failed"), ("fine", "done")]
    assert "the job broke" in (result.ran[0].error or "")
    assert not result.ran[0].ok and result.ran[1].ok
    clock.current += timedelta(minutes=5)
    assert sched.run_pass().ran == []  # no run recorded, but the attempt counts: no retry loop
    clock.current = utc("2026-01-11T03:00")
    assert [r.job for r in sched.run_pass().ran] == ["broken", "fine"]  # both at their next slot
    assert len(runner.calls) == 4


def test_jobs_without_schedule_are_left_to_people() -> None:
    sched, _, runner, _ = scheduler([job("manual", schedule=None), job()], T0)
    result = sched.run_pass()
    assert [name for name, _ in runner.calls] == ["digits"]
    assert [name for name, _ in result.next] == ["digits"]


def test_the_pass_document_has_the_contract_keys() -> None:
    sched, _, _, _ = scheduler([job()], T0)
    document = json.loads(json.dumps(sched.run_pass().to_json()))
    assert set(document) == {"ran", "next"}
    ran = document["ran"][0]
    assert {"job", "status", "run_id", "added", "duplicates", "rejected", "failed"} <= set(ran)
    assert (ran["job"], ran["status"], ran["run_id"], ran["added"]) == ("digits", "done", 1, 3)
    assert document["next"] == [{"job": "digits", "next_run": "2026-01-11T03:00:00+00:00"}]


def test_parse_job_output() -> None:
    done = parse_job_output("d", 0, json.dumps({"status": "done", "run_id": 4, "added": 2, "failed": 1}), T0)
    assert (done.status, done.run_id, dict(done.counts), done.ok) == ("done", 4, {"added": 2, "failed": 1}, True)
    refused = parse_job_output("d", 1, json.dumps({"error": "no job named 'd'"}), T0)
    assert (refused.status, refused.error, refused.ok) == ("failed", "no job named 'd'", False)
    killed = parse_job_output("d", -9, "Traceback (most recent call last):\n", T0)
    assert killed.status == "failed" and "killed by signal 9" in (killed.error or "")


# ---- the catalog's view of job runs


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_last_job_runs_reads_the_newest_start_of_each_job(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}" if dialect == "sqlite" else request.getfixturevalue("pg_url")
    with Catalog(url) as catalog:
        with catalog.write() as conn:
            first = start_run(conn, "job", {"job": "digits"})
            start_run(conn, "job", {"job": "shoes"})
            start_run(conn, "scrape", {"job": "not-a-job-run"})
            start_run(conn, "job", {"something": "else"})
            latest = start_run(conn, "job", {"job": "digits"})
        with catalog.read() as conn:
            found = last_job_runs(conn)
            started = {run_id: get_run(conn, run_id)["started_at"] for run_id in (first, latest)}  # type: ignore[index]
    assert set(found) == {"digits", "shoes"}
    assert all(when.tzinfo is not None and when.utcoffset() == timedelta(0) for when in found.values())
    assert found["digits"].replace(tzinfo=None) == started[latest].replace(tzinfo=None)
    assert started[first] <= started[latest]


# ---- the child process runner, with stand-in children


def _child(script: str) -> Callable[[str, Path], list[str]]:
    """A command that runs `script` (with the job name and workspace as arguments) instead of harvest."""
    return lambda name, root: [sys.executable, "-c", script, name, str(root)]


def test_a_child_that_crashes_is_a_failed_result(tmp_path: Path) -> None:
    runner = ChildRunner(tmp_path, command=_child("import os; os.abort()"))
    result = runner(job())
    assert result.status == "failed" and "killed by signal" in (result.error or "")
    printed = ChildRunner(
        tmp_path,
        command=_child(
            "import json, sys; print(json.dumps({'status': 'done', 'job': sys.argv[1], 'run_id': 7, 'added': 5}))"
        ),
    )
    assert (printed(job()).run_id, printed(job()).counts["added"]) == (7, 5)


def test_ctrl_c_is_passed_to_the_running_job_which_ends_cleanly(tmp_path: Path) -> None:
    marker = tmp_path / "interrupted"
    script = (
        "import os, signal, sys, pathlib\n"
        "def stop(*_):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('recorded as interrupted')\n"
        "    sys.exit(130)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "os.kill(os.getppid(), signal.SIGINT)  # as if the person pressed Ctrl-C at the scheduler\n"
        "while True: signal.pause()\n"
    )
    runner = ChildRunner(tmp_path, command=_child(script), grace=120)
    with pytest.raises(KeyboardInterrupt):
        runner(job())
    assert marker.read_text() == "recorded as interrupted"  # the child got one SIGINT and finished its way


# ---- the command, with real child processes


def _harvest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harvest", *args], capture_output=True, text=True, timeout=300, env=env
    )


def _workspace_with(root: Path, jobs_toml: str) -> Path:
    init_workspace(root)[0].close()
    with (root / "gleaner.toml").open("a", encoding="utf-8") as config:
        config.write("\n" + jobs_toml)
    return root


def test_schedule_once_runs_a_due_folder_job_then_nothing(tmp_path: Path, photo_files: list[Path]) -> None:
    inbox = tmp_path / "ws" / "inbox"
    inbox.mkdir(parents=True)
    for photo in photo_files[:3]:
        shutil.copy(photo, inbox / photo.name)
    toml = (
        '[[jobs]]\nname = "inbox"\nschedule = "0 3 * * *"\n\n[[jobs.sources]]\nfolder = "inbox"\nlabel = "cat"\n\n'
        '[[jobs]]\nname = "gone"\nschedule = "0 4 * * *"\n\n[[jobs.sources]]\nfolder = "no-such-folder"\n'
    )
    root = _workspace_with(tmp_path / "ws", toml)
    first = _harvest("schedule", "--once", "--json", "--workspace", str(root))
    document = json.loads(first.stdout)
    ran = {entry["job"]: entry for entry in document["ran"]}
    assert ran["inbox"]["status"] == "done" and ran["inbox"]["added"] == 3, first.stderr
    assert isinstance(ran["inbox"]["run_id"], int)
    assert ran["gone"]["status"] == "failed"  # its child failed; the scheduler ran the other job and carried on
    assert first.returncode == 1
    assert "inbox: started" in first.stderr and "inbox: done" in first.stderr
    with Catalog(f"sqlite:///{root / 'catalog.db'}") as catalog, catalog.read() as conn:
        assert "inbox" in last_job_runs(conn)
    again = _harvest("schedule", "--once", "--json", "--workspace", str(root))
    assert "inbox" not in {entry["job"] for entry in json.loads(again.stdout)["ran"]}
    assert {entry["job"] for entry in json.loads(again.stdout)["next"]} == {"inbox", "gone"}


def test_schedule_once_with_nothing_due_says_so(tmp_path: Path) -> None:
    root = _workspace_with(tmp_path / "ws", '[[jobs]]\nname = "manual"\n\n[[jobs.sources]]\nfolder = "inbox"\n')
    result = _harvest("schedule", "--once", "--json", "--workspace", str(root))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ran": [], "next": []}


def test_schedule_with_a_bad_config_is_one_line(tmp_path: Path) -> None:
    root = _workspace_with(tmp_path / "ws", '[[jobs]]\nname = "x"\nschedule = "every day"\n')
    result = _harvest("schedule", "--once", "--workspace", str(root))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "is not a cron expression" in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_foreground_scheduler_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    root = _workspace_with(tmp_path / "ws", "")
    env = {**os.environ, "COLUMNS": "200"}
    child = subprocess.Popen(
        [sys.executable, "-m", "harvest", "schedule", "--workspace", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stderr is not None
        assert "Ctrl-C stops it" in child.stderr.readline()  # the loop has started: then stop it
        child.send_signal(stop)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0
    assert "scheduler stopped" in err and "Traceback" not in err
