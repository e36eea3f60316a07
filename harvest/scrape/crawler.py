"""The crawl behind `harvest scrape`: a frontier in the catalog, fetches on threads, ingest in processes.

Why it is shaped this way:
- Every page and image URL lives in the catalog's frontier (job = the seeds and the options that change
  what is found), so a rerun continues where the last one stopped: done URLs are skipped, pending ones
  fetched, failed ones retried. A page's discoveries and its `done` mark commit in one transaction, and an
  image is marked done only after ingest committed it; so a SIGKILL at any point loses at most in-flight
  work, which the rerun redoes, and content addressing makes a redone image a duplicate, never a copy.
- Network waits run on a bounded thread pool; decoding and hashing run in `Ingestor.ingest_many`'s worker
  processes; all catalog writes happen on the calling thread (one writer, no lock contention).
- `--render` pages go through one shared Chromium (see `render.py`); their images are fetched again by the
  fetch layer so that robots.txt, size limits and `noai` apply exactly as for static pages.

Depth: seed pages have depth 0 and a link found on a depth-d page has depth d+1. `depth=None` means
0 without `follow` (only the given pages) and FOLLOW_DEPTH with `follow` (deep enough for any pagination a
person would scrape; a site that generates endless unique links ends there). Without `follow`, pages within the
depth follow every in-scope link. Scope is the seeds' hosts (host:port); images may come from any host the
fetch layer allows. A run fetches at most `max_pages` pages (MAX_PAGES by default) and says so when it stops
there; a rerun continues from the frontier.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection

from harvest.download import Download, DownloadPool
from harvest.engine import BatchCommitter, Engine, FetchOptions, Run, frontier_state
from harvest.fetch.client import Fetcher, FetchResult
from harvest.fetch.policy import FetchPolicy
from harvest.labels import InvalidLabel, collector_label
from harvest.scrape.extract import (
    ImageCandidate,
    PageExtract,
    compile_selector,
    extract_page,
    normalize_url,
    parse_html,
)
from harvest.scrape.labels import LabelRule, parse_label_rule
from harvest.scrape.render import Renderer, url_check
from storage.catalog import SourceInfo
from storage.catalog.frontier import (
    FrontierEntry,
    add_urls,
    frontier_counts,
    job_key,
    mark_done,
    mark_failed,
    mark_skipped,
    pending_by_kind,
    requeue_failed,
    requeue_refused,
    retry_urls,
)
from storage.errors import GleanerError
from storage.ingest import IngestItem, IngestSummary, Outcome
from storage.workspace import Workspace

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_SCROLL",
    "ScrapeOptions",
    "ScrapeProgress",
    "ScrapeResult",
    "ScrapeSource",
    "scrape",
    "scrape_job",
]

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 16
DEFAULT_SCROLL = 10
FOLLOW_DEPTH = 50  # link hops followed with --follow and no --depth
MAX_PAGES = 10_000  # pages fetched per run unless --max-pages says otherwise
_BATCH = 256  # frontier rows read per query
_PROGRESS_EVERY = 0.2  # seconds between progress callbacks


@dataclass(frozen=True)
class ScrapeOptions:
    """Everything `harvest scrape` was asked to do; the fields that change what is found make the job key."""

    seeds: tuple[str, ...]
    label: str | None = None
    label_from: str | None = None
    select: str | None = None
    follow: str | None = None
    depth: int | None = None
    render: bool = False
    scroll: int = DEFAULT_SCROLL
    max_images: int | None = None
    max_pages: int | None = None  # None: MAX_PAGES
    concurrency: int = DEFAULT_CONCURRENCY
    allow_private: bool = False
    ignore_robots: bool = False
    retry_failed: bool = False
    ingest_workers: int | None = None
    fetch: FetchOptions | None = None  # user agent and per-host limits; robots and SSRF come from the flags above

    @property
    def max_depth(self) -> int:
        """--depth, else FOLLOW_DEPTH with --follow, else 0 (only the given pages)."""
        if self.depth is not None:
            return self.depth
        return FOLLOW_DEPTH if self.follow else 0

    @property
    def page_budget(self) -> int:
        return MAX_PAGES if self.max_pages is None else self.max_pages

    def policy(self) -> FetchPolicy:
        shared = self.fetch or FetchOptions()
        return replace(shared, allow_private=self.allow_private, obey_robots=not self.ignore_robots).policy()


@dataclass
class ScrapeProgress:
    """Counters for the progress display; a snapshot is passed to `on_progress`."""

    pages_done: int = 0
    pages_failed: int = 0
    pages_queued: int = 0  # page fetches started this run
    images_queued: int = 0  # image fetches started this run
    images_done: int = 0  # images with a final outcome this run (stored, duplicate, rejected or failed)
    added: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # error kind -> count
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.images_done / max(time.monotonic() - self.started, 1e-9)


@dataclass
class ScrapeResult:
    summary: IngestSummary
    progress: ScrapeProgress
    run_id: int
    job: str
    seconds: float
    limited: bool  # stopped early by --max-images or the page budget
    frontier: dict[str, int]
    pages_pending: int
    images_pending: int
    requeued: int
    warnings: list[str] = field(default_factory=list)  # selectors that matched nothing, limits that cut the crawl
    pages_limited: bool = False  # the page budget (not --max-images) stopped the run

    @property
    def error(self) -> str | None:
        """Why the run could do nothing it was asked (every page it tried failed, nothing was collected), for a
        non-zero exit; None when it did something or had nothing left to do (a finished scrape's rerun)."""
        p = self.progress
        if p.pages_done or self.summary.added or self.summary.duplicates or p.images_done:
            return None
        if not p.pages_failed:  # a rerun: nothing left to try; an error only if nothing ever succeeded
            ended = self.frontier.get("skipped", 0) + self.frontier.get("failed", 0)
            if self.frontier.get("done", 0) or not ended or self.pages_pending or self.images_pending:
                return None
            return (
                f"nothing collected: no page of this scrape could be fetched ({ended} refused or failed in earlier"
                " runs; --allow-private, --ignore-robots or --retry-failed may help)"
            )
        first = next((x for x in self.summary.problems if x.get("kind") == "page"), None)
        where = f" ({first['item']}: {first['reason']})" if first else ""
        if p.pages_failed == 1:
            return f"nothing collected: the page could not be fetched{where}"
        return f"nothing collected: none of the {p.pages_failed} pages could be fetched (first{where[1:]}"

    def to_json(self) -> dict[str, Any]:
        """The collectors' shape (DESIGN.md) plus page and frontier counts."""
        p = self.progress
        problems = [{**problem, "kind": problem.get("kind", "image")} for problem in self.summary.problems]
        return {
            **self.summary.to_json(),
            "problems": problems,
            "pages": {
                "fetched": p.pages_done,
                "failed": p.pages_failed,
                "pending": self.pages_pending,
            },
            "images": {"requested": p.images_queued, "pending": self.images_pending},
            "errors": dict(p.errors),
            "frontier": self.frontier,
            "requeued": self.requeued,
            "warnings": self.warnings,
            "complete": self.pages_pending == 0 and self.images_pending == 0,
            "limited": self.limited,
            "job": self.job,
            "run_id": self.run_id,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Task:
    kind: str  # page | image
    url: str
    depth: int
    referrer: str | None
    label: str | None


@dataclass
class _LoadedPage:
    task: _Task
    final_url: str
    status: int | None
    extract: PageExtract | None = None
    page_label: str | None = None
    error_kind: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Sighting:
    """What the page said about an image URL (for provenance; the frontier keeps it too, for a resumed run)."""

    page_url: str
    alt: str | None
    via: str


def _normalize_seeds(seeds: tuple[str, ...]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for seed in seeds:
        url = normalize_url(seed, "")
        if url is None:
            raise GleanerError(f"not an http(s) URL: {seed!r}")
        found.setdefault(url, None)
    if not found:
        raise GleanerError("give at least one page URL to scrape")
    return tuple(found)


def scrape_job(options: ScrapeOptions) -> str:
    """The frontier job of a scrape: its seeds and the options that change what is found, so that the same
    command (or a collection job with the same source) resumes it."""
    max_depth = options.depth if options.depth is not None else (None if options.follow else 0)
    return job_key(
        "scrape",
        *sorted(_normalize_seeds(options.seeds)),
        f"select={options.select or ''}",
        f"follow={options.follow or ''}",
        f"depth={'all' if max_depth is None else max_depth}",
        f"render={int(options.render)}",
    )


def _host(url: str) -> str:
    netloc = urlsplit(url).netloc
    return netloc.rpartition("@")[2].lower()


def _charset(content_type: str | None) -> str | None:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value.strip(" \"'"):
            return value.strip(" \"'")
    return None


def _reason(kind: str | None, error: str | None) -> str:
    return f"{kind or 'error'}: {error or 'failed'}"


def _mark_error(conn: Connection, job: str, kind: str, url: str, error_kind: str | None, reason: str) -> None:
    error_kind = error_kind or "error"
    if frontier_state(error_kind) == "failed":
        mark_failed(conn, job, kind, url, reason, error_kind)
    else:
        mark_skipped(conn, job, kind, url, reason, error_kind)


class _Crawl:
    """One run over one job's frontier. Driven from the calling thread by `scrape()`."""

    def __init__(
        self,
        workspace: Workspace,
        options: ScrapeOptions,
        fetcher: Fetcher | None,
        on_progress: Callable[[ScrapeProgress], None] | None,
    ) -> None:
        self.ws = workspace
        self.options = options
        self.fetcher = fetcher
        self.on_progress = on_progress
        self.seeds = _normalize_seeds(options.seeds)
        self.select = compile_selector(options.select, "--select")
        self.follow = compile_selector(options.follow, "--follow")
        self.rule: LabelRule = parse_label_rule(options.label_from, options.label)
        if options.concurrency < 1:
            raise GleanerError("--concurrency must be at least 1")
        if options.max_images is not None and options.max_images < 0:
            raise GleanerError("--max-images must be zero or more")
        if options.depth is not None and options.depth < 0:
            raise GleanerError("--depth must be zero or more")
        self.scope = {_host(seed) for seed in self.seeds}
        self.job = scrape_job(options)
        self.progress = ScrapeProgress()
        self._matched: dict[str, list[int]] = {"--select": [0, 0], "--follow": [0, 0]}  # option: [pages, matches]
        self.summary = IngestSummary()
        self.limited = False
        self.pages_limited = False  # the page budget stopped the run
        self.page_budget_hit = False  # the run reached its page budget
        self.depth_reached = False  # a page at the last followed depth had links that were not followed
        self.renderer: Renderer | None = None
        self._queues: dict[str, deque[_Task]] = {"page": deque(), "image": deque()}
        self._dirty = {"page": True, "image": True}  # the frontier may hold rows not read yet
        self._cursor: dict[str, int | None] = {"page": None, "image": None}
        self._claimed: dict[str, set[str]] = {"page": set(), "image": set()}
        self._awaiting: dict[str, _Task] = {}  # image URL handed to ingest -> its frontier task
        self._sightings: dict[str, _Sighting] = {}
        self._only: dict[str, set[str]] | None = None  # --retry-failed: the URLs this run may fetch
        self._last_progress = 0.0
        self.engine: Engine | None = None  # set by run(): frontier rows are claimed through it
        self.run_record: Run | None = None

    # --- frontier -----------------------------------------------------------------------------------------

    def _load(self, kind: str) -> None:
        """Read the next pending rows of `kind` (by id, so each row is seen once per run) into the local queue."""
        assert self.engine is not None and self.run_record is not None
        rows = self.engine.claim(self.run_record, self.job, kind, limit=_BATCH, after_id=self._cursor[kind])
        only = self._only[kind] if self._only is not None else None
        for row in rows:
            url = row["url"]
            if url in self._claimed[kind] or (only is not None and url not in only):
                continue
            depth = int(row.get("depth") or 0)
            self._queues[kind].append(_Task(kind, url, depth, row.get("referrer"), row.get("label")))
            extra = row.get("extra") or {}
            if kind == "image" and url not in self._sightings and row.get("referrer"):
                # Queued by an earlier (killed) run: the page's words about the image come from the frontier.
                self._sightings[url] = _Sighting(row["referrer"], extra.get("alt"), extra.get("via", "img"))
        if rows:
            self._cursor[kind] = int(rows[-1]["id"])
        self._dirty[kind] = bool(rows)  # a short batch is not the end: a shared job hands out small ones

    def _available(self, kind: str) -> bool:
        queue = self._queues[kind]
        while not queue and self._dirty[kind]:
            self._load(kind)
        return bool(queue)

    def _next(self, kind: str) -> _Task | None:
        return self._queues[kind].popleft() if self._available(kind) else None

    # --- page work (runs on pool threads) -----------------------------------------------------------------

    def _want_links(self, depth: int) -> bool:
        """Links are followed from pages above the depth limit; with --follow they are also looked for on pages
        at it (not followed), so that the summary can say the limit cut the crawl short."""
        limit = self.options.max_depth
        return depth < limit or (bool(self.options.follow) and depth == limit)

    def _load_page(self, task: _Task) -> _LoadedPage:
        try:
            if self.renderer is not None:
                return self._rendered_page(task)
            assert self.fetcher is not None
            result = self.fetcher.fetch(task.url, kind="page", referer=task.referrer)
            if not result.ok:
                return _LoadedPage(
                    task, result.final_url or task.url, result.status, None, None, result.error_kind, result.error
                )
            return self._parse(
                task, result.final_url or task.url, result.status, result.data or b"", _charset(result.content_type), []
            )
        except Exception as exc:  # a bug or a parser failure must become a problem entry, not a dead crawl
            log.exception("page %s", task.url)
            return _LoadedPage(task, task.url, None, error_kind="parse", error=repr(exc))

    def _rendered_page(self, task: _Task) -> _LoadedPage:
        assert self.renderer is not None
        rendered = self.renderer.render(task.url)
        if not rendered.ok:
            return _LoadedPage(
                task, rendered.final_url, rendered.status, None, None, rendered.error_kind, rendered.error
            )
        return self._parse(task, rendered.final_url, rendered.status, rendered.html, None, rendered.image_urls)

    def _parse(
        self,
        task: _Task,
        final_url: str,
        status: int | None,
        html: bytes | str,
        encoding: str | None,
        loaded_images: list[str],
    ) -> _LoadedPage:
        soup = parse_html(html, encoding)
        extract = extract_page(
            soup, final_url, select=self.select, follow=self.follow, collect_links=self._want_links(task.depth)
        )
        if self.select is None:  # images the browser loaded that the DOM no longer shows (virtual lists)
            known = {c.url for c in extract.images}
            for raw in loaded_images:
                url = normalize_url(raw, final_url)
                if url and url not in known:
                    known.add(url)
                    extract.images.append(ImageCandidate(url, None, "response"))
        return _LoadedPage(task, final_url, status, extract, self.rule.page_value(soup, final_url))

    # --- results (calling thread) -------------------------------------------------------------------------

    def _page_loaded(self, page: _LoadedPage) -> None:
        task = page.task
        self._claimed["page"].discard(task.url)
        if page.extract is None:
            self.progress.pages_failed += 1
            self.progress.errors[page.error_kind or "error"] += 1
            reason = _reason(page.error_kind, page.error)
            self.summary.failed += 1
            self.summary.problems.append({"item": task.url, "reason": reason, "kind": "page"})
            mark = partial(
                _mark_error, job=self.job, kind="page", url=task.url, error_kind=page.error_kind, reason=reason
            )
            self.ws.catalog.transact(mark, what="recording a page error")
            return
        for option, count in (("--select", page.extract.selected), ("--follow", page.extract.followed)):
            if count is not None:
                self._matched[option][0] += 1
                self._matched[option][1] += count
        if task.depth == 0:  # a seed that redirected to another host brings that host into scope
            self.scope.add(_host(page.final_url))
        images: list[FrontierEntry] = []
        for candidate in page.extract.images:
            try:
                label = collector_label(self.rule.image_label(page.page_label, candidate.alt))
            except InvalidLabel as exc:  # this image only: the crawl goes on
                self.summary.add(Outcome(candidate.url, "rejected", reason=str(exc)))
                continue
            said = {"alt": candidate.alt, "via": candidate.via}
            images.append(FrontierEntry(candidate.url, "image", task.depth, page.final_url, label, extra=said))
            self._sightings.setdefault(candidate.url, _Sighting(page.final_url, candidate.alt, candidate.via))
        below_limit = task.depth < self.options.max_depth
        links = [
            FrontierEntry(link, "page", depth=task.depth + 1, referrer=page.final_url)
            for link in page.extract.links
            if _host(link) in self.scope
        ]
        if not below_limit:
            self.depth_reached = self.depth_reached or bool(links)
            links = []

        def record(conn: Connection) -> tuple[int, int]:
            new_images = add_urls(conn, self.job, images) if images else 0
            new_pages = add_urls(conn, self.job, links) if links else 0
            mark_done(conn, self.job, "page", task.url)
            return new_images, new_pages

        new_images, new_pages = self.ws.catalog.transact(record, what="recording a page")
        self._dirty["image"] = self._dirty["image"] or new_images > 0
        self._dirty["page"] = self._dirty["page"] or new_pages > 0
        self.progress.pages_done += 1

    def _image_failed(self, task: _Task, result: FetchResult) -> None:
        self._claimed["image"].discard(task.url)
        reason = _reason(result.error_kind, result.error)
        self.progress.errors[result.error_kind or "error"] += 1
        self.progress.images_done += 1
        self.summary.failed += 1
        self.summary.problems.append({"item": task.url, "reason": reason, "kind": "image"})
        mark = partial(
            _mark_error, job=self.job, kind="image", url=task.url, error_kind=result.error_kind, reason=reason
        )
        self.ws.catalog.transact(mark, what="recording an image error")

    def _ingested(self, outcome: Outcome) -> None:
        task = self._awaiting.pop(outcome.item, None)
        self.summary.add(outcome)
        self.progress.images_done += 1
        self.progress.added += outcome.status == "added"
        if outcome.status == "rejected":
            self.progress.errors["rejected"] += 1
        if task is None:
            return
        self._claimed["image"].discard(task.url)
        url = task.url

        def mark(conn: Connection) -> None:
            if outcome.status in ("added", "duplicate"):
                mark_done(conn, self.job, "image", url, sha256=outcome.sha256)
            elif outcome.status == "rejected":
                mark_skipped(conn, self.job, "image", url, f"rejected: {outcome.reason}", "rejected")
            else:
                mark_failed(conn, self.job, "image", url, outcome.reason or "failed", "ingest")

        self.ws.catalog.transact(mark, what="recording an image")
        self._tick()

    def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.on_progress and (force or now - self._last_progress >= _PROGRESS_EVERY):
            self._last_progress = now
            self.on_progress(self.progress)

    # --- the loop -----------------------------------------------------------------------------------------

    def _budget_left(self) -> bool:
        """False once --max-images fetches were started; the run then stops and says it was limited."""
        cap = self.options.max_images
        if cap is not None and self.progress.images_queued >= cap:
            self.limited = self.limited or self._available("image") or self._available("page")
            return False
        return True

    def _pages_left(self) -> bool:
        """False once the run started its page budget of fetches (--max-pages, MAX_PAGES by default)."""
        if self.progress.pages_queued < self.options.page_budget:
            return True
        self.page_budget_hit = True  # limited when pages are left at the end (run() looks at the frontier)
        return False

    def _loop(self, pages_pool: ThreadPoolExecutor, downloads: DownloadPool, committer: BatchCommitter) -> None:
        """Pages load on threads of this process; images go to the download workers, which fetch, validate,
        hash and store them (the bytes stay there); what they prepared is committed here in batches."""
        concurrency = self.options.concurrency
        # Pages get a quarter of the slots while images wait, all of them otherwise; rendered pages go one
        # at a time through the one browser.
        page_slots = max(1, concurrency // 4)
        pages: dict[Future[_LoadedPage], _Task] = {}
        images: dict[int, _Task] = {}
        keys = itertools.count()
        while True:
            moved = True
            while moved:
                moved = False
                budget = self._budget_left()
                images_ok = budget and self._available("image")
                page_cap = 1 if self.options.render else page_slots if images_ok else concurrency
                if budget and len(pages) < page_cap and self._pages_left() and self._available("page"):
                    task = self._next("page")
                    if task is not None:
                        self._claimed["page"].add(task.url)
                        self.progress.pages_queued += 1
                        pages[pages_pool.submit(self._load_page, task)] = task
                        moved = True
                if images_ok and downloads.room() and (task := self._next("image")) is not None:
                    self._claimed["image"].add(task.url)
                    self.progress.images_queued += 1
                    key = next(keys)
                    images[key] = task
                    downloads.submit(key, task.url, task.referrer)
                    moved = True
            if not pages and not images:
                return
            if images:
                answers = downloads.collect(timeout=0.02 if pages else _PROGRESS_EVERY)
            else:
                wait(pages, timeout=_PROGRESS_EVERY, return_when=FIRST_COMPLETED)
                answers = []
            for download in answers:
                self._downloaded(images.pop(download.key), download, committer)
            for future in [f for f in pages if f.done()]:
                pages.pop(future)
                self._page_loaded(future.result())
            committer.maybe_commit()
            self._tick()

    def _downloaded(self, task: _Task, download: Download, committer: BatchCommitter) -> None:
        fetched, prepared = download.fetched, download.prepared
        if prepared is None:
            assert fetched is not None
            self._image_failed(task, fetched)
            return
        seen = self._sightings.get(task.url)
        extra: dict[str, Any] = {"job": self.job, "depth": task.depth}
        if seen is not None:
            extra["via"] = seen.via
        if fetched is not None and fetched.final_url and fetched.final_url != task.url:
            extra["final_url"] = fetched.final_url
        if fetched is not None and fetched.content_type:
            extra["content_type"] = fetched.content_type
        source = SourceInfo(
            kind="scrape",
            uri=task.url,
            page_url=seen.page_url if seen else task.referrer,
            alt_text=seen.alt if seen else None,
            http_status=fetched.status if fetched else None,
            fetched_at=(fetched.fetched_at if fetched else None) or datetime.now(UTC),
            extra=extra,
        )
        self._awaiting[task.url] = task
        committer.add(IngestItem(source=source, label=task.label), prepared)

    def _recorded(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self._ingested(outcome)

    def _queue_seeds(self, conn: Connection) -> int:
        """The seeds, and what earlier runs failed or refused for a lifted check, queued; returns how many
        rows were queued again."""
        add_urls(conn, self.job, [FrontierEntry(seed, "page", depth=0) for seed in self.seeds])
        flags = (("robots", self.options.ignore_robots), ("ssrf", self.options.allow_private))
        lifted = [kind for kind, on in flags if on]
        if self.options.retry_failed:
            self._only = retry_urls(conn, self.job, lifted)
        return requeue_refused(conn, self.job, lifted) + requeue_failed(conn, self.job)

    def run(self, engine: Engine, run: Run) -> ScrapeResult:
        started = time.monotonic()
        self.summary = run.summary
        self.engine, self.run_record = engine, run
        run.report["job"] = self.job
        engine.free_stale_claims(self.job)
        requeued = self.ws.catalog.transact(self._queue_seeds, what="queueing the seeds")
        committer = BatchCommitter(engine.ingestor(run, origin="scrape"), self._recorded)
        pages_pool = ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="scrape")
        # A live thread before the download workers are made: forking a process that runs fetch threads is
        # unsafe, and the pool picks a thread-safe start method when it sees one.
        pages_pool.submit(lambda: None).result()
        own_fetcher = self.fetcher is None
        downloads = engine.download_pool(self.options.concurrency, share_with_parent=own_fetcher)
        try:
            if self.fetcher is None:
                self.fetcher = downloads.parent_fetcher()  # pages share the workers' per-host limits and robots
            if self.options.render:
                self.renderer = Renderer(
                    check_url=url_check(self.fetcher, not self.options.ignore_robots),
                    user_agent=self.fetcher.policy.user_agent,
                    scroll_rounds=self.options.scroll,
                )
            self._loop(pages_pool, downloads, committer)
            committer.commit()
        finally:
            pages_pool.shutdown(wait=False, cancel_futures=True)
            downloads.close()
            engine.release_claims(run, self.job)  # rows claimed but not done (--max-images, Ctrl-C)
            if self.renderer is not None:
                self.renderer.close()
            if own_fetcher and self.fetcher is not None:
                self.fetcher.close()
            counts = self.ws.catalog.transact(partial(frontier_counts, job=self.job), write=False)
            run.report["frontier"] = counts
        left = self.ws.catalog.transact(partial(pending_by_kind, job=self.job), write=False)
        if self.page_budget_hit and left.get("page", 0):
            self.limited = self.pages_limited = True  # a take-over pass must not start a new budget
        self._tick(force=True)
        return ScrapeResult(
            summary=self.summary,
            progress=self.progress,
            run_id=run.id,
            job=self.job,
            seconds=time.monotonic() - started,
            limited=self.limited,
            frontier=counts,
            pages_pending=left.get("page", 0),
            images_pending=left.get("image", 0),
            requeued=requeued,
            warnings=self._selector_warnings() + self._limit_warnings(),
            pages_limited=self.pages_limited,
        )

    def _limit_warnings(self) -> list[str]:
        """What stopped the crawl short of the site's end, said in the summary (a run that ends silently at a
        limit looks like a site with nothing more)."""
        found = []
        if self.pages_limited:
            found.append(
                f"stopped after {self.options.page_budget:,} pages (the page budget: --max-pages); "
                "run the same command again to continue"
            )
        if self.depth_reached:
            given = "--depth" if self.options.depth is not None else f"the default depth with --follow ({FOLLOW_DEPTH})"
            found.append(
                f"links on pages at depth {self.options.max_depth} were not followed ({given}); "
                "pass a larger --depth to go further"
            )
        return found

    def _selector_warnings(self) -> list[str]:
        """A --select or --follow that matched nothing on any page fetched is almost always a wrong selector."""
        given = {"--select": self.options.select, "--follow": self.options.follow}
        return [
            f"{option} {given[option]!r} matched nothing on the {pages} page{'s' if pages > 1 else ''} fetched"
            for option, (pages, matches) in self._matched.items()
            if pages and not matches
        ]


class ScrapeSource:
    """The `scrape` source: a crawl from seed pages over the job's frontier."""

    kind = "scrape"

    def __init__(
        self,
        options: ScrapeOptions,
        *,
        fetcher: Fetcher | None = None,
        on_progress: Callable[[ScrapeProgress], None] | None = None,
    ) -> None:
        self.options = options
        self.fetcher = fetcher
        self.on_progress = on_progress
        self.result: ScrapeResult | None = None

    def config(self) -> dict[str, Any]:
        o = self.options
        return {
            "seeds": list(o.seeds), "label": o.label, "label_from": o.label_from, "select": o.select,
            "follow": o.follow, "depth": o.max_depth, "render": o.render, "max_images": o.max_images,
            "max_pages": o.page_budget,
        }  # fmt: skip

    def collect(self, engine: Engine, run: Run) -> None:
        crawl = _Crawl(engine.workspace, self.options, self.fetcher, self.on_progress)
        self.result = crawl.run(engine, run)


def scrape(
    workspace: Workspace,
    options: ScrapeOptions,
    *,
    fetcher: Fetcher | None = None,
    on_progress: Callable[[ScrapeProgress], None] | None = None,
) -> ScrapeResult:
    """Crawl from `options.seeds` and ingest every image found; problems are reported, never raised.

    `fetcher` (tests) loads the pages; the images are fetched by the download workers with its policy."""
    source = ScrapeSource(options, fetcher=fetcher, on_progress=on_progress)
    policy = fetcher.policy if fetcher is not None else options.policy()
    resolver = fetcher.resolver if fetcher is not None else None
    Engine(workspace, workers=options.ingest_workers, policy=policy, resolver=resolver).run(source)
    assert source.result is not None
    return source.result
