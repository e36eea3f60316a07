"""The collection engine: what every collector shares, with the collectors plugged in as sources.

A `Source` (folder, urls, scrape, watch; `SOURCES` maps names to them) knows where images come from. The
engine owns what each collector used to repeat:

- the run record: `Engine.record()` is a context manager that writes the `runs` row at the start and its
  status (done, interrupted, failed) and summary at the end, whatever happens in between;
- an admission hook (`Admission`, e.g. a targets-driven job's gate): asked per image before it is fetched
  (frontier rows carry their label) or ingested (local files), so no source repeats the filtering;
- frontier claims with leases (`Engine.claims`): a job's pending rows are taken in batches under this
  process's name, so several workers can share one job; a heartbeat renews a live worker's leases, so a killed
  worker's claims lapse within LEASE_SECONDS (at once on its own host), and with `join` the other workers
  wait for the job's held rows and take over what a dead worker leaves;
- per-host politeness and the fetch policy: one `FetchOptions` (user agent, per-host rate and concurrency,
  robots, SSRF guard) for every web source;
- worker processes with per-task crash isolation that validate, hash and store (files are read and URLs
  fetched by the workers themselves, so image bytes never cross processes): `Engine.ingest` for local files
  (storage.parallel, one item per worker at a time) and `Engine.download_pool` for URLs (harvest.download);
- batch commits (`BatchCommitter`: one catalog transaction per 64 images or half a second), progress
  callbacks, and the summary in the collectors' JSON shape.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import Connection

from harvest.fetch.policy import DEFAULT_USER_AGENT, FetchPolicy
from harvest.heartbeat import Heartbeat
from storage.catalog import FrontierUpdate, mark_batch
from storage.catalog.frontier import claim, frontier_counts, lease_owner, release_claims, release_stale
from storage.catalog.hosts import claimable, held_by_others
from storage.catalog.targets import refresh_targets
from storage.catalog.workers import WorkerHeartbeat, end_worker_run, start_worker_run, worker_name
from storage.ingest import IngestItem, Ingestor, IngestSummary, Outcome, Prepared, commit_due
from storage.workspace import Workspace

if TYPE_CHECKING:  # the web sources' modules load on first use: `harvest import` does not pay for requests
    from harvest.download import DownloadPool
    from harvest.fetch import Resolver

__all__ = [
    "RETRIED_ERRORS",
    "SOURCES",
    "Admission",
    "BatchCommitter",
    "Engine",
    "FetchOptions",
    "FrontierWriter",
    "Refusal",
    "Run",
    "Source",
    "frontier_state",
    "source_factory",
]

log = logging.getLogger(__name__)

CLAIM_BATCH = 1000  # frontier rows claimed per query (a source with few in flight claims fewer, to share a job)
LEASE_SECONDS = 120.0  # a claim lapses after this long unless the worker's heartbeat renews it
HEARTBEAT_SECONDS = 30.0  # how often a live worker renews its leases
JOIN_POLL_SECONDS = 1.0  # how often a worker waiting for the others' claims looks again
SHARED_CLAIM_BATCH = 32  # rows per claim on a shared job: claimed as needed, so that every worker gets a share
FLUSH_EVERY = 256  # frontier updates per write transaction
FLUSH_SECONDS = 1.0

OutcomeCallback = Callable[[Outcome], None]

# Error kinds worth another try on a rerun (frontier state `failed`): passing trouble, a browser that would not
# start, a page that crashed the parser or the tab, a worker that died. Every other kind is final for the URL
# (state `skipped`): 404s, wrong content types, redirect loops, oversized bodies, noai, pages the browser
# refused to show, robots and SSRF refusals, images ingest rejected. A rerun that lifts a refusal
# (--ignore-robots, --allow-private) re-queues what it refused, by kind.
RETRIED_ERRORS = frozenset({"timeout", "http_5xx", "rate_limited", "connection", "parse", "browser", "crash", "ingest"})


def frontier_state(error_kind: str | None) -> str:
    """`failed` (retried by a rerun) or `skipped` (final) for a URL that ended with this error kind."""
    return "failed" if (error_kind or "error") in RETRIED_ERRORS else "skipped"


@dataclass(frozen=True)
class FetchOptions:
    """The fetch options every web source shares (`--user-agent`, `--per-host-rate`, `--per-host-concurrency`,
    `--allow-private`, `--ignore-robots`, `--item-timeout`); the rest of `FetchPolicy` keeps its defaults."""

    user_agent: str | None = None
    per_host_rate: float = 10.0
    per_host_concurrency: int = 16
    allow_private: bool = False
    obey_robots: bool = True
    item_timeout: float = 60.0  # FetchPolicy.item_deadline: one page or image, retries included

    @classmethod
    def from_flags(
        cls,
        *,
        user_agent: str | None = None,
        per_host_rate: float = 10.0,
        per_host_concurrency: int = 16,
        allow_private: bool = False,
        ignore_robots: bool = False,
        item_timeout: float = 60.0,
    ) -> FetchOptions:
        """From the web collectors' flags, as the CLI parses them and collection jobs name them."""
        return cls(
            user_agent=user_agent,
            per_host_rate=float(per_host_rate),
            per_host_concurrency=int(per_host_concurrency),
            allow_private=allow_private,
            obey_robots=not ignore_robots,
            item_timeout=float(item_timeout),
        )

    def policy(self, **overrides: Any) -> FetchPolicy:
        return FetchPolicy(
            user_agent=self.user_agent or DEFAULT_USER_AGENT,
            per_host_rate=self.per_host_rate,
            per_host_concurrency=self.per_host_concurrency,
            allow_private=self.allow_private,
            obey_robots=self.obey_robots,
            item_deadline=self.item_timeout,
            **overrides,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "user_agent": self.user_agent,
            "per_host_rate": self.per_host_rate,
            "per_host_concurrency": self.per_host_concurrency,
            "allow_private": self.allow_private,
            "obey_robots": self.obey_robots,
            "item_timeout": self.item_timeout,
        }


