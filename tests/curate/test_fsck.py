"""`curate fsck [--fix]` on a local folder store and on SeaweedFS: missing, corrupt and orphan objects."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from curate.cli import app
from harvest.importer import import_paths
from storage.catalog import label_counts
from storage.catalog.schema import images
from storage.keys import image_key
from storage.workspace import Workspace


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


RUNNER = CliRunner()


def fsck_cli(ws: Workspace, *args: str) -> Result:
    """`curate fsck --json ARGS -w WS` (in process; the S3 credentials come from the environment)."""
    environment: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GLEANER_")}
    result = RUNNER.invoke(app, ["fsck", "--json", *args, "-w", str(ws.root)], env=environment)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("uncaught exception (a user would see a traceback)") from result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def statuses(ws: Workspace) -> dict[str, str]:
    with ws.catalog.read() as conn:
        return {sha: status for sha, status in conn.execute(select(images.c.sha256, images.c.status))}


def sha_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def key_of(path: Path) -> str:
    return image_key(sha_of(path), "jpg")


def import_files(ws: Workspace, paths: list[Path]) -> None:
    summary = import_paths(ws, paths, label="cat", workers=1).summary
    assert summary.rejected == summary.failed == 0, summary.problems


def labels(ws: Workspace) -> dict[str, int]:
    with ws.catalog.read() as conn:
        return label_counts(conn)


@dataclass(frozen=True)
class Damaged:
    ws: Workspace
    files: list[Path]
    missing: Path  # its object was deleted
    corrupt: Path  # its object was overwritten with other bytes
    orphan_key: str  # an object no catalog row names


@pytest.fixture
def damaged(any_workspace: Workspace, photo_files: list[Path]) -> Damaged:
    ws = any_workspace
    files = photo_files[10:14]
    import_files(ws, files)
    report = fsck_cli(ws)
    assert report.code == 0, report.stderr
    document = report.json()
    assert document == {"ok": True, "checked": 4, "missing": [], "corrupt": [], "orphans": [], "fixed": {}}

    missing, corrupt, stranger = files[0], files[1], photo_files[20]
    ws.store.delete(key_of(missing))
    ws.store.put(key_of(corrupt), photo_files[21].read_bytes())
    orphan_key = key_of(stranger)
    ws.store.put(orphan_key, stranger.read_bytes())
    return Damaged(ws, files, missing, corrupt, orphan_key)


def test_fsck_reports_missing_corrupt_and_orphans(damaged: Damaged) -> None:
    result = fsck_cli(damaged.ws)
    assert result.code == 1  # problems found and not fixed
    document = result.json()
    assert document["ok"] is False
    assert document["checked"] == 4
    assert document["missing"] == [sha_of(damaged.missing)]
    assert document["corrupt"] == [sha_of(damaged.corrupt)]
    assert document["orphans"] == [damaged.orphan_key]
    assert document["fixed"] == {}
    # Reporting alone changes nothing.
    assert set(statuses(damaged.ws).values()) == {"ok"}
    assert damaged.ws.store.exists(damaged.orphan_key)


def test_fsck_fix_removes_orphans_and_marks_broken_images(damaged: Damaged) -> None:
    result = fsck_cli(damaged.ws, "--fix")
    assert result.code == 0, result.stderr
    document = result.json()
    assert document["orphans"] == [damaged.orphan_key]
    assert document["fixed"] == {"orphans_removed": 1, "marked": 2, "restored": 0}
    assert not damaged.ws.store.exists(damaged.orphan_key)
    assert (
        statuses(damaged.ws)
        == {
            sha_of(damaged.missing): "missing",
            sha_of(damaged.corrupt): "missing",  # its bad bytes were deleted
            **{sha_of(p): "ok" for p in damaged.files[2:]},
        }
    )
    assert labels(damaged.ws) == {"cat": 2}  # broken images are not counted

    again = fsck_cli(damaged.ws)
    assert again.code == 1
    document = again.json()
    assert (sorted(document["missing"]), document["corrupt"], document["orphans"]) == (
        sorted([sha_of(damaged.missing), sha_of(damaged.corrupt)]),
        [],
        [],
    )
    assert not damaged.ws.store.exists(key_of(damaged.corrupt))


def test_reimport_restores_a_missing_image(damaged: Damaged) -> None:
    fsck_cli(damaged.ws, "--fix")
    import_files(damaged.ws, [damaged.missing])
    assert damaged.ws.store.get(key_of(damaged.missing)) == damaged.missing.read_bytes()
    assert statuses(damaged.ws)[sha_of(damaged.missing)] == "ok"
    document = fsck_cli(damaged.ws).json()
    # only the image whose corrupt bytes --fix deleted is still missing
    assert (document["missing"], document["corrupt"], document["orphans"]) == ([sha_of(damaged.corrupt)], [], [])


def test_fix_marks_an_image_ok_again_once_its_object_is_whole(damaged: Damaged) -> None:
    fsck_cli(damaged.ws, "--fix")
    damaged.ws.store.put(key_of(damaged.corrupt), damaged.corrupt.read_bytes())
    damaged.ws.store.put(key_of(damaged.missing), damaged.missing.read_bytes())
    result = fsck_cli(damaged.ws, "--fix")
    assert result.code == 0
    document = result.json()
    assert document["ok"] is True
    assert document["fixed"] == {"orphans_removed": 0, "marked": 0, "restored": 2}
    assert set(statuses(damaged.ws).values()) == {"ok"}
    assert labels(damaged.ws) == {"cat": 4}


def test_reimport_restores_a_corrupt_image(damaged: Damaged) -> None:
    fsck_cli(damaged.ws, "--fix")
    import_files(damaged.ws, [damaged.corrupt])
    assert fsck_cli(damaged.ws).json()["corrupt"] == []
    assert damaged.ws.store.get(key_of(damaged.corrupt)) == damaged.corrupt.read_bytes()
