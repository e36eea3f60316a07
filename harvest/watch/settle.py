"""When is a file in a watched folder complete? Pure bookkeeping over stat results, easy to test.

A screenshot tool, a browser download or a copy over the network writes a file progressively. A file is taken
when it is complete, by one of three signs:
- its size and mtime stayed the same for the settle time (every writer, also on network drives);
- a close-after-write or a rename into place was seen, and the file has not changed since;
- it was already there, unchanged, with an mtime older than the settle time (files present at start).
A file that keeps changing for longer than `stuck_after` is reported once and never taken half-written; it is
taken later if it does settle. A file whose signature changes after it was taken is taken again (the content
hash makes a repeat harmless). Names that writers use for unfinished files are never taken.

A path that is there but can never be taken (a FIFO, a device, a socket, a symbolic link to nothing) is
`refused`: reported once with its reason, as `harvest import` reports it, instead of being passed over in
silence (a FIFO dropped into a watched folder used to vanish from the run without a word).
"""

from __future__ import annotations

import os
import stat as stat_mode
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Signature", "Tracker", "ignored_name", "signature"]

Signature = tuple[int, int]  # (size, mtime in ns)
Found = tuple[Signature, float] | str | None  # a regular file's (signature, mtime), a refusal's reason, or gone

TEMPORARY_SUFFIXES = (".part", ".crdownload", ".tmp", ".download", ".partial", ".swp")


def ignored_name(name: str) -> bool:
    """Hidden and temporary names: `.*`, `*.part`, `*.crdownload`, `*.tmp`, `*~` (and a few kin)."""
    lowered = name.lower()
    return not name or name.startswith(".") or name.endswith("~") or lowered.endswith(TEMPORARY_SUFFIXES)


def signature(path: str) -> Found:
    """(size, mtime_ns) of a regular file and its mtime in seconds; the reason it can never be taken for a
    path that is there but is no regular file (a FIFO, a device, a socket, a link to nothing); None when it
    is gone (or a folder: scans walk those)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "unreadable path: a symbolic link to nothing" if os.path.islink(path) else None
    except OSError as exc:  # a link loop, a name too long, no permission to look
        return f"unreadable path: {exc.strerror or exc}"
    if stat_mode.S_ISDIR(info.st_mode):
        return None
    if not stat_mode.S_ISREG(info.st_mode):
        return "not a regular file"
    return (info.st_size, info.st_mtime_ns), info.st_mtime


@dataclass
class _Pending:
    sig: Signature
    changed_at: float  # monotonic time the signature was last seen to change (or first seen)
    first_seen: float
    closed_sig: Signature | None = None  # the signature when a close-after-write or rename into place was seen
    aged: bool = False  # first seen with an mtime older than the settle time
    reported: bool = False  # reported as still being written


@dataclass
class Tracker:
    """The files not yet taken, and the signature each taken file had."""

    settle: float
    stuck_after: float
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    stat: Callable[[str], Found] = signature
    pending: dict[str, _Pending] = field(default_factory=dict)
    taken: dict[str, Signature] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # there, never to be taken: path -> reason
    _unreported: list[tuple[str, str]] = field(default_factory=list)

    def _refuse(self, path: str, reason: str) -> None:
        self.pending.pop(path, None)
        self.taken.pop(path, None)
        if path not in self.refused:
            self.refused[path] = reason
            self._unreported.append((path, reason))

    def refusals(self) -> list[tuple[str, str]]:
        """Paths newly found that can never be taken, with the reason: each reported once while it stays."""
        found, self._unreported = self._unreported, []
        return found

    def see(self, path: str, *, closed: bool = False) -> None:
        """A hint (an event or a scan) that `path` exists and may have changed."""
        found = self.stat(path)
        if found is None:
            self.gone(path)
            return
        if isinstance(found, str):
            self._refuse(path, found)
            return
        self.refused.pop(path, None)  # a regular file now (a FIFO replaced by a file): taken as any other
        sig, mtime = found
        if self.taken.get(path) == sig:
            return  # taken already, unchanged since
        now = self.clock()
        entry = self.pending.get(path)
        if entry is None:
            aged = self.wall() - mtime >= self.settle
            self.pending[path] = _Pending(sig, now, now, sig if closed else None, aged=aged)
        elif entry.sig != sig:
            entry.sig, entry.changed_at, entry.aged = sig, now, False
            entry.closed_sig = sig if closed else None
        elif closed:
            entry.closed_sig = sig

    def gone(self, path: str) -> None:
        """Deleted or moved away: forget it (a file deleted before it settled is simply not taken)."""
        self.pending.pop(path, None)
        self.taken.pop(path, None)
        self.refused.pop(path, None)

    def due(self) -> tuple[list[tuple[str, Signature]], list[str]]:
        """Stat every pending file: those complete now (with the signature judged), and those newly found still
        being written after `stuck_after` (reported once)."""
        ready: list[tuple[str, Signature]] = []
        stuck: list[str] = []
        now = self.clock()
        for path, entry in list(self.pending.items()):
            found = self.stat(path)
            if found is None:
                self.gone(path)
                continue
            if isinstance(found, str):
                self._refuse(path, found)
                continue
            sig = found[0]
            if sig != entry.sig:
                entry.sig, entry.changed_at, entry.closed_sig, entry.aged = sig, now, None, False
            elif entry.closed_sig == sig or entry.aged or now - entry.changed_at >= self.settle:
                ready.append((path, sig))
                continue
            if not entry.reported and now - entry.first_seen >= self.stuck_after:
                entry.reported = True
                stuck.append(path)
        return ready, stuck

    def take(self, path: str, sig: Signature) -> None:
        """`path` was handed to ingest with signature `sig`: not taken again unless it changes."""
        self.pending.pop(path, None)
        self.taken[path] = sig

    def forget_missing(self, present: set[str]) -> None:
        """After a full scan: drop what is no longer there (moved away, deleted) so memory stays bounded."""
        for path in [p for p in self.taken if p not in present]:
            del self.taken[path]
        for path in [p for p in self.pending if p not in present]:
            del self.pending[path]
        for path in [p for p in self.refused if p not in present]:
            del self.refused[path]

    def waiting(self) -> int:
        """Pending files not reported as stuck (what `--once` still waits for)."""
        return sum(not entry.reported for entry in self.pending.values())


def relative_parts(path: Path, root: Path) -> tuple[str, ...] | None:
    """The path's parts below root, or None when it is not below it."""
    try:
        return path.relative_to(root).parts
    except ValueError:
        return None
