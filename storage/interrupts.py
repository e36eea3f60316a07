"""Ctrl-C and SIGTERM held back while a catalog write transaction is open, then delivered.

Python raises KeyboardInterrupt at whatever bytecode the main thread is running. Raised between SQLite's
`BEGIN IMMEDIATE` and the point where SQLAlchemy has registered the transaction (or in the middle of its
rollback), it leaves a connection that holds the catalog's write lock and that nothing will roll back: the
command's own "record the run as interrupted" then waits on that lock for the busy timeout, and every other
writer with it. So a write transaction is one step as far as signals go: a signal that arrives inside it is
noted, and re-raised with the handler that was in place (KeyboardInterrupt, a collector's stop flag, the
default action) the moment the transaction has committed or rolled back. Write transactions are short by
design (they hold the lock other processes wait for), so Ctrl-C still acts within a moment.

Only the main thread receives signals in Python, so transactions of other threads need nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["HELD_SIGNALS", "held_interrupts"]

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_depth = 0  # open held blocks in the main thread (transactions can nest)


@contextmanager
def held_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block (main thread; elsewhere nothing to do); deliver those
    that arrived, with the handlers restored, when the outermost block ends."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth:  # inside a held block already: the outer one delivers
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    arrived: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        arrived.append(signum)

    previous: dict[int, Any] = {}
    try:
        for number in HELD_SIGNALS:
            if signal.getsignal(number) is not None:  # None: a handler set from C, which Python cannot put back
                previous[number] = signal.signal(number, note)
        _depth = 1
        yield
    finally:
        _depth = 0
        for held, handler in previous.items():
            signal.signal(held, handler)
        for signum in arrived:  # the restored handlers run now, in order, outside the transaction
            signal.raise_signal(signum)
