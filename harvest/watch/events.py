"""File-system events for `harvest watch`: watchdog's inotify observer, or its polling observer.

Events are hints: they make the watcher look at a file sooner, and a close-after-write or a rename into place
says a file is complete. The periodic full scan is the truth, so a missed event costs time, never a file.
Polling is used when asked (`--poll`) and automatically when events cannot be had: a network file system
(NFS, SMB, sshfs... send no inotify events for changes made elsewhere) or an inotify that will not start
(watch or instance limits). An event source that dies (its thread ends) is restarted by `EventFeed.check`.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.polling import PollingObserver

__all__ = ["EventFeed", "Hint", "network_filesystem"]

log = logging.getLogger(__name__)

RETRY_EVERY = 2.0  # seconds between attempts to watch a folder that is not there

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "9p", "afs", "ceph", "glusterfs", "davfs"}
)


@dataclass(frozen=True)
class Hint:
    """`path` may have changed (`closed`: its writer finished), is `gone`, or is a folder to scan (`folder`)."""

    path: str
    closed: bool = False
    gone: bool = False
    folder: bool = False


def _text(path: bytes | str) -> str:
    return path.decode() if isinstance(path, bytes) else path


class _Handler(FileSystemEventHandler):
    def __init__(self, hints: queue.SimpleQueue[Hint]) -> None:
        self.hints = hints

    def on_any_event(self, event: FileSystemEvent) -> None:
        put = self.hints.put
        source = _text(event.src_path)
        if isinstance(event, FileMovedEvent):
            put(Hint(source, gone=True))
            put(Hint(_text(event.dest_path), closed=True))  # renamed into place: its writer is done with it
        elif isinstance(event, FileClosedEvent):
            put(Hint(source, closed=True))
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent):
            put(Hint(source))
        elif isinstance(event, FileDeletedEvent):
            put(Hint(source, gone=True))
        elif isinstance(event, DirMovedEvent):
            put(Hint(_text(event.dest_path), folder=True))  # a folder moved in brings files no event names
        elif isinstance(event, DirCreatedEvent):
            put(Hint(source, folder=True))


def network_filesystem(path: Path) -> str | None:
    """The type of the network file system `path` is on (from /proc/mounts), or None."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    resolved = str(path.resolve())
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind if kind in NETWORK_FILESYSTEMS else None


class EventFeed:
    """A running watchdog observer on `root` (recursive) whose events arrive as `Hint`s in `hints`."""

    def __init__(self, root: Path, *, poll: bool = False, poll_interval: float = 1.0) -> None:
        self.root = root
        self.poll_interval = poll_interval
        self.hints: queue.SimpleQueue[Hint] = queue.SimpleQueue()
        self.mode = "polling" if poll else "events"
        self.reason = "--poll" if poll else ""
        self.restarts = 0
        self.observer: Any = None
        self._retry_at = 0.0  # while the folder is gone: when to try starting the observer again
        if not poll and (kind := network_filesystem(root)):
            self.mode, self.reason = "polling", f"{root} is on {kind}, which sends no change events"
        self._start()

    def _start(self) -> None:
        if not self.root.is_dir():  # gone for now (an unmounted drive): not a reason to give up on events
            raise FileNotFoundError(f"{self.root} is not there")
        if self.mode == "events":
            try:
                from watchdog.observers import Observer

                observer = Observer()
                observer.schedule(_Handler(self.hints), str(self.root), recursive=True)
                observer.start()
                self.observer = observer
                return
            except (OSError, RuntimeError) as exc:  # inotify limits, or no inotify at all
                self.mode, self.reason = "polling", f"no file-system events ({exc})"
                log.warning("watching %s by polling: %s", self.root, self.reason)
        observer = PollingObserver(timeout=self.poll_interval)
        observer.schedule(_Handler(self.hints), str(self.root), recursive=True)
        observer.start()
        self.observer = observer

    def alive(self) -> bool:
        observer = self.observer
        if observer is None or not observer.is_alive():
            return False
        return all(emitter.is_alive() for emitter in list(observer.emitters))

    def check(self) -> bool:
        """Restart the observer if it died; True when it was restarted (the caller rescans: events were lost)."""
        if self.alive():
            return False
        now = time.monotonic()
        if self.observer is None and now < self._retry_at:
            return False
        if self.observer is not None:
            log.warning("the event source of %s stopped; starting it again", self.root)
        self._stop_observer()
        try:
            self._start()
        except OSError as exc:  # the folder is gone for now (an unmounted drive): try again in a while
            if self._retry_at == 0.0:
                log.warning("cannot watch %s: %s; trying again every %g s", self.root, exc, RETRY_EVERY)
            self._retry_at = now + RETRY_EVERY
            self.observer = None
            return False
        self._retry_at = 0.0
        self.restarts += 1
        return True

    def drain(self, timeout: float) -> list[Hint]:
        """The hints that arrived, waiting up to `timeout` seconds for the first."""
        found: list[Hint] = []
        try:
            found.append(self.hints.get(timeout=timeout))
            while True:
                found.append(self.hints.get_nowait())
        except queue.Empty:
            pass
        return found

    def _stop_observer(self) -> None:
        observer, self.observer = self.observer, None
        if observer is None:
            return
        try:
            observer.stop()
            if observer.is_alive():
                observer.join(5)
        except Exception:  # a broken observer must not stop the watcher
            log.debug("stopping the observer failed", exc_info=True)

    def close(self) -> None:
        self._stop_observer()
