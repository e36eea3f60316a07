"""`harvest urls`: fetch the images of a URL list into the workspace, resumably.

Flow: stream the list's rows into the catalog frontier (job = hash of the list's absolute path) → hand
the job's pending URLs to download workers (harvest.download: processes whose threads fetch, validate,
hash and store each image; bounded in flight) → record the images in the catalog and each URL's outcome
in the frontier, in batches. A rerun skips done and skipped URLs and retries failed ones, so a killed run
resumes where it stopped; content addressing makes a URL fetched twice (killed before its frontier row was
marked) a harmless duplicate, never a second image.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from harvest.engine import RETRIED_ERRORS, BatchCommitter, Engine, FetchOptions, Run, frontier_state
from harvest.fetch import FetchPolicy, FetchResult, Resolver
from harvest.labels import InvalidLabel, collector_label, fallback_label
from harvest.urllists import UrlRow, read_url_list
from storage.catalog import (
    FrontierEntry,
    FrontierUpdate,
    SourceInfo,
    add_urls,
    frontier_counts,
    job_key,
    requeue_failed,
)
from storage.ingest import IngestItem, IngestSummary, Outcome
from storage.workspace import Workspace

__all__ = ["RETRYABLE_KINDS", "UrlListSource", "UrlsResult", "harvest_urls"]

logger = logging.getLogger(__name__)

# Fetch errors worth another try on a rerun; every other kind is final for the URL (state "skipped").
RETRYABLE_KINDS = RETRIED_ERRORS
ROWS_PER_INSERT = 2000

ItemCallback = Callable[[str, str | None], None]  # (status, error kind or None)


@dataclass
class UrlsResult:
    summary: IngestSummary
    run_id: int
    job: str
    listed: int = 0  # rows read from the list in this run
    new: int = 0  # URLs the frontier did not have yet
    previously_done: int = 0  # URLs done by earlier runs (counted as duplicates)
    previously_skipped: int = 0  # URLs refused for good by earlier runs (robots, 404, not an image...)
    fetched: int = 0  # URLs attempted in this run
    errors: Counter[str] = field(default_factory=Counter)  # fetch error kinds and "rejected"
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary.to_json(),
            "run_id": self.run_id,
            "job": self.job,
            "listed": self.listed,
            "new": self.new,
            "fetched": self.fetched,
            "previously_done": self.previously_done,
            "previously_skipped": self.previously_skipped,
            "errors_by_kind": dict(sorted(self.errors.items())),
            "seconds": round(self.seconds, 3),
        }


def _load_list(
    workspace: Workspace,
    job: str,
    rows: Iterator[UrlRow],
    *,
    label: str | None,
    source: str,
    result: UrlsResult,
) -> None:
    """Stream rows into the frontier in chunks; unusable rows become `rejected` problems."""
    while chunk := list(islice(rows, ROWS_PER_INSERT)):
        entries = []
        for row in chunk:
            result.listed += 1
            if row.url is None or row.problem:
                result.summary.add(Outcome(f"{source}:{row.line}", "rejected", reason=row.problem or "no URL"))
                continue
            try:
                row_label = collector_label(row.label) or label
            except InvalidLabel as exc:  # this row only: the run goes on
                result.summary.add(Outcome(f"{source}:{row.line}", "rejected", reason=str(exc)))
                continue
            entries.append(FrontierEntry(url=row.url, kind="image", label=row_label))
        queue = partial(add_urls, job=job, entries=entries)
        result.new += workspace.catalog.transact(queue, what="queueing URLs")


def _source(row: dict[str, Any], fetched: FetchResult) -> SourceInfo:
    extra: dict[str, Any] = {"content_type": fetched.content_type}
    if fetched.final_url != row["url"]:
        extra["final_url"] = fetched.final_url
    return SourceInfo(
        kind="url", uri=row["url"], http_status=fetched.status, fetched_at=fetched.fetched_at, extra=extra
    )


@dataclass
class UrlListSource:
    """The `urls` source: a URL list streamed into the frontier, its pending URLs claimed and downloaded by the
    engine's workers (fetch, validate, hash and store where the bytes arrive), outcomes recorded in batches."""

    path: Path
    url_col: str = "url"
    label_col: str | None = None
    label: str | None = None
    fmt: str | None = None
    concurrency: int = 32
    retry_failed: bool = False
    on_start: Callable[[int], None] | None = None
    on_item: ItemCallback | None = None
    kind: str = "urls"
    result: UrlsResult | None = None

    @property
    def job(self) -> str:
        return job_key("urls", str(Path(self.path).resolve()))

    def config(self) -> dict[str, Any]:
        return {
            "path": str(Path(self.path).resolve()),
            "url_col": self.url_col,
            "label_col": self.label_col,
            "label": self.label,
            "format": self.fmt,
            "concurrency": self.concurrency,
            "retry_failed": self.retry_failed,
        }

    def check(self) -> None:
        """User errors, before a run is recorded."""
        fallback_label(self.label)

    def _requeue_failed(self, conn: Connection) -> dict[str, int]:
        requeue_failed(conn, self.job)
        return frontier_counts(conn, self.job)

    def collect(self, engine: Engine, run: Run) -> None:
        workspace = engine.workspace
        result = self.result = UrlsResult(summary=run.summary, run_id=run.id, job=self.job)
        run.report["job"] = self.job
        path = Path(self.path)
        try:
            if not self.retry_failed:
                rows = read_url_list(path, fmt=self.fmt, url_col=self.url_col, label_col=self.label_col)
                _load_list(workspace, self.job, rows, label=fallback_label(self.label), source=path.name, result=result)
            counts = workspace.catalog.transact(self._requeue_failed, what="queueing failed URLs again")
            result.previously_skipped = counts["skipped"]
            if not self.retry_failed:
                result.previously_done = counts["done"]
                result.summary.duplicates += counts["done"]
            if self.on_start:
                self.on_start(counts["pending"])
            self._fetch_and_ingest(engine, run, result)
        finally:
            result.seconds = run.seconds
            run.report.update({k: v for k, v in result.to_json().items() if k not in run.summary.to_json()})

    def _fetch_and_ingest(self, engine: Engine, run: Run, result: UrlsResult) -> None:
        summary = result.summary
        frontier = engine.frontier_writer(self.job)
        rows: dict[int, dict[str, Any]] = {}
        on_item = self.on_item

        def tasks() -> Generator[tuple[int, str], None, None]:
            # Claimed a few windows at a time, so that a second run of the same list shares the work.
            for row in engine.claims(run, self.job, "image", batch=max(16, 4 * self.concurrency)):
                rows[row["id"]] = row
                yield row["id"], row["url"]

        def failed(row: dict[str, Any], fetched: FetchResult) -> None:
            kind = fetched.error_kind or "connection"
            reason = f"{kind}: {fetched.error}"
            summary.add(Outcome(row["url"], "failed", reason=reason))
            result.errors[kind] += 1
            state = frontier_state(kind)
            frontier.add(FrontierUpdate("image", row["url"], state, reason, kind))
            if on_item:
                on_item("failed", kind)

        def recorded(outcomes: list[Outcome]) -> None:
            for outcome in outcomes:
                summary.add(outcome)
                if outcome.status in ("added", "duplicate"):
                    frontier.add(FrontierUpdate("image", outcome.item, "done", outcome.sha256))
                elif outcome.status == "rejected":
                    result.errors["rejected"] += 1
                    reason = f"rejected: {outcome.reason}"
                    frontier.add(FrontierUpdate("image", outcome.item, "skipped", reason, "rejected"))
                else:
                    frontier.add(FrontierUpdate("image", outcome.item, "failed", outcome.reason, "ingest"))
                if on_item:
                    on_item(outcome.status, None if outcome.status in ("added", "duplicate") else outcome.status)

        committer = BatchCommitter(engine.ingestor(run, origin="scrape"), recorded)
        pool = engine.download_pool(self.concurrency)
        claimed = tasks()
        try:
            for download in pool.run(claimed):
                row = rows.pop(download.key)
                if download.prepared is None:
                    assert download.fetched is not None
                    failed(row, download.fetched)
                    continue
                source = _source(row, download.fetched) if download.fetched else SourceInfo(kind="url", uri=row["url"])
                committer.add(IngestItem(source=source, label=row["label"]), download.prepared)
            committer.commit()
        finally:
            result.fetched = pool.submitted
            pool.close()
            frontier.flush()  # the outcomes first, then the claims still held are given back
            claimed.close()


def harvest_urls(
    workspace: Workspace,
    path: Path,
    *,
    url_col: str = "url",
    label_col: str | None = None,
    label: str | None = None,
    fmt: str | None = None,
    policy: FetchPolicy | None = None,
    fetch: FetchOptions | None = None,
    concurrency: int = 32,
    retry_failed: bool = False,
    workers: int | None = None,
    resolver: Resolver | None = None,
    on_start: Callable[[int], None] | None = None,
    on_item: ItemCallback | None = None,
) -> UrlsResult:
    """Fetch and ingest every pending URL of the list at `path`; problems are reported, never raised.

    `retry_failed` re-queues the job's failed URLs without reading the list again (no new URLs). The fetch
    manners come from `fetch` (the CLI's options) or a whole `policy`.
    """
    source = UrlListSource(
        Path(path), url_col=url_col, label_col=label_col, label=label, fmt=fmt, concurrency=concurrency,
        retry_failed=retry_failed, on_start=on_start, on_item=on_item,
    )  # fmt: skip
    engine = Engine(workspace, workers=workers, fetch=fetch, policy=policy, resolver=resolver)
    engine.run(source)
    assert source.result is not None
    return source.result
