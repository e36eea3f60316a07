"""Download images in worker processes: fetch, validate, hash and store where the bytes arrive.

Fetching (requests) and preparing an image (decode, hashes, store write: storage.ingest.prepare) both cost
CPU. Done in one process, the fetch threads and the catalog writer fight over one GIL, and every body is
copied once more to reach an ingest process. Here each worker process runs `threads` threads, and each
thread fetches an image and prepares it right away; only the facts (a few hundred bytes) travel back.
The parent keeps what must be serial: the catalog transaction (ingest step 3) and the frontier.

Politeness stays per run, not per process: the workers share one SharedHostLimiter (per-host rate,
concurrency, Retry-After, failure pauses) and one robots.txt folder (one fetch per origin). With `shared`
(a PostgreSQL catalog, or a job run several workers serve) the rate, Crawl-delay, Retry-After holds and
robots.txt answers are shared through the catalog instead, with every worker on every machine
(harvest.fetch.catalogshare); concurrency caps and failure pauses stay with this worker's processes.

A worker that dies (out-of-memory killer, a crash in a decoder) loses only its tasks in flight, which come
back as failed downloads (retried by a rerun), and a fresh worker takes its place. With `processes=0` the
same worker loop runs in a thread of this process (tests, `--workers 1`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import connection
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harvest.fetch import Fetcher, FetchPolicy, FetchResult, Resolver
from harvest.fetch.catalogshare import CatalogHostLimiter, CatalogRobotsStore, LazyCatalog, SharedPoliteness
from harvest.fetch.ratelimit import HostLimiter, HostLimits
from harvest.fetch.robots import RobotsStore
from harvest.fetch.sharedlimit import SharedHostLimiter
from storage.catalog import SourceInfo
from storage.catalog.liveness import process_exists
from storage.ingest import IngestItem, Prepared, prepare
from storage.parallel import pool_context
from storage.settings import IngestSettings
from storage.stores import open_store

__all__ = ["Download", "DownloadPool"]

log = logging.getLogger(__name__)

TASKS_PER_THREAD = 2  # queued per worker thread, so no thread waits for the parent between items
MAX_RESTARTS = 50
ROBOTS_PREFIX = "gleaner-robots-"  # + the pid of the process that made the folder, "-", a random part
_READY = "ready"  # a worker's first message: it has opened its store and fetcher


@dataclass(frozen=True)
class Download:
    """One task's outcome: the fetch (body dropped) and, when it succeeded, what ingest's steps 1-2 made.

    `fetched` is None only when the worker died with the task in hand; `prepared` then says so.
    """

    key: int
    url: str
    fetched: FetchResult | None
    prepared: Prepared | None


@dataclass(frozen=True)
class _Setup:
    """Everything a worker needs, picklable (it is a Process argument)."""

    policy: FetchPolicy
    resolver: Resolver | None
    limiter: HostLimits
    robots_dir: Path | None
    robots_store: RobotsStore | None
    store_url: str
    store_options: dict[str, Any]
    limits: IngestSettings
    threads: int


def _process_limiter(limiter: HostLimits) -> SharedHostLimiter | None:
    """The limiter the pool's processes share in memory (bound per member, forgotten when one dies), if any."""
    inner = limiter.local if isinstance(limiter, CatalogHostLimiter) else limiter
    return inner if isinstance(inner, SharedHostLimiter) else None


def _fetcher(setup: _Setup) -> Fetcher:
    return Fetcher(
        setup.policy,
        resolver=setup.resolver,
        limiter=setup.limiter,
        robots_dir=setup.robots_dir,
        robots_store=setup.robots_store,
    )


def _download(fetcher: Fetcher, setup: _Setup, store: Any, key: int, url: str, referer: str | None) -> Download:
    fetched = fetcher.fetch(url, kind="image", referer=referer)
    if not fetched.ok:
        return Download(key, url, fetched, None)
    item = IngestItem(source=SourceInfo(kind="url", uri=url), data=fetched.data)
    # Not fsynced one by one: the parent syncs the store once per catalog batch, before recording it.
    return Download(key, url, replace(fetched, data=None), prepare(item, store, setup.limits, durable=False))


