"""Is the process behind a claim or a worker row still alive on this host? One answer for leases and runs."""

from __future__ import annotations

import os

__all__ = ["process_exists"]


def process_exists(pid: int) -> bool:
    """True while `pid` runs (this process included). A killed child its parent has not reaped yet still
    answers kill(pid, 0), but it holds nothing: /proc shows it as a zombie (state Z), which counts as gone."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True
