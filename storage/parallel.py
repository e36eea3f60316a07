"""Map a function over stored objects in worker processes, each with its own store connection.

Decoding images is CPU-bound, so ingest, checks and hash backfills use processes; results come back in
completion order with at most `4 * workers` objects in flight (bounded memory for any catalog size).
`process_map` is the loop they share; `map_objects` adds a store connection per worker.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool

from storage.stores import ObjectStore, open_store

__all__ = ["WorkerDied", "map_objects", "pool_context", "process_map", "start_worker_server"]

T = TypeVar("T")
R = TypeVar("R")

_store: ObjectStore | None = None


def pool_context() -> multiprocessing.context.BaseContext:
    """fork starts workers in milliseconds; fall back to forkserver when other threads exist."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        # Workers fork from a server that has already imported Pillow, numpy and the store code.
        start_worker_server()
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def start_worker_server() -> None:
    """Start the fork server (once per process) with SIGINT ignored, so that its children, the pool workers,
    are born ignoring it.

    Ctrl-C reaches the whole process group; a worker that got it while starting up (before its pool told it to
    ignore SIGINT) would die and take its pool's tasks with it. A program started with SIGINT ignored keeps it
    ignored, so only the parent, which decides what to finish, sees Ctrl-C. Meanwhile SIGINT is blocked in
    this thread, not lost: it arrives when the server is up. Long-running commands call this before they
    start other threads (then nothing else can take the signal in between)."""
    global _server_started
    if _server_started or "forkserver" not in multiprocessing.get_all_start_methods():
        return
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
    if threading.current_thread() is threading.main_thread():
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    else:
        forkserver.ensure_running()
    _server_started = True


_server_started = False
_PRELOAD = ["storage.ingest", "storage.parallel", "storage.stores.s3"]


def process_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Generator[list[tuple[T, R | BaseException]], None, None]:
    """Run picklable `fn` over `items` in `workers` processes; yield each group of `(item, result)` pairs that
    completed together (the exception instead of the result when fn raised).

    At most `4 * workers` items are in flight, so memory stays bounded for any input length. Each worker holds
    one item at a time (pebble tracks which), so a worker that dies (the out-of-memory killer, a crash in a
    decoder, `os._exit`) fails only the item it had, with `WorkerDied`; a fresh worker takes its place.
    """
    setup = functools.partial(_worker_setup, initializer, initargs)
    pool = ProcessPool(max_workers=workers, initializer=setup, context=pool_context())
    pending: dict[Future[R], T] = {}
    finished = False
    try:
        iterator = iter(items)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < 4 * workers:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.schedule(fn, args=(item,))] = item
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            group: list[tuple[T, R | BaseException]] = []
            for future in done:
                item = pending.pop(future)
                try:
                    group.append((item, future.result()))
                except ProcessExpired as exc:
                    group.append((item, WorkerDied(exc.exitcode)))
                except Exception as exc:
                    group.append((item, exc))
            yield group
        finished = True
    finally:
        if finished:
            pool.close()  # type: ignore[no-untyped-call]
        else:  # an error or an early stop: end the workers now, not after their queue
            pool.stop()  # type: ignore[no-untyped-call]
        pool.join()


def _worker_setup(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    """Workers ignore Ctrl-C (it reaches the whole process group): the parent decides, and stops them or lets
    them finish the item in hand."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


class WorkerDied(RuntimeError):
    """The worker process running this item ended without answering (killed, crashed, exited)."""

    def __init__(self, exitcode: int | None) -> None:
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
        super().__init__(f"worker process died ({how}) while this item was in progress")
        self.exitcode = exitcode


def _init(store_url: str, options: dict[str, Any]) -> None:
    global _store
    _store = open_store(store_url, options)


def _call(fn: Callable[[ObjectStore, T], R], item: T) -> R:
    assert _store is not None
    return fn(_store, item)


def map_objects(
    store: ObjectStore,
    store_options: dict[str, Any],
    fn: Callable[[ObjectStore, T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
) -> Iterator[tuple[T, R | BaseException]]:
    """Yield `(item, fn(store, item))`, or `(item, exception)` when fn raised; fn must be picklable."""
    count = workers or os.cpu_count() or 1
    if count <= 1:
        for item in items:
            try:
                yield item, fn(store, item)
            except Exception as exc:
                yield item, exc
        return
    call = functools.partial(_call, fn)
    for group in process_map(call, items, workers=count, initializer=_init, initargs=(store.url, store_options)):
        yield from group