def _serve(conn: Connection, setup: _Setup, member: int, in_process: bool) -> None:
    """A worker's loop: tasks `(key, url, referer)` in, `Download`s out in completion order; None ends it."""
    if not in_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    try:
        if (shared := _process_limiter(setup.limiter)) is not None:
            shared.bind(member)
        fetcher = _fetcher(setup)
        store = open_store(setup.store_url, setup.store_options)
    except BaseException:
        conn.close()  # the parent sees the pipe close before the worker was ready
        raise
    send_lock = threading.Lock()
    conn.send(_READY)

    def work(key: int, url: str, referer: str | None = None) -> None:
        try:
            result = _download(fetcher, setup, store, key, url, referer)
        except Exception as exc:  # a bug must not lose the task: it comes back as a failure
            log.warning("download of %s failed", url, exc_info=True)
            result = Download(key, url, None, Prepared(status="failed", reason=f"download failed: {exc!r}"))
        with send_lock:
            try:
                conn.send(result)
            except OSError:  # the parent is gone or closing
                pass
            except Exception as exc:  # an answer that does not pickle must still answer the task
                log.warning("cannot send the result for %s", url, exc_info=True)
                failure = Download(key, url, None, Prepared(status="failed", reason=f"unsendable result: {exc!r}"))
                with contextlib.suppress(OSError):
                    conn.send(failure)

    executor = ThreadPoolExecutor(setup.threads, thread_name_prefix="gleaner-download")
    finished = False
    try:
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):
                break  # the parent is gone (killed): nobody wants the results
            if task is None:
                finished = True
                break
            executor.submit(work, *task)
    finally:
        fetcher.close()  # fetches still running give up at their next step
        executor.shutdown(wait=finished, cancel_futures=True)
        conn.close()
    if not in_process and not finished:
        os._exit(0)  # do not wait for fetch threads of a parent that no longer exists


class _Worker:
    """One worker: a process serving tasks over a pipe, or with `context=None` a thread of this process."""

    def __init__(self, setup: _Setup, context: Any, member: int) -> None:
        self.outstanding: dict[int, str] = {}
        self.ready = False
        self.member = member  # its number in the shared limiter; a replacement takes over the number
        if context is None:
            self.conn, child = connection.Pipe()
            self.runner: Any = threading.Thread(target=_serve, args=(child, setup, member, True), daemon=True)
            self.runner.start()
            self.sentinel: Any = None
        else:
            self.conn, child = context.Pipe()
            self.runner = context.Process(target=_serve, args=(child, setup, member, False), daemon=True)
            self.runner.start()
            child.close()
            self.sentinel = self.runner.sentinel

    def send(self, key: int, url: str, referer: str | None = None) -> None:
        """Hand over a task; if the worker is gone, the task stays outstanding and is reported as lost."""
        self.outstanding[key] = url
        with contextlib.suppress(OSError):
            self.conn.send((key, url, referer))

    def stop(self, *, wait: float) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.runner.join(wait)
        if self.sentinel is not None and self.runner.is_alive():
            self.runner.terminate()
            self.runner.join(1)
        self.conn.close()

    def exit_code(self) -> int | None:
        return getattr(self.runner, "exitcode", None)


