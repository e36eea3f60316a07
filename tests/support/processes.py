"""Processes seen through Linux /proc: whether a command left workers behind."""

from __future__ import annotations

import time
from pathlib import Path


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def alive(pid: int | str) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, started by any of its threads."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(entry.name)[1])
        except (OSError, IndexError):
            continue
        if parent == pid:
            found.append(int(entry.name))
    return found


def wait_until_gone(pids: list[int], limit: float = 60.0) -> bool:
    """Whether every pid has exited (or is a zombie) within `limit` seconds: killing is asynchronous."""
    deadline = time.monotonic() + limit
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
