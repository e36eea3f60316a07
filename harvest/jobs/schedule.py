"""When jobs are due, and a foreground scheduler that runs them (`harvest schedule`).

The catalog is the scheduler's memory: a job's last run is the newest `runs` row of that job, whoever started
it (this scheduler, a person, cron, a pod). A job is due when a slot of its schedule has passed since its last
run, so a job missed while no scheduler ran runs once, not once per missed slot; a job never run is due.
The clock and the runner are injected, so the scheduling logic is tested with a fake clock and no processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from harvest.jobs.config import Job
from storage.errors import GleanerError

__all__ = [
    "ChildRunner",
    "Clock",
    "JobResult",
    "JobRunner",
    "Pass",
    "Scheduler",
    "SystemClock",
    "due_now",
    "is_due",
    "job_command",
    "next_due",
    "next_run",
    "parse_job_output",
]

_COUNTS = ("added", "duplicates", "near_duplicates", "rejected", "failed")
_MAX_WAIT = 60.0  # seconds between looks at gleaner.toml and the catalog, however far the next slot is


def next_run(job: Job, after: datetime) -> datetime | None:
    """The first slot of the job's schedule strictly after `after` (UTC), or None for a job with no schedule.

    Slots are wall-clock times in the job's timezone, each run once: a time the clocks skip (spring forward)
    runs when the gap ends, and a time they repeat (fall back) runs at its first occurrence only."""
    if job.schedule is None:
        return None
    from croniter import croniter

    after_utc = _utc(after)
    zone = job.zone
    slots = croniter(job.schedule, after_utc.astimezone(zone).replace(tzinfo=None))
    for _ in range(10_000):  # a valid expression has a slot within a few years; this only bounds the loop
        wall: datetime = slots.get_next(datetime)
        for instant in _instants(wall, zone):
            if instant > after_utc:
                return instant
    return None


def is_due(job: Job, last: datetime | None, now: datetime) -> bool:
    """Whether the job should run at `now`: it has a schedule, and it never ran or a slot passed since."""
    if job.schedule is None:
        return False
    if last is None:
        return True
    slot = next_run(job, last)
    return slot is not None and slot <= _utc(now)


def _utc(moment: datetime) -> datetime:
    """Aware UTC (a naive time is taken as UTC, as the catalog writes it). Comparing aware times in one zone
    compares wall clocks and ignores DST folds, so every comparison here is made in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    back = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return back == wall


def _instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants a local wall time names: one, two in a repeated hour, the gap's end in a skipped one."""
    if not _exists(wall, zone):
        moment = wall.replace(second=0, microsecond=0)
        for _ in range(24 * 60):
            moment += timedelta(minutes=1)
            if _exists(moment, zone):
                return [moment.replace(tzinfo=zone).astimezone(UTC)]
        return []
    return sorted({wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)})


