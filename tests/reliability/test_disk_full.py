"""A disk that fills up while a collector runs (issue 14, item 3): one clear error, catalog and store consistent.

tests/storage/test_full_disk.py covers `curate` commands on a full disk; here the collectors meet it in the
middle of a run. The disk is real: a small tmpfs (mounting needs root, as in CI; skipped with the reason
where it is refused) that holds the store, or the catalog, and a filler file that leaves only a little of it
free. The collector runs as a user runs it (a subprocess of the console script) and must stop with one `error:`
line, no traceback and a non-zero exit; `curate fsck` then finds nothing missing or corrupt (an object stored
just before the catalog refused its row is an orphan, which the design allows and a rerun records). After the
filler is removed, a rerun completes: every photo catalogued once, `curate fsck` ok.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from curate.fsck import FsckReport, fsck
from storage.catalog.schema import images, sources
from storage.workspace import init_workspace, open_workspace
from tests.reliability.ledger import Entry, Ledger, assert_zero_loss
from tests.support.disks import fill, small_disk
from tests.support.site import Site

BIN = Path(sys.executable).parent
PHOTOS = 40  # about 7.6 MiB of real photos: more than the free room, less than the whole disk
CATALOG_PHOTOS = 160  # their rows take more than the catalog's free room
DISK = "12m"  # the tmpfs: room for every photo once the filler is gone
STORE_ROOM = 2 * 1024 * 1024  # left free under the store: a dozen photos fit, then the disk is full
CATALOG_ROOM = 256 * 1024  # left free under the catalog: a batch or so commits, then SQLite is full


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", DISK) as mount:
        yield mount


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_") and k != "COLUMNS"}
    return subprocess.run(
        [str(BIN / str(args[0])), *map(str, args[1:])], capture_output=True, text=True, env=environment, timeout=180
    )


def error_line(done: subprocess.CompletedProcess[str]) -> str | None:
    """The failed run's one `error:` line about the full disk, or None when it did not fail with exactly one
    such line (and with --json the same message as `{"error": ...}` on stdout), or showed a traceback."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    if done.returncode == 0 or "Traceback" in done.stderr or "╭" in done.stderr or len(errors) != 1:
        return None
    if "no space left" not in errors[0] or "free some space" not in errors[0]:
        return None
    try:
        document = json.loads(done.stdout)
    except ValueError:
        return None
    return errors[0] if document == {"error": errors[0].removeprefix("error: ")} else None


def checked(ws: Path) -> FsckReport:
    """What `curate fsck` reports (its library function, in this process: the same check, one start less)."""
    with open_workspace(ws) as workspace:
        return fsck(workspace)


def new_workspace(ws: Path, store: Path, catalog: Path | None = None) -> None:
    workspace, _ = init_workspace(ws, store_url=str(store), catalog_url=f"sqlite:///{catalog}" if catalog else None)
    workspace.close()


def leftovers(store: Path) -> list[Path]:
    """Temporary files of interrupted object writes: space a full disk can least spare, and no fsck finds them."""
    return sorted(store.rglob(".tmp-*"))


@dataclass(frozen=True)
class Tally:
    lost: int  # photos the catalog lacks after the rerun
    doubled: int  # images or sources recorded twice for one photo


def tally(ws: Path, photos: list[Path], kind: str) -> Tally:
    wanted = {hashlib.sha256(photo.read_bytes()).hexdigest() for photo in photos}
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        shas = [row.sha256 for row in conn.execute(select(images.c.sha256))]
        per_photo = conn.execute(
            select(func.count()).select_from(sources).where(sources.c.kind == kind).group_by(sources.c.sha256)
        ).scalars()
        doubled_sources = sum(count - 1 for count in per_photo)
    return Tally(lost=len(wanted - set(shas)), doubled=len(shas) - len(set(shas)) + doubled_sources)


def photo_folder(where: Path, photos: list[Path]) -> Path:
    where.mkdir()
    for photo in photos:
        shutil.copy(photo, where / photo.name)
    return where


