"""Map a function over stored objects in worker processes, each with its own store connection.

Decoding images is CPU-bound, so ingest, checks and hash backfills use processes; results come back in
completion order with at most `2 * workers` items in flight (bounded memory for any catalog size).
`process_map` is the loop they share; `map_objects` adds a store connection per worker.

Crash isolation is per item: each worker has its own pipe and holds at most two items (the one in progress
and the next, so it never waits for a round trip), and works through them in order. A worker that dies
(the out-of-memory killer, a crash in a decoder, `os._exit`) therefore fails the item it was working on and
nothing else: its waiting item goes to another worker, and a fresh worker takes its place. (A shared task
queue cannot promise this: a worker killed while it holds the queue's lock takes the pool down with it.)
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from multiprocessing import connection
from typing import Any, Generic, TypeVar

from storage.errors import GleanerError
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


PER_WORKER = 2  # items handed to a worker and not yet answered: the one in progress and the next
MAX_START_FAILURES = 3  # workers in a row that die before answering anything: they cannot start


def process_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Generator[list[tuple[T, R | BaseException]], None, None]:
    """Run picklable `fn` over `items` in `workers` processes; yield each group of `(item, result)` pairs that
    completed together (the exception instead of the result when fn raised, `WorkerDied` when the worker
    running the item died). Every item is answered exactly once. Closing the generator early stops the
    workers at once."""
    context = pool_context()
    setup = (fn, initializer, initargs)
    pool: list[_Worker[T]] = []
    retry: deque[T] = deque()  # items a dead worker had not started: handed out again first
    start_failures = 0
    finished = False
    try:
        pool.extend(_Worker(context, setup) for _ in range(max(1, workers)))
        iterator = iter(items)
        exhausted = False
        while True:
            for index, idle in enumerate(pool):
                if not idle.outstanding and not idle.process.is_alive():  # died between items: nothing lost
                    idle.bury([], retry)
                    pool[index] = _Worker(context, setup)
            while retry or not exhausted:
                worker = min(pool, key=lambda w: len(w.outstanding))
                if len(worker.outstanding) >= PER_WORKER:
                    break
                if retry:
                    worker.send(retry.popleft())
                    continue
                try:
                    worker.send(next(iterator))
                except StopIteration:
                    exhausted = True
            busy = [w for w in pool if w.outstanding]
            if not busy:
                break
            waitables: dict[Any, _Worker[T]] = {}
            for worker in busy:
                waitables[worker.conn] = worker
                waitables[worker.process.sentinel] = worker
            group: list[tuple[T, R | BaseException]] = []
            for worker in {waitables[ready] for ready in connection.wait(list(waitables))}:
                alive = worker.drain(group)
                if alive and worker.process.is_alive():
                    continue
                pool.remove(worker)
                worker.bury(group, retry)
                start_failures = 0 if worker.ready else start_failures + 1
                if start_failures >= MAX_START_FAILURES:
                    code = worker.process.exitcode
                    raise GleanerError(f"worker processes die as they start (exit code {code}); see the messages above")
                pool.append(_Worker(context, setup))
            if group:  # nothing but a worker saying it is ready: wait again
                yield group
        finished = True
    finally:
        for worker in pool:
            worker.stop(wait=5.0 if finished else 0.0)


class WorkerDied(RuntimeError):
    """The worker process running this item ended without answering (killed, crashed, exited)."""

    def __init__(self, exitcode: int | None) -> None:
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
        super().__init__(f"worker process died ({how}) while this item was in progress")
        self.exitcode = exitcode


class _Worker(Generic[T]):
    """One worker process with its own pipe; `outstanding` holds its items in the order it works on them."""

    def __init__(self, context: multiprocessing.context.BaseContext, setup: tuple[Any, ...]) -> None:
        self.conn, child = context.Pipe()
        self.process: Any = context.Process(target=_serve, args=(child, *setup), daemon=True)  # type: ignore[attr-defined]
        self.process.start()
        child.close()
        self.outstanding: deque[T] = deque()
        self.ready = False

    def send(self, item: T) -> None:
        self.outstanding.append(item)
        with contextlib.suppress(OSError):  # a dead worker: found by its sentinel, the item failed or retried
            self.conn.send(item)

    def drain(self, group: list[tuple[T, Any]]) -> bool:
        """Read every answer waiting in the pipe into `group`; False when the pipe is closed (the worker is gone)."""
        try:
            while self.conn.poll():
                message = self.conn.recv()
                if message is None:  # started: its initializer ran
                    self.ready = True
                    continue
                _ok, value = message  # the result, or the exception fn raised
                group.append((self.outstanding.popleft(), value))
        except (EOFError, OSError):
            return False
        return True

    def bury(self, group: list[tuple[T, Any]], retry: deque[T]) -> None:
        """After death: the item in progress fails with WorkerDied, the waiting one goes back to `retry`."""
        self.process.join(1)
        if self.process.is_alive():  # its pipe broke but it lives on: end it
            self.process.terminate()
            self.process.join(5)
        self.conn.close()
        if self.outstanding:
            group.append((self.outstanding.popleft(), WorkerDied(self.process.exitcode)))
            retry.extendleft(reversed(self.outstanding))
            self.outstanding.clear()

    def stop(self, *, wait: float) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(_STOP)
        self.process.join(wait)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.conn.close()


class _Stop:
    """The end-of-work message (a class, so that no item can be mistaken for it)."""


_STOP = _Stop


def _serve(
    conn: Any, fn: Callable[[Any], Any], initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> None:
    """A worker: items in, `(ok, result or exception)` out, in order. Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)
    try:
        conn.send(None)  # ready
    except (EOFError, OSError):
        return  # the parent is gone already (Ctrl-C while the pool was starting): nothing to say, no traceback
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if item is _STOP:
            return
        try:
            answer: tuple[bool, Any] = (True, fn(item))
        except Exception as exc:
            answer = (False, exc)
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return
        except Exception as exc:  # a result or an exception that does not pickle still answers its item
            try:
                conn.send((False, RuntimeError(f"cannot send the result back: {exc!r}")))
            except (EOFError, OSError):
                return


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
