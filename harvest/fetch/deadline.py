"""A watchdog that holds each request to its deadline, from connect through status line, headers and body.

Socket timeouts bound each read, not a request: a server that sends its headers a byte a second, or
`100 Continue` lines for ever, never lets one read time out, and http.client reads the status line and the
headers before the Fetcher sees anything. So one thread per process watches the requests in progress and,
when one passes its deadline, shuts its socket down: the blocked read returns at once, and the Fetcher reports
a timeout. `shutdown`, not `close`: closing a descriptor another thread is reading from does not wake it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Watch", "Watchdog"]

RECHECK = 0.05  # seconds between looks at a request still connecting when its deadline passed
IDLE = 2.0  # seconds without a request in progress before the thread ends (a process about to fork has none)


class Watch:
    """One request under watch: the connections it used, and whether its deadline cut it off."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connections: list[Any] = []  # urllib3 connections; their `sock` appears once connected
        self.fired = False
        self.done = False

    def cut(self) -> bool:
        """Shut the sockets down; False while there is no socket yet (a connect is under way: look again)."""
        self.fired = True
        cut = False
        for connection in self.connections:
            sock = getattr(connection, "sock", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: TLS state left alone
                cut = True
        return cut


class Watchdog:
    """The requests in progress in this process, by deadline; thread-safe, started lazily (and again after a
    fork, whose child has no threads)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def watch(self, deadline: float) -> Iterator[Watch]:
        """Watch the request made inside the block (on this thread) until `deadline` (time.monotonic)."""
        if self._pid != os.getpid():
            self._reset()
        entry = Watch(deadline)
        self._local.entry = entry
        with self._lock:
            heapq.heappush(self._heap, (deadline, next(self._order), entry))
            if self._thread is None or not self._thread.is_alive():
                self._closed = False
                self._thread = threading.Thread(target=self._run, name="gleaner-fetch-deadlines", daemon=True)
                self._thread.start()
            self._lock.notify()
        try:
            yield entry
        finally:
            entry.done = True  # dropped from the heap when its turn comes
            entry.connections.clear()  # (holding nothing until then)
            self._local.entry = None

    def attach(self, connection: Any) -> None:
        """The connection the current thread's watched request is about to use."""
        entry: Watch | None = getattr(self._local, "entry", None)
        if entry is not None and not entry.done:
            entry.connections.append(connection)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._lock.wait(IDLE)
                    if not self._heap:
                        self._thread = None  # the next watch starts a new one
                        return
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                _deadline, _n, entry = heapq.heappop(self._heap)
                if not entry.cut():
                    heapq.heappush(self._heap, (time.monotonic() + RECHECK, next(self._order), entry))