@dataclass
class Run:
    """One collection run: its catalog id, the summary it builds, extra report keys, and a stop request."""

    id: int
    kind: str
    summary: IngestSummary = field(default_factory=IngestSummary)
    report: dict[str, Any] = field(default_factory=dict)  # recorded with the summary, e.g. frontier counts
    started: float = field(default_factory=time.perf_counter)
    status: str = "running"
    stop: threading.Event = field(default_factory=threading.Event)  # set by a signal handler: finish and end

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def to_json(self) -> dict[str, Any]:
        return {**self.summary.to_json(), **self.report, "run_id": self.id, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Refusal:
    """Why an admission hook passed an image over: `kind` becomes the frontier row's error kind (so a later run
    can re-queue it by kind), `reason` the text."""

    kind: str
    reason: str


@runtime_checkable
class Admission(Protocol):
    """Whether the run takes an image with this label, asked before it is fetched or ingested (a targets-driven
    job's gate: harvest.jobs.gate). It counts what it admits; once `closed`, claims return nothing. A hook with
    `admit_many(conn, labels)` is asked about a claim batch's images at once, in the claiming transaction."""

    @property
    def closed(self) -> bool: ...

    def admit(self, label: str | None) -> Refusal | None: ...


@runtime_checkable
class Source(Protocol):
    """Where images come from. `collect` feeds them through the engine into `run`; it returns when done (or
    when `run.stop` is set) and reports problems in `run.summary`, never by raising."""

    kind: str  # the run record's kind: import, urls, scrape, watch

    def config(self) -> dict[str, Any]: ...

    def collect(self, engine: Engine, run: Run) -> None: ...


# name -> "module:attribute" of the source's factory, imported on first use (the sources import the engine).
SOURCES: dict[str, str] = {
    "folder": "harvest.importer:FolderSource",
    "urls": "harvest.urls:UrlListSource",
    "scrape": "harvest.scrape.crawler:ScrapeSource",
    "watch": "harvest.watch:WatchSource",
}


def source_factory(name: str) -> Callable[..., Source]:
    """The factory registered under `name` (a KeyError names the known sources)."""
    try:
        module_name, _, attribute = SOURCES[name].partition(":")
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}") from None
    factory: Callable[..., Source] = getattr(importlib.import_module(module_name), attribute)
    return factory


