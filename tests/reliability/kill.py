"""SIGKILL at seeded random moments of a real command, and what the catalog must look like after the reruns.

The kill tests (test_kill_collectors.py, test_kill_train.py) run the console scripts as a user runs them, each
in its own process group (`start_new_session`, as a terminal does), and kill them where nothing can clean up:

    span = measure(command(ref), env, progress)      # an uninterrupted reference run: how long it takes
    trials, workspaces = kill_trials(command, env, kill_points(seed), span, fresh, kills=10, left=left)
    # each trial: `curate fsck` finds nothing missing or corrupt, no process of the killed group lives on

Each kill comes at a seeded random moment of the time the run should take: the reference run's start-up (to
its first piece of work: imports, the workspace, the catalog, the run record, the worker pool) and the share
of the rest that this run still has to do (the images not yet catalogued, say), so the moments cover the
start-up, the middle and the end of every run in the sequence. Each run is the same command again and
continues what the killed ones left; one that reaches its end first completes its workspace, and the next
kill goes to a fresh one. Most kills take the whole process group (`os.killpg`: the command and its fork
server and workers at once); some take only the command's own process, as the out-of-memory killer or
`kill -9 PID` do, and then its workers must leave by themselves (issue 16 item 18). Either way no process
of the group may live on after the deadline (`GROUP_DEADLINE`, `LEADER_DEADLINE`).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from curate.fsck import FsckReport, fsck
from storage.catalog.schema import images, labels, runs, sources
from storage.workspace import open_workspace

__all__ = [
    "BIN",
    "Kill",
    "Point",
    "Progress",
    "Span",
    "Tally",
    "Trial",
    "after_a_kill_ok",
    "catalogued",
    "child_environment",
    "expected_seconds",
    "fsck_report",
    "kill_at",
    "kill_points",
    "kill_trials",
    "live_in_group",
    "measure",
    "robots_folders",
    "start",
    "store_objects",
    "tally",
]

BIN = Path(sys.executable).parent
GROUP_DEADLINE = 1.0  # seconds within which every process of a killed group must be gone
LEADER_DEADLINE = 10.0  # ... and of a group whose leader alone was killed (a worker finishes its item, then sees EOF)
LEADER_SHARE = 0.3  # share of the kills that take only the command's own process
POLL = 0.01

Progress = Callable[[], int]


def child_environment(tmpdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a command under test: no GLEANER_* of the caller, its temp folder in `tmpdir` (where
    the test looks for what a killed run left), one thread per torch/BLAS pool (kind to a shared machine, and
    what makes a CPU training run repeatable)."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_") and k != "COLUMNS"}
    return {**environment, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


@dataclass(frozen=True)
class Span:
    """How an uninterrupted run went: seconds to its first piece of work and in all, and its output."""

    startup: float
    seconds: float
    stdout: str


@dataclass(frozen=True)
class Point:
    """Where one trial kills: at `at` (0 to 1) of the time the run is expected to take, the whole process group
    or only the command's own process."""

    at: float
    group: bool

    def __str__(self) -> str:
        return f"at {self.at:.0%} of its time, {'the group' if self.group else 'the leader alone'}"


def kill_points(seed: int) -> Iterator[Point]:
    """Seeded kill points, as many as asked for."""
    rng = random.Random(seed)
    while True:
        yield Point(rng.random(), group=rng.random() >= LEADER_SHARE)


def expected_seconds(span: Span, left: float) -> float:
    """How long a run with `left` (0 to 1) of the reference run's work still to do should take: the start-up,
    and that share of the rest."""
    return span.startup + (span.seconds - span.startup) * left


