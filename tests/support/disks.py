"""A real small disk to fill up: a tmpfs mounted for one test (needs the right to mount, as root in CI; the test
is skipped with the reason where mounting is refused), and a filler file that leaves only a little of it free."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["fill", "small_disk"]


@contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's syntax: "2m") at `where`, unmounted afterwards."""
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small disk to fill")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, room: int) -> Path:
    """Leave only `room` bytes free on `disk`; the filler's path (remove it to free the disk)."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - room))
    return filler
