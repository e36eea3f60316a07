"""A small cache of values that only change with the catalog version: the legend and the size of a view.

Paging through a view, or several tabs refreshing after one change, then pay for the grouped scans once. The
version moves with every label or review change; the time limit covers changes that write no history
(`curate dedupe --apply`, new unlabelled images).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

from sqlalchemy import Connection

from storage.catalog.review import LegendEntry, legend

__all__ = ["VersionCache", "cached_legend"]

T = TypeVar("T")


class VersionCache:
    """(catalog version, key) -> value, for at most `ttl` seconds and `size` entries."""

    def __init__(self, ttl: float = 30.0, size: int = 128) -> None:
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[tuple[str, Hashable], tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: str, key: Hashable, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            found = self._items.get((version, key))
            if found is not None and now - found[0] < self.ttl:
                return found[1]  # type: ignore[return-value]
        value = compute()
        self.put(version, key, value)
        return value

    def put(self, version: str, key: Hashable, value: object) -> None:
        with self._lock:
            self._items[(version, key)] = (time.monotonic(), value)
            self._items.move_to_end((version, key))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def cached_legend(cache: VersionCache, conn: Connection, version: str) -> list[LegendEntry]:
    """The legend for this catalog version (one grouped scan per change, shared by every open tab)."""
    return cache.get(version, "legend", lambda: legend(conn))
