"""Reading a local file for ingest without trusting an earlier look at its path.

A path checked with `stat` can be swapped (a symlink re-pointed, a file renamed over) before `open` runs:
opening a FIFO for reading then blocks until a writer comes, for ever if none does, and a device can stream
without end. So the descriptor decides: the open does not block (O_NONBLOCK), never makes a terminal the
controlling one (O_NOCTTY), and `fstat` of the opened descriptor must say "regular file" before a byte is
read. Symlinks to files are still followed: they are how users arrange folders.
"""

from __future__ import annotations

import os
import stat

from storage.imaging import Rejected

__all__ = ["read_regular_file"]

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


def _unreadable(exc: OSError) -> Rejected:
    return Rejected(f"unreadable path: {exc.strerror or exc}")


def _check(info: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise Rejected("not a regular file")
    if info.st_size > max_bytes:
        raise Rejected(f"file is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit")


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path` (at most `max_bytes` + 1 of them, so that a file that grew
    past the limit shows it); Rejected, with a reason, for anything else."""
    try:
        _check(os.stat(path), max_bytes)  # the usual refusals without opening anything
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _unreadable(exc) from None
    try:
        _check(os.fstat(fd), max_bytes)  # what was opened, whatever the path says now
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(max_bytes + 1)
    except OSError as exc:
        raise _unreadable(exc) from None
    finally:
        os.close(fd)