class Clock(Protocol):
    """Where the scheduler reads the time and waits; tests pass one whose sleep only moves the time on."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock (UTC). Ctrl-C interrupts its sleep."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class JobResult:
    """One run of one job as the scheduler saw it: the status and counts `harvest jobs run --json` printed."""

    job: str
    status: str
    started_at: datetime
    run_id: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "interrupted") and self.error is None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "job": self.job,
            "status": self.status,
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            **{key: self.counts.get(key, 0) for key in _COUNTS},
        }
        if self.error is not None:
            document["error"] = self.error
        return document


class JobRunner(Protocol):
    """Runs one job to its end and says how it went; never raises for a job that failed."""

    def __call__(self, job: Job, /) -> JobResult: ...


@dataclass(frozen=True)
class Pass:
    """One look at the jobs: what ran, and when each scheduled job runs next."""

    at: datetime
    ran: list[JobResult]
    next: list[tuple[str, datetime | None]]

    def to_json(self) -> dict[str, Any]:
        return {
            "ran": [result.to_json() for result in self.ran],
            "next": [{"job": name, "next_run": when.isoformat() if when else None} for name, when in self.next],
        }


class Scheduler:
    """Runs due jobs one at a time. `jobs` and `last_runs` are read again on every pass, so an edited
    gleaner.toml and runs started elsewhere count without a restart."""

    def __init__(
        self,
        jobs: Callable[[], Sequence[Job]],
        last_runs: Callable[[], Mapping[str, datetime]],
        runner: JobRunner,
        clock: Clock | None = None,
        *,
        on_start: Callable[[Job], None] | None = None,
        on_finish: Callable[[JobResult], None] | None = None,
        max_wait: float = _MAX_WAIT,
    ) -> None:
        self._jobs = jobs
        self._last_runs = last_runs
        self._runner = runner
        self.clock: Clock = clock or SystemClock()
        self._on_start = on_start
        self._on_finish = on_finish
        self._max_wait = max_wait
        # Attempts this scheduler made: a job that fails before it records a run must not be retried at once.
        self._attempts: dict[str, datetime] = {}

    def last(self) -> dict[str, datetime]:
        """Each job's last start: the catalog's, or this scheduler's own attempt when that is newer."""
        found = {name: _utc(when) for name, when in self._last_runs().items()}
        for name, when in self._attempts.items():
            if name not in found or found[name] < when:
                found[name] = when
        return found

    def run_pass(self) -> Pass:
        """Run every job due now, in the order gleaner.toml lists them, then say when each runs next."""
        jobs = [job for job in self._jobs() if job.schedule is not None]
        ran: list[JobResult] = []
        for job in jobs:
            now = _utc(self.clock.now())
            last = self.last()  # again for each job: one that ran long gave others time to start runs elsewhere
            if not is_due(job, last.get(job.name), now):
                continue
            self._attempts[job.name] = now
            if self._on_start:
                self._on_start(job)
            result = self._run(job, now)
            ran.append(result)
            if self._on_finish:
                self._on_finish(result)
        at = _utc(self.clock.now())
        last = self.last()
        return Pass(at=at, ran=ran, next=[(job.name, next_due(job, last.get(job.name), at)) for job in jobs])

    def run_forever(
        self,
        on_pass: Callable[[Pass], None] | None = None,
        passes: int | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """Pass after pass, sleeping until the next slot (at most `max_wait`); until Ctrl-C, or `passes`.

        An error in the first pass (a typo in gleaner.toml, no catalog) stops the scheduler, so a mistake is seen
        at once; a later one (gleaner.toml edited badly, the database restarting) is reported to `on_error` and
        the pass tried again after `max_wait`, so a scheduler left running survives it."""
        done = 0
        while passes is None or done < passes:
            try:
                result: Pass | None = self.run_pass()
            except Exception as exc:
                if done == 0:
                    raise
                result = None
                if on_error:
                    on_error(f"{type(exc).__name__}: {exc}" if not isinstance(exc, GleanerError) else str(exc))
            done += 1
            if result is not None and on_pass:
                on_pass(result)
            if passes is not None and done >= passes:
                return
            self.clock.sleep(self._wait(result) if result is not None else self._max_wait)

    def _wait(self, result: Pass) -> float:
        upcoming = [when for _, when in result.next if when is not None]
        if not upcoming:
            return self._max_wait
        seconds = (min(upcoming) - _utc(self.clock.now())).total_seconds()
        return min(max(seconds, 0.0), self._max_wait)

    def _run(self, job: Job, now: datetime) -> JobResult:
        try:
            return self._runner(job)
        except Exception as exc:  # a runner that breaks fails that job, never the scheduler
            return JobResult(job=job.name, status="failed", started_at=now, error=f"{type(exc).__name__}: {exc}")


def next_due(job: Job, last: datetime | None, now: datetime) -> datetime | None:
    """When a scheduler runs the job next, given its last start: `now` when it is due (never run, or a slot
    missed since), else its next slot; None without a schedule. What `harvest jobs list` can show as next_run."""
    if job.schedule is None:
        return None
    if last is None or is_due(job, last, now):
        return now
    return next_run(job, last)


def due_now(jobs: Iterable[Job], last: Mapping[str, datetime], now: datetime) -> list[Job]:
    """The jobs due at `now` given each one's last start (a pure view of what a pass would run)."""
    return [job for job in jobs if is_due(job, last.get(job.name), now)]


def job_command(name: str, root: Path) -> list[str]:
    """`harvest jobs run NAME --json --workspace ROOT` with this interpreter (no PATH or venv to find)."""
    return [sys.executable, "-m", "harvest", "jobs", "run", name, "--json", "--workspace", str(root)]


class ChildRunner:
    """Runs each job as its own `harvest jobs run` process, so a crash in a job never stops the scheduler.

    The child has its own session: Ctrl-C reaches the scheduler only, which passes one SIGINT on and waits
    up to `grace` seconds for the child to record its run as interrupted before it kills it."""

    def __init__(
        self, root: Path, *, grace: float = 60.0, command: Callable[[str, Path], list[str]] = job_command
    ) -> None:
        self.root = root
        self.grace = grace
        self._command = command

    def __call__(self, job: Job) -> JobResult:
        started = datetime.now(UTC)
        command = self._command(job.name, self.root)
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            out, _ = child.communicate()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            try:
                child.communicate(timeout=self.grace)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
            raise
        return parse_job_output(job.name, child.returncode, out, started)


def parse_job_output(name: str, returncode: int, stdout: str, started: datetime) -> JobResult:
    """The JobResult of a finished `harvest jobs run --json`: its document, or why there is none."""
    try:
        document = json.loads(stdout)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        how = f"killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        why = f"harvest jobs run {name} {how} without a result (its messages are above)"
        return JobResult(job=name, status="failed", started_at=started, error=why)
    counts = {key: int(document[key]) for key in _COUNTS if isinstance(document.get(key), int)}
    error = document.get("error")
    status = str(document.get("status") or ("failed" if returncode or error else "done"))
    if returncode and status not in ("failed", "interrupted"):
        status = "failed"
    run_id = document.get("run_id")
    return JobResult(
        job=name,
        status=status,
        started_at=started,
        run_id=run_id if isinstance(run_id, int) else None,
        counts=counts,
        error=str(error) if error is not None else None,
    )
