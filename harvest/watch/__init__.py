"""`harvest watch`: the folder watcher, a source on the collection engine (see `source.py`)."""

from harvest.watch.source import DEFAULT_RESCAN, DEFAULT_SETTLE, DEFAULT_STUCK_AFTER, WatchOptions, WatchSource

__all__ = ["DEFAULT_RESCAN", "DEFAULT_SETTLE", "DEFAULT_STUCK_AFTER", "WatchOptions", "WatchSource"]