class Engine:
    """Runs sources against one workspace with one set of worker and fetch settings."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        workers: int | None = None,
        fetch: FetchOptions | None = None,
        policy: FetchPolicy | None = None,
        resolver: Resolver | None = None,
        on_outcome: OutcomeCallback | None = None,
        shared: bool | None = None,
        scope: str | None = None,
        admission: Admission | None = None,
    ) -> None:
        """`shared`: politeness (rate, robots.txt) through the catalog and `join`, for runs several workers
        serve; None means on a PostgreSQL catalog. `scope`: what the workers of one run share robots.txt
        answers under (a job run's id), else this run's. `admission`: asked per image before it is fetched or
        ingested."""
        self.admission = admission
        self.shared = workspace.catalog.dialect == "postgresql" if shared is None else shared
        self.scope = scope
        self.current: Run | None = None
        self._heartbeats: dict[int, Heartbeat] = {}
        self._passes: dict[int, int] = {}  # run id -> frontier rows ended when its last pass over a job ended
        self.workspace = workspace
        self.workers = workers
        self.fetch = fetch or FetchOptions()
        self._policy = policy
        self.resolver = resolver
        self.on_outcome = on_outcome

    # --- the run record ---------------------------------------------------------------------------------

    @contextmanager
    def record(self, kind: str, config: dict[str, Any]) -> Iterator[Run]:
        """Start a run row; at the end record its status and summary, also after an error or Ctrl-C. The run has
        a worker row with a heartbeat, so that the next run marks it interrupted if this process is killed."""
        owner = worker_name()
        catalog = self.workspace.catalog
        started = catalog.transact(lambda conn: start_worker_run(conn, kind, config, owner), what="starting the run")
        run = Run(id=started.run_id, kind=kind)
        if started.interrupted:  # killed runs found on the way (SIGKILL, a dead machine): no longer "running"
            run.report["interrupted_runs"] = started.interrupted
        self.current = run
        status = "interrupted"
        try:
            with WorkerHeartbeat(self.workspace.catalog, run.id, owner):
                yield run
            status = "interrupted" if run.status == "interrupted" else "done"
        except Exception:
            status = "failed"
            raise
        finally:
            self.end(run)
            run.status = status
            summary = {**run.summary.to_json(), **run.report, "seconds": run.seconds}

            def finish(conn: Connection) -> None:
                end_worker_run(conn, run.id, owner, status, summary)
                refresh_targets(conn)  # a target this run's images met closes, whichever collector ran

            catalog.transact(finish, what="ending the run")

    def run(self, source: Source) -> Run:
        """Collect from `source` under one run record; returns the finished run (summary, report). A source's
        optional `check()` runs first: a user error it raises (a bad --label, a missing path) records no run."""
        check = getattr(source, "check", None)
        if callable(check):
            check()
        with self.record(source.kind, source.config()) as run:
            self.serve(source, run)
        return run

    def serve(self, source: Source, run: Run) -> None:
        """Collect from `source` into a run that is already recorded (a job run serves several sources); on a
        shared job, wait for the other workers' claims and take over a dead worker's rows."""
        self.current = run
        source.collect(self, run)
        self._give_back(run)
        while self.shared and self._take_over(source, run):
            source.collect(self, run)  # a dead worker's rows: resume the job where it stopped
            self._give_back(run)

    def _give_back(self, run: Run) -> None:
        """After a complete pass every row this worker took is marked; give back any it still holds."""
        job = run.report.get("job")
        if isinstance(job, str):
            self.release_claims(run, job)

    def end(self, run: Run) -> None:
        """Stop renewing the run's leases (its rows were marked or given back)."""
        if (heartbeat := self._heartbeats.pop(run.id, None)) is not None:
            heartbeat.stop()

    def _take_over(self, source: Source, run: Run) -> bool:
        """After a complete pass over a shared job: wait while other workers hold its rows; True when rows came
        free for this worker (a dead worker's, or ones the others added since), so it collects again; False
        when nobody holds any (the job's work is done), or when its last pass could not finish a single row
        of those it found free (rows it leaves by design: --retry-failed takes only the failed ones)."""
        job = run.report.get("job")
        limited = getattr(getattr(source, "result", None), "limited", False)  # --max-images: stop here
        limited = limited or getattr(getattr(source, "options", None), "retry_failed", False)  # one retry each
        if not isinstance(job, str) or limited or (self.admission is not None and self.admission.closed):
            return False
        owner = lease_owner(run.id)
        ended = self.workspace.catalog.transact(lambda conn: _ended(conn, job), write=False)
        stalled = self._passes.get(run.id) == ended  # the pass before ended no row
        self._passes[run.id] = ended
        while not run.stop.is_set():
            freed = self.free_stale_claims(job)
            free, held = self.workspace.catalog.transact(
                lambda conn: (claimable(conn, job), held_by_others(conn, job, owner)), write=False
            )
            if freed or (free and not stalled):
                return True
            if not held:
                return False
            stalled = False  # the others still work: what they add or leave is new
            run.stop.wait(JOIN_POLL_SECONDS)
        return False

    # --- workers ----------------------------------------------------------------------------------------

    def worker_count(self) -> int:
        """Processes for validating and hashing: --workers, else the workspace setting, else one per core."""
        if self.workers is not None:
            return max(1, self.workers)
        return self.workspace.settings.ingest.workers or os.cpu_count() or 1

    def ingestor(self, run: Run, *, origin: str = "folder") -> Ingestor:
        return Ingestor.for_workspace(self.workspace, origin=origin, run_id=run.id)

    def ingest(self, run: Run, items: Iterable[IngestItem], *, origin: str = "folder") -> Iterator[Outcome]:
        """Ingest items whose bytes the workers read themselves (`path`), in batches; each outcome is counted in
        the run's summary and reported to `on_outcome`. A worker that dies fails only the item it had."""
        ingestor = self.ingestor(run, origin=origin)
        if self.admission is not None:
            items = self._admitted(items, self.admission)
        for outcome in ingestor.ingest_many(items, workers=self.workers):
            run.summary.add(outcome)
            if self.on_outcome:
                self.on_outcome(outcome)
            yield outcome

    @staticmethod
    def _admitted(items: Iterable[IngestItem], admission: Admission) -> Iterator[IngestItem]:
        """Local files whose label the admission hook takes (it counts the ones it passes over)."""
        return (item for item in items if admission.admit(item.label) is None)

    def reject(self, run: Run, item: str, reason: str) -> Outcome:
        """An item refused before any worker saw it (a label that cannot be made valid): one problem entry,
        counted and reported like the workers' outcomes."""
        outcome = Outcome(item, "rejected", reason=reason)
        run.summary.add(outcome)
        if self.on_outcome:
            self.on_outcome(outcome)
        return outcome

    @property
    def policy(self) -> FetchPolicy:
        return self._policy or self.fetch.policy()

    def download_pool(self, concurrency: int, *, share_with_parent: bool = False) -> DownloadPool:
        """Worker processes (threads each) that fetch, validate, hash and store; politeness shared across them."""
        from harvest.download import DownloadPool
        from harvest.fetch.catalogshare import SharedPoliteness

        count = self.worker_count()
        processes = count if count > 1 else 0  # one worker: threads of this process
        settings = self.workspace.settings
        shared = None
        if self.shared:
            run_id = self.current.id if self.current is not None else None
            scope = self.scope or f"run:{run_id}"
            shared = SharedPoliteness(self.workspace.catalog.url, scope, lease_owner(run_id))
        return DownloadPool(
            self.policy,
            store_url=self.workspace.store.url,
            store_options=settings.store.backend_options(),
            limits=settings.ingest,
            processes=processes,
            threads=-(-concurrency // max(1, processes)),
            resolver=self.resolver,
            share_with_parent=share_with_parent,
            shared=shared,
        )

    # --- the frontier -----------------------------------------------------------------------------------

    def claims(
        self, run: Run, job: str, kind: str | None = None, *, batch: int = CLAIM_BATCH
    ) -> Generator[dict[str, Any], None, None]:
        """The job's pending rows, claimed in batches under this run's lease. Closed early (an interrupted run),
        it gives back the claims still held; at its end the rows handed out stay claimed until they are marked
        (they are still in flight: another worker must not take them). Claims of killed runs are freed first."""
        self.free_stale_claims(job)
        after: int | None = None
        ended = False
        try:
            while rows := self.claim(run, job, kind, limit=batch, after_id=after):
                yield from rows
                after = int(rows[-1]["id"])
            ended = True
        finally:
            if not ended:
                self.release_claims(run, job)

    def claim(
        self, run: Run, job: str, kind: str | None = None, *, limit: int = CLAIM_BATCH, after_id: int | None = None
    ) -> list[dict[str, Any]]:
        """One batch of the job's pending rows nobody else holds, claimed for this run (in insertion order)."""
        heartbeat = self._heartbeats.get(run.id)
        if heartbeat is None:
            heartbeat = Heartbeat(
                self.workspace.catalog, lease_owner(run.id), lease_seconds=LEASE_SECONDS, every=HEARTBEAT_SECONDS
            )
            self._heartbeats[run.id] = heartbeat
        heartbeat.watch(job)
        if self.shared:
            limit = min(limit, SHARED_CLAIM_BATCH)
        if self.admission is not None:
            return self._claim_admitted(run, job, kind, self.admission, limit=limit, after_id=after_id)
        take = partial(
            claim, job=job, owner=lease_owner(run.id), kind=kind, limit=limit, lease_seconds=LEASE_SECONDS,
            after_id=after_id,
        )  # fmt: skip
        return self.workspace.catalog.transact(take, what="claiming URLs")

    def _claim_admitted(
        self, run: Run, job: str, kind: str | None, admission: Admission, *, limit: int, after_id: int | None
    ) -> list[dict[str, Any]]:
        """Claim as `claim` does, asking `admission` about each image row: a refused row is marked skipped with
        the refusal's kind and reason in the same transaction, and claiming goes on until `limit` rows were
        taken or the job has no more (so a caller that reads a short batch as the end is right)."""
        kept: list[dict[str, Any]] = []
        checkpoint = getattr(admission, "checkpoint", None)
        while not admission.closed:
            state = checkpoint() if callable(checkpoint) else None
            rows = self.workspace.catalog.transact(
                partial(self._claim_batch, run, job, kind, admission, kept, limit=limit, after_id=after_id),
                on_retry=partial(_undo_claim, kept, len(kept), admission, state),
                what="claiming URLs",
            )
            if len(kept) >= limit or len(rows) < limit:
                break
            after_id = int(rows[-1]["id"])
        return kept

    def _claim_batch(
        self,
        run: Run,
        job: str,
        kind: str | None,
        admission: Admission,
        kept: list[dict[str, Any]],
        conn: Connection,
        *,
        limit: int,
        after_id: int | None,
    ) -> list[dict[str, Any]]:
        """One claim transaction of `_claim_admitted`; the rows admitted go to `kept`. Returns the rows claimed."""
        rows = claim(
            conn, job, lease_owner(run.id), kind=kind, limit=limit, lease_seconds=LEASE_SECONDS, after_id=after_id
        )
        refused = []
        images = [row for row in rows if row["kind"] == "image"]
        admit_many = getattr(admission, "admit_many", None)  # one budget reservation for the batch
        if callable(admit_many):
            answers = admit_many(conn, [r.get("label") for r in images])
            verdicts = dict(zip(map(id, images), answers, strict=True))
        else:
            verdicts = {id(row): admission.admit(row.get("label")) for row in images}
        for row in rows:
            why = verdicts.get(id(row))
            if why is None:
                kept.append(row)
            else:
                refused.append(FrontierUpdate(row["kind"], row["url"], "skipped", why.reason, why.kind))
        if refused:
            mark_batch(conn, job, refused)
        return rows

    def free_stale_claims(self, job: str) -> int:
        """Free the claims of runs that are gone (killed on this host, or lapsed): a rerun resumes at once."""
        freed = self.workspace.catalog.transact(lambda conn: release_stale(conn, job), what="freeing stale claims")
        if freed:
            log.info("freed %d frontier claims of runs that are gone", freed)
        return freed

    def release_claims(self, run: Run, job: str) -> None:
        owner = lease_owner(run.id)
        self.workspace.catalog.transact(lambda conn: release_claims(conn, job, owner), what="giving back claims")

    def frontier_writer(self, job: str) -> FrontierWriter:
        return FrontierWriter(self.workspace, job)


def _undo_claim(kept: list[dict[str, Any]], before: int, admission: Admission, state: Any) -> None:
    """Put back what a claim transaction that did not commit changed in memory: the rows it kept, and the
    admission's counts (`restore`, where the admission has `checkpoint`), so that its next attempt counts once."""
    del kept[before:]
    if state is not None:
        admission.restore(state)  # type: ignore[attr-defined]


def _ended(conn: Any, job: str) -> int:
    """Rows of the job that are no longer pending (done, failed or skipped)."""
    counts = frontier_counts(conn, job)
    return sum(count for state, count in counts.items() if state != "pending")


class FrontierWriter:
    """Buffer frontier state changes and write them in batches (one transaction per few hundred URLs)."""

    def __init__(self, workspace: Workspace, job: str) -> None:
        self.catalog = workspace.catalog
        self.job = job
        self.buffer: list[FrontierUpdate] = []
        self.last_flush = time.monotonic()

    def add(self, update: FrontierUpdate) -> None:
        self.buffer.append(update)
        if len(self.buffer) >= FLUSH_EVERY or time.monotonic() - self.last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            updates = self.buffer
            self.catalog.transact(lambda conn: mark_batch(conn, self.job, updates), what="recording URL states")
            self.buffer = []
        self.last_flush = time.monotonic()


class BatchCommitter:
    """Gather what workers prepared and record it in one catalog transaction per batch (ingest step 3)."""

    def __init__(self, ingestor: Ingestor, on_outcomes: Callable[[list[Outcome]], None]) -> None:
        self.ingestor = ingestor
        self.on_outcomes = on_outcomes
        self.batch: list[tuple[IngestItem, Prepared]] = []
        self.since = time.monotonic()

    def add(self, item: IngestItem, prepared: Prepared) -> None:
        self.batch.append((item, prepared))
        self.maybe_commit()

    def maybe_commit(self) -> None:
        if commit_due(len(self.batch), self.since):
            self.commit()

    def commit(self) -> None:
        batch, self.batch, self.since = self.batch, [], time.monotonic()
        if batch:
            self.on_outcomes(self.ingestor.commit(batch, sync_store=True))  # the workers wrote with durable=False
            self.ingestor.stop_if_full(batch)  # a full store disk ends the run once this batch is recorded