def start(command: Sequence[str | Path], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    """The command in a process group of its own, as a terminal runs it, its output piped."""
    return subprocess.Popen(
        [str(part) for part in command],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal runs it
    )


def measure(command: Sequence[str | Path], env: dict[str, str], progress: Progress, *, cwd: Path | None = None) -> Span:
    """Run the command to its end (it must exit 0): the reference run whose span the kill points cover."""
    began = time.monotonic()
    first: float | None = None
    process = start(command, env, cwd)
    with _drained(process) as output:
        while process.poll() is None:
            if first is None and progress() > 0:
                first = time.monotonic() - began
            time.sleep(POLL)
    seconds = time.monotonic() - began
    assert process.returncode == 0, output.err
    return Span(startup=first if first is not None else seconds, seconds=seconds, stdout=output.out)


@dataclass
class Kill:
    """One trial: was the command still running when the signal went out, and what of its group lived on."""

    after: float  # seconds from the start to the signal
    group: bool  # the whole process group, or the command's own process alone
    killed: bool
    returncode: int | None
    seconds: float  # from the start until every process of the group was gone
    survivors: list[str] = field(default_factory=list)  # processes of its group alive after the deadline
    stderr: str = ""


def kill_at(
    command: Sequence[str | Path],
    env: dict[str, str],
    seconds: float,
    group: bool,
    *,
    cwd: Path | None = None,
    on_start: Callable[[], None] | None = None,
) -> Kill:
    """Start the command (then call `on_start`: files dropped in while it starts), kill it with SIGKILL
    `seconds` later (its process group, or only its own process), reap it, and wait (up to the deadline) for
    every process of its group to be gone."""
    began = time.monotonic()
    process = start(command, env, cwd)
    if on_start is not None:
        on_start()
    with _drained(process) as output:
        while process.poll() is None and time.monotonic() - began < seconds:
            time.sleep(POLL)
        if process.poll() is None:
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                os.kill(process.pid, signal.SIGKILL)
        process.wait(60)
    killed = process.returncode == -signal.SIGKILL  # not a run that ended on its own just before the signal
    deadline = time.monotonic() + (GROUP_DEADLINE if group else LEADER_DEADLINE)
    while live_in_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = live_in_group(process.pid)
    if survivors:  # leave nothing running behind the test, whatever it then asserts
        os.killpg(process.pid, signal.SIGKILL)
    return Kill(seconds, group, killed, process.returncode, time.monotonic() - began, survivors, output.err)


class _Output:
    out = ""
    err = ""


class _drained:
    """Read the process's stdout and stderr from threads while the caller polls (a full pipe would stall it)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process, self.output = process, _Output()
        self._threads = [
            threading.Thread(target=self._read, args=(process.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(process.stderr, "err"), daemon=True),
        ]

    def _read(self, stream: Any, name: str) -> None:
        setattr(self.output, name, stream.read())

    def __enter__(self) -> _Output:
        for thread in self._threads:
            thread.start()
        return self.output

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(60)
        for thread in self._threads:
            thread.join(10)


def live_in_group(pgid: int) -> list[str]:
    """The processes of process group `pgid` that still run ("pid command"); zombies have exited and count as
    gone (a container's first process may never reap the ones left to it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(f"{entry.name} {stat[stat.find('(') : stat.rfind(')') + 1]}")
    return found


def catalogued(ws: Path) -> Progress:
    """How many images the workspace's catalog holds."""

    def count() -> int:
        with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
            return int(conn.execute(select(func.count()).select_from(images)).scalar_one())

    return count


def store_objects(store: Path) -> Progress:
    """Progress as objects in a local store (written before their catalog rows: the finer measure)."""
    folder = store / "images"

    def count() -> int:
        if not folder.is_dir():
            return 0
        return sum(1 for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".tmp-"))

    return count


def robots_folders(tmpdir: Path) -> list[Path]:
    """The robots.txt folders that download pools left in `tmpdir`."""
    return sorted(tmpdir.glob("gleaner-robots-*"))


def fsck_report(ws: Path) -> FsckReport:
    """What `curate fsck` reports (its library function, in this process: the same check, one start less)."""
    with open_workspace(ws) as workspace:
        return fsck(workspace)


def after_a_kill_ok(report: FsckReport) -> bool:
    """What a kill may leave: orphan objects (stored a moment before their catalog commit; the rerun records
    them, `--fix` removes them). Never a catalogued image without its whole object."""
    return not (report.missing or report.corrupt)


@dataclass(frozen=True)
class Tally:
    """The catalog after the final run, against what the source offered."""

    lost: int  # offered items without their image and source row in the catalog
    doubled: int  # source rows beyond one per offered item, and images the source never offered
    running: list[int]  # collector runs still "running" (a killed run the next one did not mark interrupted)
    set_aside: frozenset[str]  # images in a near-duplicate pair (set aside, or its keeper)
    labels: Counter[str | None]  # the images' current labels

    @property
    def ok(self) -> bool:
        return self.lost == self.doubled == 0 and not self.running


COLLECTOR_RUNS = ("import", "scrape", "urls", "watch", "job")


def tally(ws: Path, offered: dict[str, str], kind: str) -> Tally:
    """`offered`: the source's items (the path or URL the catalog records as the source) -> their bytes' sha256;
    `kind`: the sources' kind (file, url, scrape, watch)."""
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        shas = set(conn.execute(select(images.c.sha256)).scalars())
        recorded = Counter(
            (row.sha256, row.uri)
            for row in conn.execute(select(sources.c.sha256, sources.c.uri).where(sources.c.kind == kind))
        )
        others = conn.execute(select(func.count()).select_from(sources).where(sources.c.kind != kind)).scalar_one()
        pairs = conn.execute(select(images.c.sha256, images.c.duplicate_of).where(images.c.duplicate_of.is_not(None)))
        set_aside = frozenset(sha for pair in pairs for sha in pair)
        running = conn.execute(
            select(runs.c.id).where((runs.c.status == "running") & runs.c.kind.in_(COLLECTOR_RUNS)).order_by(runs.c.id)
        )
        running_ids = [int(run_id) for run_id in running.scalars()]
        label_rows = conn.execute(
            select(labels.c.name).select_from(images.outerjoin(labels, images.c.label_id == labels.c.id))
        )
        label_counts: Counter[str | None] = Counter(label_rows.scalars())
    expected = Counter((sha, uri) for uri, sha in offered.items())
    return Tally(
        lost=sum((expected - recorded).values()),
        doubled=sum((recorded - expected).values()) + len(shas - set(offered.values())) + int(others),
        running=running_ids,
        set_aside=set_aside,
        labels=label_counts,
    )


@dataclass
class Trial:
    """One kill, on which workspace, and what `curate fsck` found after it."""

    ws: Path
    kill: Kill
    report: FsckReport

    @property
    def consistent(self) -> bool:
        """Killed while it ran, nothing of it left running, the store and catalog as a crash may leave them."""
        return self.kill.killed and not self.kill.survivors and after_a_kill_ok(self.report)

    def __str__(self) -> str:
        report = self.report
        return (
            f"{self.ws.name}: SIGKILL to {'the group' if self.kill.group else 'the leader'} after "
            f"{self.kill.after:.2f} s: killed={self.kill.killed} rc={self.kill.returncode} "
            f"gone after {self.kill.seconds:.1f} s "
            f"survivors={self.kill.survivors} missing={len(report.missing)} corrupt={len(report.corrupt)} "
            f"orphans={len(report.orphans)}"
        )


def kill_trials(
    command: Callable[[Path], Sequence[str | Path]],
    env: dict[str, str],
    points: Iterator[Point],
    span: Span,
    fresh: Callable[[int], Path],
    *,
    kills: int,
    left: Callable[[Path], float] | None = None,
    on_start: Callable[[], None] | None = None,
    check: Callable[[Path], FsckReport] | None = None,
    complete: Callable[[Path], bool] | None = None,
) -> tuple[list[Trial], list[Path]]:
    """The same command killed at point after point (each run continues what the killed ones left), with
    `curate fsck` after every kill, until `kills` runs were killed. Each point is a moment of the time the run
    should take (`expected_seconds`, from the reference `span` and the share of the work `left(ws)` says is
    left; without `left`, the whole span). A run that reaches its end before its moment (on a loaded machine,
    near the end, it may) completes its workspace: the next kill goes to a fresh one (`fresh(n)` makes the
    n-th); so does one killed after it had done everything (`complete(ws)`). `check`: what `curate fsck`
    reports after a kill (default: of the workspace itself). Returns the trials and the workspaces, the last
    one still to complete."""
    workspaces = [fresh(0)]
    trials: list[Trial] = []
    while sum(trial.kill.killed for trial in trials) < kills:
        assert len(trials) < 3 * kills, "\n".join(map(str, trials))  # runs that end before any kill: too short
        ws, point = workspaces[-1], next(points)
        seconds = point.at * expected_seconds(span, left(ws) if left else 1.0)
        kill = kill_at(command(ws), env, seconds, point.group, on_start=on_start)
        trials.append(Trial(ws, kill, (check or fsck_report)(ws)))
        if not kill.killed:
            assert kill.returncode == 0, kill.stderr[-3000:]
        if not kill.killed or (complete is not None and complete(ws)):
            workspaces.append(fresh(len(workspaces)))
    return trials, workspaces
