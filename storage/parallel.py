"""Map a function over stored objects in worker processes, each with its own store connection.

Decoding images is CPU-bound, so ingest, checks and hash backfills use processes; results come back in
completion order with at most `4 * workers` objects in flight (bounded memory for any catalog size).
`process_map` is the loop they share; `map_objects` adds a store connection per worker.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from storage.stores import ObjectStore, open_store

__all__ = ["map_objects", "pool_context", "process_map"]

T = TypeVar("T")
R = TypeVar("R")

_store: ObjectStore | None = None


def pool_context() -> multiprocessing.context.BaseContext:
    """fork starts workers in milliseconds; fall back to forkserver when other threads exist."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has already imported Pillow, numpy and the store code.
        context.set_forkserver_preload(["storage.ingest", "storage.parallel", "storage.stores.s3"])
        return context
    return multiprocessing.get_context("spawn")


def process_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[list[tuple[T, R | BaseException]]]:
    """Run picklable `fn` over `items` in `workers` processes; yield each group of `(item, result)` pairs that
    completed together (the exception instead of the result when fn raised).

    At most `4 * workers` items are in flight, so memory stays bounded for any input length. A worker that
    dies (e.g. the out-of-memory killer) fails only the items it had; a fresh pool takes over the rest.
    """

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=pool_context(), initializer=initializer, initargs=initargs)

    pool = new_pool()
    pending: dict[Future[R], T] = {}
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
                try:
                    future = pool.submit(fn, item)
                except BrokenProcessPool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
                    future = pool.submit(fn, item)
                pending[future] = item
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            group: list[tuple[T, R | BaseException]] = []
            for future in done:
                item = pending.pop(future)
                try:
                    group.append((item, future.result()))
                except Exception as exc:
                    group.append((item, exc))
            yield group
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
