"""One worker of a collection job's run: `harvest jobs run NAME`.

A job never has two runs at once; several workers may serve one. A worker starts the job's run, or joins the
one in progress (storage.catalog.workers: atomic under a per-job lock), then runs the job's sources on the
engine with one gate (harvest.jobs.gate) and shared politeness: web sources claim frontier rows under leases,
so workers split the work, wait for each other's claims, and take over a dead worker's rows. To put N workers
on one run, start `harvest jobs run NAME` N times (N processes, N pods of an Indexed Job): the first starts the
run, the others join it; each exits 0 when the run's work is done, and the last one out finishes the run.

Folder and watch sources read files of the machine that started the run, so only the starting worker runs
them. `max_images` and `max_per_label` are per run: every worker's gate reserves what it admits from the
run's budget in the catalog (storage.catalog.budgets), so N workers together stay within them.

With `targets = true` a pass begins from the open targets (their `collected` counts what has arrived); a
label's quota is run-wide (what its target wanted when the run first reserved one of its images, reserved by
every worker in the catalog), so N workers together admit no more than the target wants. A label whose quota
was used but whose target is still open (some images were duplicates or failed) gets another pass, as long as
the last one admitted something: the worker that finds no other worker's images in flight renews the quota to
what the target still wants; the run stops when every target is met.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import Connection

from harvest.engine import Engine, Run
from harvest.jobs.config import Job
from harvest.jobs.gate import REFUSAL_KINDS, TARGET, JobGate
from harvest.jobs.sources import WEB_OPTIONS, PlannedSource, plan_source, target_source
from storage.catalog.budgets import renew_quotas
from storage.catalog.frontier import lease_owner, pending_by_kind, requeue_refused
from storage.catalog.hosts import held_by_others
from storage.catalog.labels import label_key
from storage.catalog.targets import Target, list_targets, open_targets, refresh_targets
from storage.catalog.workers import JoinedRun, LeftRun, WorkerHeartbeat, leave, start_or_join, worker_name
from storage.errors import GleanerError
from storage.workspace import Workspace

__all__ = ["JobReport", "plan_job", "run_job"]

log = logging.getLogger(__name__)

EventCallback = Callable[[str, str], None]  # (what, detail): "joined", "source", "skipped"...


@dataclass
class JobReport:
    """What one worker did for the job's run, and the run's state when it left."""

    job: str
    run_id: int
    status: str  # the run's status after this worker left: done, interrupted, failed, or running (others on it)
    started: bool  # this worker started the run (False: it joined one in progress)
    finished: bool  # this worker was the last one out and finished the run
    run: Run
    gate: JobGate
    targets: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None  # why it ended early: targets met, no open targets, max_images, interrupted
    interrupted_runs: list[int] = field(default_factory=list)  # earlier runs found abandoned, marked interrupted
    run_summary: dict[str, Any] | None = None  # every worker's counts together, when this worker finished the run

    def to_json(self) -> dict[str, Any]:
        return {
            **self.run.summary.to_json(),
            "job": self.job,
            "run_id": self.run_id,
            "status": self.status,
            "targets": self.targets,
            "skipped": self.gate.to_json(),
            "already_catalogued": int(self.run.report.get("already_catalogued", 0)),  # folder files passed over
            "stopped": self.stopped,
            "sources": self.sources,
            "worker": {"owner": worker_name(), "started_run": self.started, "finished_run": self.finished},
            "interrupted_runs": self.interrupted_runs,
            "run": self.run_summary,
            "seconds": round(self.run.seconds, 3),
        }


def plan_job(job: Job, targets: list[Target]) -> list[PlannedSource]:
    """The job's sources, checked; with `targets = true`, plus a scrape of each open target's `--source` URLs."""
    plans = [plan_source(spec) for spec in job.sources]
    if job.targets:
        web = next((s.options for s in job.sources if s.kind in ("scrape", "urls")), {})
        manners = {key: web[key] for key in WEB_OPTIONS if key in web}
        plans += [target_source(t.label, list(t.sources), manners) for t in targets if t.sources]
    return plans


def run_job(workspace: Workspace, job: Job, *, on_event: EventCallback | None = None) -> JobReport:
    """Serve one run of `job` as one worker (starting the run or joining it); returns what this worker did.
    A user error in the job (a bad selector, a missing file) is raised before any run is recorded."""
    catalog = workspace.catalog
    at_start = catalog.transact(open_targets, write=False)
    plans = plan_job(job, at_start)
    owner = worker_name()
    config = {"job": job.name, "spec": job.to_json()}

    def start(conn: Connection) -> JoinedRun:
        joined = start_or_join(conn, job.name, config, owner)
        if joined.started:  # what earlier runs passed over for targets or budgets is looked at again
            for frontier in {p.frontier for p in plans if p.frontier}:
                requeue_refused(conn, frontier, REFUSAL_KINDS)
        return joined

    joined = catalog.transact(start, what="starting or joining the run")
    tell = on_event or (lambda _what, _detail: None)
    tell("started" if joined.started else "joined", f"run {joined.run_id}")
    gate = JobGate(targets=job.targets, max_images=job.max_images, max_per_label=job.max_per_label)
    gate.bind(catalog, joined.run_id)
    run = Run(id=joined.run_id, kind="job")
    report = JobReport(job.name, run.id, "running", joined.started, False, run, gate)
    report.interrupted_runs = joined.interrupted
    report.sources = [{"kind": p.kind, "source": p.name, "frontier": p.frontier} for p in plans]
    status = "interrupted"
    try:
        with WorkerHeartbeat(catalog, run.id, owner), _sigterm_interrupts():
            report.stopped = _Passes(workspace, job, plans, gate, run, joined.started, tell).go()
        status = "interrupted" if run.stop.is_set() else "done"
    except KeyboardInterrupt:
        report.stopped = "interrupted"
    except BaseException:
        status = "failed"
        raise
    finally:
        gate.release()  # what it reserved for local files and did not admit goes back to the run's budget
        summary = {**run.summary.to_json(), "skipped": gate.to_json()}

        def finish(conn: Connection) -> LeftRun:
            left = leave(conn, run.id, owner, status, summary)
            refresh_targets(conn)  # a target the run's images met closes
            served = {t.id for t in at_start}
            report.targets = [_target_json(t) for t in list_targets(conn, include_closed=True) if t.id in served]
            return left

        left = catalog.transact(finish, what="leaving the run")
        report.status, report.finished, report.run_summary = left.status, left.finished, left.summary
    return report


def _target_json(target: Target) -> dict[str, Any]:
    return {
        "label": target.label,
        "want": target.want,
        "collected": target.collected,
        "open": target.is_open,
        "status": target.status,
    }


class _Passes:
    """The passes of one worker over the job's sources (the first runs every source, later ones the web sources
    whose frontier still has work)."""

    def __init__(
        self,
        workspace: Workspace,
        job: Job,
        plans: list[PlannedSource],
        gate: JobGate,
        run: Run,
        started: bool,
        tell: EventCallback,
    ) -> None:
        self.workspace, self.job, self.plans, self.gate, self.run = workspace, job, plans, gate, run
        self.started, self.tell = started, tell

    def go(self) -> str | None:
        first = True
        while True:
            self.gate.begin_pass(self.workspace.catalog.transact(open_targets, write=False))
            if self.job.targets and not self.gate.remaining:
                return "targets met" if not first else "no open targets"
            for plan in self.plans:
                if self.run.stop.is_set() or self.gate.closed:
                    break
                if first and plan.local and not self.started:
                    continue  # the files are on the machine of the worker that started the run
                if not first and (plan.local or not self._has_work(plan)):
                    continue
                fresh = first and self.started  # a joined worker does not read a URL list again (the rows are queued)
                self._serve(plan, plan.source if fresh else plan.again())
            first = False
            if self.run.stop.is_set():
                return "interrupted"
            if self.gate.budget_spent:
                return "max_images"
            if not self.job.targets:
                return None
            if not self._another_pass():
                return self._targets_state()

    def _serve(self, plan: PlannedSource, source: Any) -> None:
        self.tell("source", plan.name)
        engine = Engine(
            self.workspace, fetch=plan.fetch, shared=True, scope=f"job-run:{self.run.id}", admission=self.gate
        )
        self.run.report.pop("job", None)  # set by a web source: the frontier job the engine waits on
        try:
            engine.serve(source, self.run)
        except GleanerError as exc:  # this source cannot run (e.g. a seed refused): one problem, the others go on
            self.run.summary.problems.append({"item": plan.name, "reason": str(exc)})
        except Exception as exc:
            log.exception("source %s", plan.name)
            self.run.summary.problems.append({"item": plan.name, "reason": f"crash: {exc!r}"})
        finally:
            engine.end(self.run)
            self.gate.release()  # local files reserved and not admitted: the other workers may take them

    def _has_work(self, plan: PlannedSource) -> bool:
        assert plan.frontier is not None
        frontier = plan.frontier
        return bool(self.workspace.catalog.transact(lambda conn: pending_by_kind(conn, frontier), write=False))

    def _another_pass(self) -> bool:
        """Whether targets are still open after a pass that admitted something (some of its images were
        duplicates or failed): then the rows refused for a pass quota are queued again, and another pass goes
        on if any web source has rows left. A pass that admitted nothing ends the run, so passes make progress."""
        if not sum(self.gate.pass_admitted.values()):
            return False
        frontiers = sorted({p.frontier for p in self.plans if p.frontier})
        return self.workspace.catalog.transact(partial(self._renew, frontiers), what="renewing target quotas")

    def _renew(self, frontiers: list[str], conn: Connection) -> bool:
        refresh_targets(conn)
        still = {label_key(t.label) for t in open_targets(conn)}
        if not still:
            return False
        if any(key in still for key in self.gate.met_refused):
            owner = lease_owner(self.run.id)
            if any(held_by_others(conn, frontier, owner) for frontier in frontiers):
                return False  # their images are in flight: the last worker out renews the quotas
            renew_quotas(conn, self.run.id, {label_key(t.label): t.remaining for t in open_targets(conn)})
            for frontier in frontiers:
                requeue_refused(conn, frontier, [TARGET])
        return any(pending_by_kind(conn, frontier) for frontier in frontiers)

    def _targets_state(self) -> str | None:
        return None if self.workspace.catalog.transact(open_targets, write=False) else "targets met"


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a pod or systemd stopping) ends the worker like Ctrl-C: claims given back, the run left."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
