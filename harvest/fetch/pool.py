"""Fetch many URLs on a thread pool, bounded in flight, results in completion order.

Collectors hand the pool an iterator of work rows (frontier rows, links...) and read `(row, FetchResult)`
pairs back as they finish. At most `window` fetches are submitted and not yet read back, and completed bodies
waiting to be read never hold more than `max_buffered_bytes`, so memory stays bounded for lists of any
length. Completions travel through one queue (no per-call scan of every pending future).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Generic, TypeVar

from harvest.fetch.client import Fetcher, FetchKind, FetchResult

__all__ = ["FetchPool"]

Row = TypeVar("Row")
DEFAULT_BUFFER = 256 * 1024 * 1024


class FetchPool(Generic[Row]):
    """`concurrency` threads sharing one Fetcher (its per-host limits and robots cache apply across them)."""

    def __init__(
        self,
        fetcher: Fetcher,
        concurrency: int,
        *,
        kind: FetchKind = "image",
        window: int | None = None,
        max_buffered_bytes: int = DEFAULT_BUFFER,
    ) -> None:
        self.fetcher = fetcher
        self.kind: FetchKind = kind
        self.window = window or max(2, 2 * concurrency)
        self.max_buffered_bytes = max_buffered_bytes
        self._executor = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="gleaner-fetch")
        self._done: queue.SimpleQueue[tuple[Row, FetchResult]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._buffered = 0
        self._in_flight = 0
        self._rows: Iterator[Row] | None = None
        self._url_of: Callable[[Row], str] = str
        self.submitted = 0

    def start(self, rows: Iterator[Row], url_of: Callable[[Row], str]) -> None:
        """Begin fetching; the threads exist when this returns (process pools created later use forkserver)."""
        self._rows, self._url_of = rows, url_of
        self._top_up()

    def results(self) -> Iterator[tuple[Row, FetchResult]]:
        """Completed fetches until every row has been fetched; keeps the pool topped up as they are read."""
        while True:
            self._top_up()
            if self._in_flight == 0:
                return
            row, result = self._done.get()
            with self._lock:
                self._in_flight -= 1
                self._buffered -= len(result.data or b"")
            yield row, result

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> FetchPool[Row]:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _top_up(self) -> None:
        while self._rows is not None and self._in_flight < self.window and self._buffered < self.max_buffered_bytes:
            row = next(self._rows, None)
            if row is None:
                self._rows = None
                return
            with self._lock:
                self._in_flight += 1
            self.submitted += 1
            self._executor.submit(self._work, row)

    def _work(self, row: Row) -> None:
        url = self._url_of(row)
        started = time.monotonic()
        try:
            result = self.fetcher.fetch(url, kind=self.kind)
        except Exception as exc:  # Fetcher.fetch does not raise; a bug must not lose the row either
            result = FetchResult(
                url=url, final_url=url, status=None, content_type=None, data=None, error=repr(exc),
                error_kind="connection", fetched_at=datetime.now(UTC), elapsed=time.monotonic() - started, attempts=0,
            )  # fmt: skip
        with self._lock:
            self._buffered += len(result.data or b"")
        self._done.put((row, result))
