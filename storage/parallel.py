"""Map a function over stored objects in worker processes, each with its own store connection.

Decoding images is CPU-bound, so checks and hash backfills use processes; results come back in
completion order with at most `4 * workers` objects in flight (bounded memory for any catalog size).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from storage.stores import ObjectStore, open_store

__all__ = ["map_objects", "pool_context"]

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
    with ProcessPoolExecutor(
        count, mp_context=pool_context(), initializer=_init, initargs=(store.url, store_options)
    ) as pool:
        pending: dict[Future[R], T] = {}
        iterator = iter(items)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < 4 * count:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(_call, fn, item)] = item
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                try:
                    yield item, future.result()
                except Exception as exc:
                    yield item, exc
