"""DownloadPool against the fixture site: fetch, validate, hash and store in worker threads and processes.

The pool is run in-process (`processes=0`) and with real worker processes; politeness (robots.txt once,
per-host concurrency) is checked on the server side, and a worker is killed with SIGKILL mid-run.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from harvest.download import TASKS_PER_THREAD, Download, DownloadPool
from harvest.fetch import FetchPolicy, Resolver
from storage.settings import IngestSettings
from storage.stores import open_store
from tests.support.site import Site

# Loopback is the fixture site's address: allow it, no rate limit, quick retries.
LOCAL = FetchPolicy(allow_private=True, per_host_rate=0, backoff_base=0.05, backoff_max=0.2)


def make_pool(
    store: Path | str,
    *,
    processes: int,
    threads: int = 3,
    policy: FetchPolicy = LOCAL,
    resolver: Resolver | None = None,
) -> DownloadPool:
    return DownloadPool(
        policy,
        store_url=str(store),
        store_options={},
        limits=IngestSettings(),
        processes=processes,
        threads=threads,
        resolver=resolver,
    )


def by_key(downloads: list[Download]) -> dict[int, Download]:
    keys = Counter(d.key for d in downloads)
    assert all(count == 1 for count in keys.values()), f"keys answered more than once: {keys}"
    return {d.key: d for d in downloads}


def assert_added(download: Download, data: bytes, store: Path) -> None:
    fetched, prepared = download.fetched, download.prepared
    assert fetched is not None and fetched.error is None and fetched.error_kind is None, fetched
    assert fetched.data is None  # bodies stay in the worker: only facts travel back
    assert fetched.status == 200 and fetched.final_url == download.url
    assert prepared is not None and prepared.status == "added", prepared
    assert prepared.facts is not None and prepared.object_key is not None
    assert prepared.facts.sha256 == hashlib.sha256(data).hexdigest()
    assert prepared.facts.size_bytes == len(data) and prepared.facts.format == "JPEG"
    assert prepared.object_key.endswith(prepared.facts.sha256 + ".jpg")
    assert open_store(str(store)).get(prepared.object_key) == data


# -- downloads that succeed ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("processes", [0, 2])
def test_pool_downloads_hashes_and_stores_photos(fresh_site: Site, tmp_path: Path, processes: int) -> None:
    names = fresh_site.photo_names[:12]
    tasks = [(100 + i, fresh_site.url(f"/img/{name}")) for i, name in enumerate(names)]
    store = tmp_path / "store"
    with make_pool(store, processes=processes) as pool:
        downloads = list(pool.run(tasks))
        assert pool.submitted == len(tasks)
    results = by_key(downloads)
    assert sorted(results) == [key for key, _ in tasks]
    for (key, url), name in zip(tasks, names, strict=True):
        assert results[key].url == url
        assert_added(results[key], fresh_site.photo(name), store)
    assert all(fresh_site.hits[f"/img/{name}"] == 1 for name in names)
    assert sum(1 for _ in open_store(str(store)).iter("")) == len(names)


def test_worker_processes_use_the_resolver_they_were_given(fresh_site: Site, tmp_path: Path) -> None:
    """The Resolver travels to the workers (pickled), overrides included: a made-up name reaches the site."""
    resolver = Resolver(overrides={"photos.gleaner.test": ["127.0.0.1"]})
    names = fresh_site.photo_names[12:16]
    tasks = [(i, f"http://photos.gleaner.test:{fresh_site.port}/img/{name}") for i, name in enumerate(names)]
    with make_pool(tmp_path / "store", processes=2, threads=2, resolver=resolver) as pool:
        results = by_key(list(pool.run(tasks)))
    for key, name in enumerate(names):
        assert_added(results[key], fresh_site.photo(name), tmp_path / "store")


# -- failures ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("processes", [0, 2])
def test_failed_fetches_and_non_images_come_back_with_reasons(fresh_site: Site, tmp_path: Path, processes: int) -> None:
    good = fresh_site.photo_names[20]
    tasks = [
        (1, fresh_site.url(f"/img/{good}")),
        (2, fresh_site.url("/img/no-such-photo.jpg")),
        (3, fresh_site.url(f"/private/{good}")),
        (4, fresh_site.url("/fault/html-as-jpeg")),
        (5, fresh_site.url("/fault/pixel.gif")),
        (6, "ftp://127.0.0.1/photo.jpg"),
    ]
    with make_pool(tmp_path / "store", processes=processes, threads=2) as pool:
        results = by_key(list(pool.run(tasks)))
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    assert_added(results[1], fresh_site.photo(good), tmp_path / "store")

    expected_kinds = {2: "http_4xx", 3: "robots", 4: "content_type", 6: "scheme"}
    for key, kind in expected_kinds.items():
        fetched = results[key].fetched
        assert fetched is not None and fetched.error_kind == kind, fetched
        assert fetched.data is None and fetched.error
        assert results[key].prepared is None  # nothing to prepare: the fetch failed
    assert results[2].fetched is not None and results[2].fetched.status == 404
    assert "HTML" in (results[4].fetched.error or "")  # type: ignore[union-attr]

    # A real GIF is fetched fine but refused by validation: a rejected item, not a failed fetch.
    pixel = results[5]
    assert pixel.fetched is not None and pixel.fetched.error_kind is None and pixel.fetched.data is None
    assert pixel.prepared is not None and pixel.prepared.status == "rejected"
    assert pixel.prepared.facts is None and "too small" in (pixel.prepared.reason or "")
    assert fresh_site.hits[f"/private/{good}"] == 0


@pytest.mark.parametrize("processes", [1, 2])
def test_worker_processes_that_cannot_start_raise(site: Site, processes: int) -> None:
    pool = make_pool("nosuch://x", processes=processes, threads=1)  # open_store refuses the scheme in the worker
    try:
        with pytest.raises(RuntimeError, match="failed to start"):
            list(pool.run([(1, site.url(f"/img/{site.photo_names[0]}"))]))
    finally:
        pool.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_in_process_worker_that_cannot_start_raises(site: Site) -> None:
    pool = make_pool("nosuch://x", processes=0, threads=1)
    outcome: list[BaseException | None] = []

    def consume() -> None:  # in a thread, so that a hang fails the test instead of blocking the session
        try:
            list(pool.run([(1, site.url(f"/img/{site.photo_names[0]}"))]))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            pool.close()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(3)
    assert outcome, "run() did not return within 3 s"
    assert isinstance(outcome[0], RuntimeError) and "failed to start" in str(outcome[0])


def test_a_worker_process_that_died_before_run_raises_runtime_error(site: Site) -> None:
    pool = make_pool("nosuch://x", processes=1, threads=1)
    try:
        pool._workers[0].runner.join(10)  # the worker has failed and exited before any task is sent
        assert pool._workers[0].runner.exitcode == 1
        with pytest.raises(RuntimeError, match="failed to start"):
            list(pool.run([(1, site.url(f"/img/{site.photo_names[0]}"))]))
    finally:
        pool.close()


# -- politeness across processes -----------------------------------------------------------------------------------


def test_robots_txt_is_fetched_once_across_worker_processes(fresh_site: Site, tmp_path: Path) -> None:
    names = fresh_site.photo_names[30:40]
    tasks = [(i, fresh_site.url(f"/{'private' if i % 3 == 0 else 'img'}/{name}")) for i, name in enumerate(names)]
    with make_pool(tmp_path / "store", processes=2, threads=3) as pool:
        robots_dir = pool._robots_dir
        results = by_key(list(pool.run(tasks)))
    assert fresh_site.hits["/robots.txt"] == 1
    assert not any(hit.path.startswith("/private/") for hit in fresh_site.log)
    for key, download in results.items():
        assert download.fetched is not None
        if key % 3 == 0:
            assert download.fetched.error_kind == "robots" and download.prepared is None
        else:
            assert download.prepared is not None and download.prepared.status == "added"
    assert robots_dir is not None and not robots_dir.exists()  # close() removes the shared robots folder


def test_per_host_concurrency_holds_across_worker_processes(fresh_site: Site, tmp_path: Path) -> None:
    policy = FetchPolicy(allow_private=True, per_host_rate=0, per_host_concurrency=3)
    names = fresh_site.photo_names[40:52]
    tasks = [(i, fresh_site.url(f"/fault/hold?ms=150&img={name}")) for i, name in enumerate(names)]
    with make_pool(tmp_path / "store", processes=2, threads=6, policy=policy) as pool:
        results = by_key(list(pool.run(tasks)))
    assert all(d.prepared is not None and d.prepared.status == "added" for d in results.values())
    assert fresh_site.hits["/fault/hold"] == 12
    # 12 threads want the host at once; one shared budget lets 3 in (per-process budgets would let in 6).
    assert fresh_site.peaks["hold"] == 3


# -- a worker that dies --------------------------------------------------------------------------------------------


def kill_when(check: Callable[[], bool], pid: int, *, within: float = 4.0) -> tuple[threading.Thread, threading.Event]:
    """Kill `pid` with SIGKILL as soon as `check()` is true (polled from a thread); the event says it was."""
    killed = threading.Event()

    def run() -> None:
        stop = time.monotonic() + within
        while time.monotonic() < stop:
            if check():
                os.kill(pid, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, killed


def test_a_killed_worker_loses_only_its_tasks_and_is_replaced(fresh_site: Site, tmp_path: Path) -> None:
    names = fresh_site.photo_names[60:72]
    tasks = [(i, fresh_site.url(f"/fault/hold?ms=400&img={name}")) for i, name in enumerate(names)]
    store = tmp_path / "store"
    with make_pool(store, processes=2, threads=2) as pool:
        victim = pool._workers[0].runner.pid
        # Four requests inside the server at once: both workers have tasks in flight.
        killer, killed = kill_when(lambda: fresh_site.peaks["hold"] >= 4, victim)
        downloads = list(pool.run(tasks))
        killer.join()
        pids = [worker.runner.pid for worker in pool._workers]
    assert killed.is_set(), "the workers never had four requests in flight"
    results = by_key(downloads)
    assert sorted(results) == list(range(len(tasks)))  # every task answered exactly once
    lost = {key for key, d in results.items() if d.fetched is None}
    # The victim's two requests in progress, and at most TASKS_PER_THREAD per thread handed to it in all.
    assert 2 <= len(lost) <= TASKS_PER_THREAD * 2
    for key, download in results.items():
        if key in lost:
            assert download.prepared is not None and download.prepared.status == "failed"
            assert "worker died" in (download.prepared.reason or "")
            assert "-9" in (download.prepared.reason or "")  # the exit code says SIGKILL
        else:
            assert_added(download, fresh_site.photo(names[key]), store)
    assert len(pids) == 2 and victim not in pids  # a fresh worker took the victim's place


def test_slots_of_a_killed_worker_are_given_back(fresh_site: Site, tmp_path: Path) -> None:
    policy = FetchPolicy(allow_private=True, per_host_rate=0, per_host_concurrency=2, item_deadline=2.0)
    names = fresh_site.photo_names[80:86]
    tasks = [(i, fresh_site.url(f"/fault/hold?ms=500&img={name}")) for i, name in enumerate(names)]
    with make_pool(tmp_path / "store", processes=1, threads=2, policy=policy) as pool:
        # Both of the host's slots are held by the only worker when it is killed.
        killer, killed = kill_when(lambda: fresh_site.peaks["hold"] >= 2, pool._workers[0].runner.pid)
        results = by_key(list(pool.run(tasks)))
        killer.join()
    assert killed.is_set()
    survivors = [d for d in results.values() if d.fetched is not None]
    assert survivors, "every task was lost with the worker"
    assert all(d.fetched.error_kind is None for d in survivors), [d.fetched.error for d in survivors]  # type: ignore[union-attr]


def test_a_worker_that_died_between_runs_is_replaced_without_losing_tasks(fresh_site: Site, tmp_path: Path) -> None:
    """Tasks handed to a worker that is already dead come back as lost; the pool goes on with a new worker."""
    names = fresh_site.photo_names[90:110]
    store = tmp_path / "store"
    with make_pool(store, processes=2, threads=1) as pool:
        warm_up = list(pool.run([(i, fresh_site.url(f"/img/{name}")) for i, name in enumerate(names[:4])]))
        assert len(warm_up) == 4 and all(w.ready for w in pool._workers)
        victim = pool._workers[0]
        os.kill(victim.runner.pid, signal.SIGKILL)
        victim.runner.join(5)
        tasks = [(i, fresh_site.url(f"/img/{name}")) for i, name in enumerate(names) if i >= 4]
        downloads = list(pool.run(tasks))  # the first tasks go to the dead worker: no BrokenPipeError
        assert victim not in pool._workers and len(pool._workers) == 2
    results = by_key(downloads)
    assert sorted(results) == [key for key, _ in tasks]
    lost = [d for d in results.values() if d.fetched is None]
    assert lost and all("worker died" in (d.prepared.reason or "") for d in lost if d.prepared)
    for key, download in results.items():
        if download.fetched is not None:
            assert_added(download, fresh_site.photo(names[key]), store)
