"""A full disk under the catalog or the export folder is one `error:` line, never a traceback (issue 16, item 17).

The disk is real: a 2 MiB tmpfs (needs the right to mount, as root in CI; skipped where mounting is refused),
filled to its last 64 KiB so that SQLite answers "database or disk is full" and writes get ENOSPC."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli import app as curate_app
from storage.workspace import init_workspace
from tests.support.disks import fill as fill_disk
from tests.support.disks import small_disk

LEFT = 64 * 1024


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "tiny", "2m") as mount:
        yield mount


def fill(disk: Path, left: int = LEFT) -> None:
    fill_disk(disk, left)
    assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize <= left


def run(tool: str, *args: str | Path) -> Result:
    """`curate ARGS` in process, as a user runs it (an uncaught exception is what a user sees as a traceback)."""
    assert tool == "curate"
    environment: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GLEANER_")}
    result = CliRunner().invoke(curate_app, list(map(str, args)), env=environment)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("uncaught exception (a user would see a traceback)") from result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def one_error_line(done: Result, needle: str) -> str:
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "╭" not in done.stderr, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    return lines[0]


def test_a_full_catalog_disk_is_one_line(tiny_disk: Path, tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws", catalog_url=f"sqlite:///{tiny_disk / 'catalog.db'}")
    ws.close()
    fill(tiny_disk)
    names = [f"label-{i}-" + "x" * 150 for i in range(1500)]  # far more than 64 KiB of rows
    plain = run("curate", "label", "add", *names, "-w", ws.root)
    line = one_error_line(plain, "database or disk is full")
    assert "free some space" in line
    as_json = run("curate", "label", "add", *names, "-w", ws.root, "--json")
    one_error_line(as_json, "database or disk is full")
    assert json.loads(as_json.stdout) == {"error": line.removeprefix("error: ")}
    (tiny_disk / "filler").unlink()  # space again: the catalog is whole and the command works
    done = run("curate", "label", "add", "cat", "-w", ws.root, "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"created": ["cat"]}, done.stderr


def test_a_full_disk_under_the_catalog_at_open_is_one_line(tiny_disk: Path, tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws", catalog_url=f"sqlite:///{tiny_disk / 'catalog.db'}")
    ws.close()
    fill(tiny_disk, left=0)  # not even room for the write-ahead log
    one_error_line(run("curate", "label", "add", "cat", "-w", ws.root), "catalog")
