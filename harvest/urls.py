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
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from harvest.download import DownloadPool
from harvest.fetch import FetchPolicy, FetchResult, Resolver
from harvest.urllists import UrlRow, read_url_list
from storage.catalog import (
    FrontierEntry,
    FrontierUpdate,
    SourceInfo,
    add_urls,
    finish_run,
    frontier_counts,
    job_key,
    mark_batch,
    pending,
    requeue_failed,
    start_run,
)
from storage.ingest import IngestItem, Ingestor, IngestSummary, Outcome, Prepared, commit_due
from storage.workspace import Workspace

__all__ = ["RETRYABLE_KINDS", "UrlsResult", "harvest_urls"]

logger = logging.getLogger(__name__)

# Fetch errors worth another try on a rerun; every other kind is final for the URL (state "skipped").
RETRYABLE_KINDS = frozenset({"timeout", "http_5xx", "rate_limited", "connection"})
ROWS_PER_INSERT = 2000
PENDING_PAGE = 1000
FLUSH_EVERY = 256  # frontier updates per write transaction
FLUSH_SECONDS = 1.0

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


class _FrontierWriter:
    """Buffer frontier state changes and write them in batches (one transaction per few hundred URLs)."""

    def __init__(self, workspace: Workspace, job: str) -> None:
        self.catalog = workspace.catalog
        self.job = job
        self.buffer: list[FrontierUpdate] = []
        self.last_flush = time.monotonic()

    def add(self, url: str, state: str, detail: str | None, error_kind: str | None = None) -> None:
        self.buffer.append(FrontierUpdate("image", url, state, detail, error_kind))
        if len(self.buffer) >= FLUSH_EVERY or time.monotonic() - self.last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            with self.catalog.write() as conn:
                mark_batch(conn, self.job, self.buffer)
            self.buffer = []
        self.last_flush = time.monotonic()


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
            entries.append(FrontierEntry(url=row.url, kind="image", label=row.label or label))
        with workspace.catalog.write() as conn:
            result.new += add_urls(conn, job, entries)


def _pending_rows(workspace: Workspace, job: str) -> Iterator[dict[str, Any]]:
    after: int | None = None
    while True:
        with workspace.catalog.read() as conn:
            rows = pending(conn, job, "image", limit=PENDING_PAGE, after_id=after)
        if not rows:
            return
        yield from rows
        after = rows[-1]["id"]


def _source(row: dict[str, Any], fetched: FetchResult) -> SourceInfo:
    extra: dict[str, Any] = {"content_type": fetched.content_type}
    if fetched.final_url != row["url"]:
        extra["final_url"] = fetched.final_url
    return SourceInfo(
        kind="url", uri=row["url"], http_status=fetched.status, fetched_at=fetched.fetched_at, extra=extra
    )


def harvest_urls(
    workspace: Workspace,
    path: Path,
    *,
    url_col: str = "url",
    label_col: str | None = None,
    label: str | None = None,
    fmt: str | None = None,
    policy: FetchPolicy | None = None,
    concurrency: int = 32,
    retry_failed: bool = False,
    workers: int | None = None,
    resolver: Resolver | None = None,
    on_start: Callable[[int], None] | None = None,
    on_item: ItemCallback | None = None,
) -> UrlsResult:
    """Fetch and ingest every pending URL of the list at `path`; problems are reported, never raised.

    `retry_failed` re-queues the job's failed URLs without reading the list again (no new URLs).
    """
    started = time.perf_counter()
    policy = policy or FetchPolicy()
    path = Path(path)
    job = job_key("urls", str(path.resolve()))
    config = {
        "path": str(path.resolve()),
        "url_col": url_col,
        "label_col": label_col,
        "label": label,
        "format": fmt,
        "concurrency": concurrency,
        "retry_failed": retry_failed,
        "allow_private": policy.allow_private,
        "obey_robots": policy.obey_robots,
    }
    with workspace.catalog.write() as conn:
        run_id = start_run(conn, "urls", config)
    result = UrlsResult(summary=IngestSummary(), run_id=run_id, job=job)
    status = "interrupted"
    try:
        if not retry_failed:
            rows = read_url_list(path, fmt=fmt, url_col=url_col, label_col=label_col)
            _load_list(workspace, job, rows, label=label, source=path.name, result=result)
        with workspace.catalog.write() as conn:
            requeue_failed(conn, job)
            counts = frontier_counts(conn, job)
        result.previously_skipped = counts["skipped"]
        if not retry_failed:
            result.previously_done = counts["done"]
            result.summary.duplicates += counts["done"]
        if on_start:
            on_start(counts["pending"])
        _fetch_and_ingest(
            workspace, job, result, policy=policy, concurrency=concurrency, workers=workers, resolver=resolver,
            on_item=on_item,
        )  # fmt: skip
        status = "done"
    finally:
        result.seconds = time.perf_counter() - started
        with workspace.catalog.write() as conn:
            finish_run(conn, run_id, status, result.to_json())
    return result