@dataclass
class Trial:
    """One collector run into a disk that fills up, and the rerun after the disk was freed."""

    photos: int
    failed: subprocess.CompletedProcess[str]
    line: str | None  # the one error line of the failed run
    after_error: FsckReport
    leftovers: list[Path]
    rerun: subprocess.CompletedProcess[str]
    final: FsckReport
    tally: Tally

    @property
    def consistent_after_error(self) -> bool:
        return not (self.after_error.missing or self.after_error.corrupt or self.leftovers)

    @property
    def rerun_ok(self) -> bool:
        return self.rerun.returncode == 0 and "Traceback" not in self.rerun.stderr and self.final.ok

    @property
    def survived(self) -> int:
        return int(self.line is not None and self.consistent_after_error and self.rerun_ok)

    def entry(self, case: str) -> Entry:
        message = (self.line or "no clear error line").removeprefix("error: ")
        return Entry(
            area="disk",
            case=case,
            faults=1,
            survived=self.survived,
            items_lost=self.tally.lost,
            items_doubled=self.tally.doubled,
            note=f"{self.after_error.checked} of {self.photos} images recorded, then: {message}",
        )

    def check(self) -> None:
        """The details behind `survived`, each with what a reader needs to see why it failed."""
        assert self.line is not None, (self.failed.returncode, self.failed.stdout[-2000:], self.failed.stderr[-3000:])
        assert self.consistent_after_error, (self.after_error.to_json(), self.leftovers)
        assert self.rerun.returncode == 0 and "Traceback" not in self.rerun.stderr, self.rerun.stderr[-3000:]
        assert json.loads(self.rerun.stdout)["failed"] == 0, self.rerun.stdout[-3000:]
        assert self.final.ok, self.final.to_json()


def fill_up(
    ws: Path, disk: Path, room: int, command: list[str | Path], photos: list[Path], kind: str, store: Path
) -> Trial:
    """Run `command` with `room` bytes free on `disk`, look at the store and catalog it leaves, free the disk and
    run it again."""
    filler = fill(disk, room)
    failed = cli(*command, "-w", ws, "--json")
    line = error_line(failed)
    after_error = checked(ws)
    left = leftovers(store)
    filler.unlink()
    rerun = cli(*command, "-w", ws, "--json")
    return Trial(
        len(photos), failed, line and line.replace(str(store), "STORE"), after_error, left, rerun, checked(ws),
        tally(ws, photos, kind),
    )  # fmt: skip


def test_store_fills_up_during_import(photo_files: list[Path], disk: Path, tmp_path: Path, ledger: Ledger) -> None:
    photos = photo_files[:PHOTOS]
    folder = photo_folder(tmp_path / "photos", photos)
    ws, store = tmp_path / "ws", disk / "store"
    new_workspace(ws, store)
    trial = fill_up(ws, disk, STORE_ROOM, ["harvest", "import", folder, "--workers", "2"], photos, "file", store)
    entry = ledger.record(trial.entry("store on a full 12 MiB tmpfs during `harvest import`, rerun after freeing it"))
    trial.check()
    assert trial.after_error.checked > 0, "the disk was full before the run began, not during it"
    assert_zero_loss(entry)


def test_catalog_fills_up_during_import(photo_files: list[Path], disk: Path, tmp_path: Path, ledger: Ledger) -> None:
    photos = photo_files[:CATALOG_PHOTOS]
    folder = photo_folder(tmp_path / "photos", photos)
    ws, store = tmp_path / "ws", tmp_path / "store"
    new_workspace(ws, store, disk / "catalog.db")
    trial = fill_up(ws, disk, CATALOG_ROOM, ["harvest", "import", folder, "--workers", "2"], photos, "file", store)
    entry = ledger.record(
        trial.entry("catalog (SQLite) on a full 12 MiB tmpfs during `harvest import`, rerun after freeing it")
    )
    trial.check()
    assert_zero_loss(entry)


def test_store_fills_up_during_urls(
    photo_files: list[Path], photos_dir: Path, disk: Path, tmp_path: Path, ledger: Ledger
) -> None:
    photos = photo_files[:PHOTOS]
    ws, store = tmp_path / "ws", disk / "store"
    new_workspace(ws, store)
    with Site(photos_dir) as site:
        urls = tmp_path / "urls.csv"
        urls.write_text("url\n" + "".join(site.url(f"/img/{photo.name}") + "\n" for photo in photos))
        command: list[str | Path] = ["harvest", "urls", urls, "--allow-private", "--per-host-rate", "0"]
        trial = fill_up(ws, disk, STORE_ROOM, [*command, "--workers", "2"], photos, "url", store)
    entry = ledger.record(trial.entry("store on a full 12 MiB tmpfs during `harvest urls`, rerun after freeing it"))
    trial.check()
    assert trial.after_error.checked > 0, "the disk was full before the run began, not during it"
    assert_zero_loss(entry)