def robots_folder() -> Path:
    """A fresh folder in the temp folder for the robots.txt answers of one pool's processes, named after this
    process (`gleaner-robots-PID-...`), made after removing the folders of pools whose process is gone.

    A pool removes its folder when it closes, but a process killed with SIGKILL (or by the out-of-memory killer)
    cannot, and each such run left one behind for good (issue 16 item 18). So the next pool on this machine
    clears them: only folders of this user whose process no longer exists (a live run keeps its answers)."""
    temp = Path(tempfile.gettempdir())
    for folder in temp.glob(f"{ROBOTS_PREFIX}*-*"):
        pid = folder.name.removeprefix(ROBOTS_PREFIX).partition("-")[0]
        with contextlib.suppress(OSError):
            if pid.isdigit() and folder.stat().st_uid == os.getuid() and not process_exists(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{ROBOTS_PREFIX}{os.getpid()}-"))


class DownloadPool:
    """Download many URLs with `processes` worker processes of `threads` threads each.

    `run(tasks)` yields a Download per `(key, url)` task in completion order, with at most
    TASKS_PER_THREAD tasks per thread handed out and not yet answered, so memory stays bounded. Collectors that
    find URLs as they go (scrape) push them with `submit` while `room()` says so and read `collect(timeout)`.
    `share_with_parent`: the calling process also fetches (pages) and takes part in the per-host limits and
    the robots.txt folder through `parent_fetcher()`. `shared`: politeness shared through the catalog with
    the other workers of the run (see the module's docstring).
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        store_url: str,
        store_options: dict[str, Any],
        limits: IngestSettings,
        processes: int,
        threads: int,
        resolver: Resolver | None = None,
        share_with_parent: bool = False,
        shared: SharedPoliteness | None = None,
    ) -> None:
        self.processes = processes
        self._context = pool_context() if processes > 0 else None
        local_robots = processes > 0 and shared is None
        self._robots_dir = robots_folder() if local_robots else None
        rate = 0.0 if shared is not None else policy.per_host_rate  # shared: the catalog keeps the rate
        limiter_args = (rate, policy.per_host_burst, policy.per_host_concurrency)
        limiter_options: dict[str, Any] = {"failure_limit": policy.host_failure_limit, "pause": policy.host_pause}
        limiter: HostLimits = (
            SharedHostLimiter(
                *limiter_args, **limiter_options, members=processes + share_with_parent, context=self._context
            )
            if self._context is not None
            else HostLimiter(*limiter_args, **limiter_options)
        )
        robots_store: RobotsStore | None = None
        if shared is not None:
            catalog = LazyCatalog(shared.catalog_url)  # one connection pool per process for both
            limiter = CatalogHostLimiter(catalog, limiter, policy.per_host_rate, policy.per_host_burst)
            robots_store = CatalogRobotsStore(catalog, shared.scope, shared.owner)
        self._setup = _Setup(
            policy, resolver, limiter, self._robots_dir, robots_store, store_url, store_options, limits, max(1, threads)
        )
        self._window = TASKS_PER_THREAD * self._setup.threads
        self._restarts = 0
        self.submitted = 0
        self._workers: list[_Worker] = []
        try:
            for member in range(max(1, processes)):
                self._workers.append(_Worker(self._setup, self._context, member))
        except BaseException:  # a process that cannot start: stop the ones that did, remove the robots folder
            self.close()
            raise

    def parent_fetcher(self) -> Fetcher:
        """A Fetcher for this process that shares the workers' per-host limits and robots.txt folder."""
        limiter = _process_limiter(self._setup.limiter)
        if limiter is not None:
            if limiter.members <= self.processes:
                raise RuntimeError("make the pool with share_with_parent=True to fetch in this process too")
            limiter.bind(self.processes)
        return _fetcher(self._setup)

    @property
    def outstanding(self) -> int:
        return sum(len(w.outstanding) for w in self._workers)

    def room(self) -> bool:
        """Whether a worker has a free place for one more task."""
        return any(len(w.outstanding) < self._window for w in self._workers)

    def submit(self, key: int, url: str, referer: str | None = None) -> None:
        """Hand a task to the least busy worker (check `room()` first to stay bounded)."""
        worker = min(self._workers, key=lambda w: len(w.outstanding))
        worker.send(key, url, referer)
        self.submitted += 1

    def collect(self, timeout: float | None = None) -> list[Download]:
        """The answers that arrive within `timeout` seconds (None: wait for at least one); [] when none is out."""
        if not self.outstanding:
            return []
        return list(self._collect(timeout))

    def run(self, tasks: Iterable[tuple[int, str]]) -> Iterator[Download]:
        iterator = iter(tasks)
        exhausted = False
        while True:
            while not exhausted:
                worker = min(self._workers, key=lambda w: len(w.outstanding))
                if len(worker.outstanding) >= self._window:
                    break
                task = next(iterator, None)
                if task is None:
                    exhausted = True
                    break
                worker.send(*task)
                self.submitted += 1
            if not any(w.outstanding for w in self._workers):
                return
            yield from self._collect()

    def _collect(self, timeout: float | None = None) -> Iterator[Download]:
        """Wait for answers, then yield those that are ready; replace workers that died."""
        owners: dict[Any, _Worker] = {}
        for worker in self._workers:
            if worker.outstanding:
                owners[worker.conn] = worker
                if worker.sentinel is not None:
                    owners[worker.sentinel] = worker
        for ready in connection.wait(list(owners), timeout):
            worker = owners[ready]
            if worker not in self._workers:
                continue  # already replaced in this round
            try:
                while worker.conn.poll():
                    message: Download | str = worker.conn.recv()
                    if isinstance(message, str):
                        worker.ready = True
                        continue
                    worker.outstanding.pop(message.key, None)
                    yield message
            except (EOFError, OSError):
                pass
            else:
                if ready is not worker.sentinel:
                    continue
            yield from self._replace(worker)

    def _replace(self, worker: _Worker) -> Iterator[Download]:
        worker.runner.join(1)
        if worker.sentinel is not None and worker.runner.is_alive():  # its pipe broke but it lives on: end it
            worker.runner.terminate()
            worker.runner.join(5)
        code = worker.exit_code()
        lost = dict(worker.outstanding)
        worker.outstanding.clear()
        self._workers.remove(worker)
        worker.conn.close()
        if not worker.ready:
            raise RuntimeError(f"a download worker failed to start (exit code {code}); see the messages above")
        if (shared := _process_limiter(self._setup.limiter)) is not None:
            shared.forget(worker.member, getattr(worker.runner, "pid", None))
        self._restarts += 1
        if self._restarts > MAX_RESTARTS:
            raise RuntimeError(f"download workers died {self._restarts} times; giving up")
        log.warning("download worker died (exit code %s); %d tasks lost, starting another", code, len(lost))
        self._workers.append(_Worker(self._setup, self._context, worker.member))
        reason = f"download worker died (exit code {code}) while this item was in progress"
        for key, url in lost.items():
            yield Download(key, url, None, Prepared(status="failed", reason=reason))

    def close(self) -> None:
        """Stop the workers: at once when tasks are still out (an interrupted run), else gracefully."""
        busy = any(w.outstanding for w in self._workers)
        for worker in self._workers:
            worker.stop(wait=0.2 if busy else 5)
        self._workers = []
        if self._robots_dir is not None:
            shutil.rmtree(self._robots_dir, ignore_errors=True)

    def __enter__(self) -> DownloadPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