def _fetch_and_ingest(
    workspace: Workspace,
    job: str,
    result: UrlsResult,
    *,
    policy: FetchPolicy,
    concurrency: int,
    workers: int | None,
    resolver: Resolver | None,
    on_item: ItemCallback | None,
) -> None:
    summary = result.summary
    frontier = _FrontierWriter(workspace, job)
    settings = workspace.settings
    count = workers if workers is not None else (settings.ingest.workers or os.cpu_count() or 1)
    processes = count if count > 1 else 0  # one worker: threads of this process
    ingestor = Ingestor.for_workspace(workspace, origin="scrape", run_id=result.run_id)
    rows: dict[int, dict[str, Any]] = {}
    batch: list[tuple[IngestItem, Prepared]] = []

    def tasks() -> Iterator[tuple[int, str]]:
        for row in _pending_rows(workspace, job):
            rows[row["id"]] = row
            yield row["id"], row["url"]

    def failed(row: dict[str, Any], fetched: FetchResult) -> None:
        kind = fetched.error_kind or "connection"
        reason = f"{kind}: {fetched.error}"
        summary.add(Outcome(row["url"], "failed", reason=reason))
        result.errors[kind] += 1
        frontier.add(row["url"], "failed" if kind in RETRYABLE_KINDS else "skipped", reason, kind)
        if on_item:
            on_item("failed", kind)

    def commit() -> None:
        outcomes = ingestor.commit(batch, sync_store=True)  # the workers wrote with durable=False
        batch.clear()
        for outcome in outcomes:
            summary.add(outcome)
            if outcome.status in ("added", "duplicate"):
                frontier.add(outcome.item, "done", outcome.sha256)
            elif outcome.status == "rejected":
                result.errors["rejected"] += 1
                frontier.add(outcome.item, "skipped", f"rejected: {outcome.reason}", "rejected")
            else:
                frontier.add(outcome.item, "failed", outcome.reason, "ingest")
            if on_item:
                on_item(outcome.status, None if outcome.status in ("added", "duplicate") else outcome.status)

    pool = DownloadPool(
        policy,
        store_url=workspace.store.url,
        store_options=settings.store.backend_options(),
        limits=settings.ingest,
        processes=processes,
        threads=-(-concurrency // max(1, processes)),
        resolver=resolver,
    )
    try:
        last_commit = time.monotonic()
        for download in pool.run(tasks()):
            row = rows.pop(download.key)
            if download.prepared is None:
                assert download.fetched is not None
                failed(row, download.fetched)
            else:
                source = _source(row, download.fetched) if download.fetched else SourceInfo(kind="url", uri=row["url"])
                batch.append((IngestItem(source=source, label=row["label"]), download.prepared))
            if commit_due(len(batch), last_commit):
                commit()
                last_commit = time.monotonic()
        commit()
    finally:
        result.fetched = pool.submitted
        pool.close()
        frontier.flush()
