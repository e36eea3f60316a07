"""`harvest watch` with real files, real writers and real timing (no mocked events), as a user runs it.

Each continuous test starts the console entry point in a subprocess with short settle and rescan times, makes
files arrive the way screenshot tools, browsers and copies do, then stops it with a real SIGINT and reads the
JSON summary it prints. Images are random-noise PNGs: each one distinct, none a near-duplicate of another.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from harvest.engine import Engine
from harvest.watch import WatchOptions, WatchSource
from harvest.watch.settle import Tracker, ignored_name
from storage.catalog import image_sources, iter_images
from storage.workspace import init_workspace, open_workspace
from tests.harvest.test_import import assert_summary, curate, harvest, ok_json

SETTLE = "0.6"


def png(seed: int, width: int = 48, height: int = 40) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def images(ws: Path) -> dict[str, dict[str, Any]]:
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        return {row["sha256"]: {**row, "sources": image_sources(conn, row["sha256"])} for row in iter_images(conn)}


def slow_write(path: Path, data: bytes, *, pieces: int, gap: float) -> None:
    """One open file, appended piece by piece with pauses (a tool writing a large screenshot progressively)."""
    step = -(-len(data) // pieces)
    with open(path, "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start : start + step])
            handle.flush()
            os.fsync(handle.fileno())
            time.sleep(gap)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    init_workspace(root)[0].close()
    return root


class Watcher:
    """`harvest watch` in a subprocess; its stderr lines are collected by a thread."""

    def __init__(self, ws: Path, folder: Path, *args: str) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_") and k != "COLUMNS"}
        command = [sys.executable, "-m", "harvest.cli", "watch", str(folder), "--json", "-w", str(ws), *args]
        self.process = subprocess.Popen(
            command, cwd=ws.parent, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group, as in a terminal
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for("watching", timeout=60)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, word: str) -> int:
        return sum(line.startswith(word) for line in list(self.lines))

    def wait_for(self, word: str, n: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.count(word) < n:
            assert self.process.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, f"waited for {n} x {word!r}:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGINT) -> dict[str, Any]:
        """Send a real signal; the watcher must exit 0 with the collector JSON on stdout."""
        self.process.send_signal(sig)
        stdout, _ = self.process.communicate(timeout=60)
        self._reader.join(5)
        stderr = "\n".join(self.lines)
        assert self.process.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
        document: dict[str, Any] = json.loads(stdout)
        return document

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate(timeout=30)


@contextmanager
def watching(ws: Path, folder: Path, *args: str) -> Iterator[Watcher]:
    watcher = Watcher(ws, folder, "--settle", SETTLE, "--rescan-every", "1", *args)
    try:
        yield watcher
    finally:
        watcher.kill()


# --- pure rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ignored"),
    [(".shot.png", True), ("shot.png.part", True), ("a.crdownload", True), ("b.tmp", True), ("c.png~", True),
     ("shot.png", False), ("Screenshot 2026-01-01 at 10.00.00.png", False), ("PART.png", False)],
)  # fmt: skip
def test_hidden_and_temporary_names(name: str, ignored: bool) -> None:
    assert ignored_name(name) is ignored


def test_tracker_settles_on_unchanged_size_and_mtime(tmp_path: Path) -> None:
    now = [100.0]
    tracker = Tracker(settle=2.0, stuck_after=10.0, clock=lambda: now[0], wall=lambda: 0.0)
    path = tmp_path / "a.png"
    path.write_bytes(b"12")
    tracker.see(str(path))
    assert tracker.due() == ([], [])
    now[0] += 1.5
    with open(path, "ab") as handle:
        handle.write(b"34")  # it grew: the clock starts again
    assert tracker.due() == ([], [])
    now[0] += 1.9
    assert tracker.due() == ([], [])
    now[0] += 0.2
    ready, _ = tracker.due()
    assert [p for p, _sig in ready] == [str(path)]
    tracker.take(*ready[0])
    tracker.see(str(path))  # an event for a file taken and unchanged: nothing to do
    assert not tracker.pending


def test_tracker_reports_a_file_that_never_settles_once(tmp_path: Path) -> None:
    now = [0.0]
    tracker = Tracker(settle=1.0, stuck_after=5.0, clock=lambda: now[0], wall=lambda: 0.0)
    path = tmp_path / "grows.png"
    path.write_bytes(b"x")
    tracker.see(str(path))
    reported = []
    for step in range(12):
        now[0] += 0.6
        path.write_bytes(b"x" * (step + 2))
        ready, stuck = tracker.due()
        assert ready == []
        reported += stuck
    assert reported == [str(path)]
    path.unlink()
    assert tracker.due() == ([], []) and not tracker.pending  # deleted before it settled: forgotten


# --- --once ---------------------------------------------------------------------------------------------


def test_once_ingests_files_present_at_start_with_folder_labels(ws: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "cats").mkdir(parents=True)
    (inbox / "dogs" / "big").mkdir(parents=True)
    (inbox / ".cache").mkdir()
    files = {
        inbox / "top.png": png(1),
        inbox / "cats" / "c1.png": png(2),
        inbox / "cats" / "c2.png": png(3),
        inbox / "dogs" / "big" / "d1.png": png(4),
    }
    ignored = {
        inbox / ".hidden.png": png(5),
        inbox / "cats" / "half.png.part": png(6),
        inbox / "x.crdownload": png(7),
        inbox / "y.tmp": png(8),
        inbox / "z.png~": png(9),
        inbox / ".cache" / "inner.png": png(10),
    }
    for path, data in {**files, **ignored}.items():
        path.write_bytes(data)
    (inbox / "notes.txt").write_text("not an image")

    args = ("watch", inbox, "--once", "--labels-from-folders", "--label", "screens", "--settle", "0.2")
    document = ok_json(harvest(*args, "--json", "-w", ws, cwd=tmp_path))
    assert_summary(document, added=4, duplicates=0, rejected=1, failed=0)
    assert document["problems"][0]["item"].endswith("notes.txt")
    stored = images(ws)
    assert set(stored) == {sha(data) for data in files.values()}
    labels = {Path(row["sources"][0]["uri"]).name: row["label"] for row in stored.values()}
    assert labels == {
        "top.png": "screens",
        "c1.png": "cats",
        "c2.png": "cats",
        "d1.png": "dogs",
    }  # the first folder under the root
    assert {row["sources"][0]["kind"] for row in stored.values()} == {"watch"}

    again = ok_json(harvest(*args, "--json", "-w", ws, cwd=tmp_path))  # a rerun: repeats are harmless
    assert_summary(again, added=0, duplicates=4)


def test_once_move_to_keeps_subfolders_and_delete_removes(ws: Path, tmp_path: Path) -> None:
    inbox, done = tmp_path / "inbox", tmp_path / "done"
    (inbox / "cats").mkdir(parents=True)
    (inbox / "a.png").write_bytes(png(11))
    (inbox / "cats" / "b.png").write_bytes(png(12))
    (inbox / "bad.png").write_bytes(b"not a png")
    document = ok_json(harvest("watch", inbox, "--once", "--move-to", done, "--settle", "0", "--json", "-w", ws,
                               cwd=tmp_path))  # fmt: skip
    assert_summary(document, added=2, rejected=1)
    assert (done / "a.png").read_bytes() == png(11) and (done / "cats" / "b.png").read_bytes() == png(12)
    assert sorted(p.name for p in inbox.rglob("*") if p.is_file()) == ["bad.png"]  # refused files stay

    (inbox / "c.png").write_bytes(png(13))
    document = ok_json(harvest("watch", inbox, "--once", "--delete", "--settle", "0", "--json", "-w", ws,
                               cwd=tmp_path))  # fmt: skip
    assert_summary(document, added=1, rejected=1)
    assert not (inbox / "c.png").exists()
    assert len(images(ws)) == 3


def test_user_errors_are_one_line(ws: Path, tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    for args in (
        ("watch", tmp_path / "missing", "--once"),
        ("watch", tmp_path / "inbox", "--once", "--move-to", tmp_path / "done", "--delete"),
        ("watch", tmp_path / "inbox", "--once", "--move-to", tmp_path / "inbox"),
        ("watch", tmp_path / "inbox", "--once", "--stuck-after", "-1"),
        ("watch", tmp_path / "inbox", "--once", "--rescan-every", "0"),
    ):
        result = harvest(*args, "-w", ws, cwd=tmp_path)
        assert result.code != 0
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --- continuous, with real writers ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["events", "poll"])
def test_slow_writer_is_taken_only_when_complete(ws: Path, tmp_path: Path, mode: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = png(20, 420, 320)  # about 400 kB, written in 8 pieces over about 2.4 s: longer than the settle time
    extra = ("--poll",) if mode == "poll" else ()
    with watching(ws, inbox, *extra) as watcher:
        slow_write(inbox / "slow.png", data, pieces=8, gap=0.3)
        watcher.wait_for("added")
        document = watcher.stop()
    assert_summary(document, added=1, rejected=0, failed=0)
    assert set(images(ws)) == {sha(data)}  # the whole file, never a prefix of it
    assert document["event_source"]["mode"] == ("polling" if mode == "poll" else "events")


def test_part_file_renamed_into_place_and_deleted_before_settling(ws: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with watching(ws, inbox, "--labels-from-folders", "--label", "top") as watcher:
        slow_write(inbox / ".shot.png.part", png(30), pieces=3, gap=0.2)  # a browser's download, then renamed
        os.rename(inbox / ".shot.png.part", inbox / "shot.png")
        with open(inbox / "gone.png", "wb") as handle:  # deleted before it settles
            handle.write(png(31)[:100])
            handle.flush()
            time.sleep(0.2)
        os.unlink(inbox / "gone.png")
        (inbox / "later").mkdir()
        (inbox / "later" / "after.png").write_bytes(png(32))
        watcher.wait_for("added", 2)
        time.sleep(1.5)  # a rescan passes: nothing more is taken
        document = watcher.stop()
    assert_summary(document, added=2, duplicates=0, rejected=0, failed=0)
    assert document["problems"] == []
    stored = images(ws)
    assert set(stored) == {sha(png(30)), sha(png(32))}
    uris = {Path(row["sources"][0]["uri"]).name: row["label"] for row in stored.values()}
    assert uris == {"shot.png": "top", "after.png": "later"}


def test_burst_of_200_files(ws: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    blobs = [png(1000 + n, 24, 20) for n in range(200)]
    with watching(ws, inbox, "--workers", "2") as watcher:
        for n, data in enumerate(blobs):
            (inbox / f"shot-{n:03d}.png").write_bytes(data)
        watcher.wait_for("added", 200, timeout=90)
        document = watcher.stop(signal.SIGTERM)
    assert_summary(document, added=200, duplicates=0, rejected=0, failed=0)
    stored = images(ws)
    assert set(stored) == {sha(data) for data in blobs}
    assert all(len(row["sources"]) == 1 for row in stored.values())  # each file taken exactly once


def test_sigint_mid_burst_finishes_the_file_in_hand_and_exits_0(ws: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    blobs = [png(3000 + n, 160, 120) for n in range(200)]
    with watching(ws, inbox, "--workers", "2") as watcher:
        for n, data in enumerate(blobs):
            (inbox / f"shot-{n:03d}.png").write_bytes(data)
            if n == 120:
                watcher.wait_for("added", 10, timeout=60)
                os.killpg(watcher.process.pid, signal.SIGINT)  # Ctrl-C: the whole group, workers too; files keep coming
        stdout, _ = watcher.process.communicate(timeout=60)
    assert watcher.process.returncode == 0, "\n".join(watcher.lines)
    document = json.loads(stdout)
    assert document["stopped"] == "signal"
    stored = images(ws)
    assert 10 <= document["added"] == len(stored) < 200
    assert document["failed"] == 0 and document["rejected"] == 0, document["problems"][:3]
    assert set(stored) <= {sha(data) for data in blobs}  # every stored image is a whole file
    report = ok_json(curate("fsck", "--json", "-w", ws, cwd=tmp_path))
    assert report["ok"] is True and report["orphans"] == [], report


def test_a_file_still_written_after_stuck_after_is_reported_not_ingested(ws: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    data = png(40, 300, 200)
    with watching(ws, inbox, "--poll", "--stuck-after", "1.5") as watcher:  # polling: no close event shortcut
        slow_write(inbox / "endless.png", data, pieces=10, gap=0.3)  # 3 s of writing, pauses under the settle time
        watcher.wait_for("stuck")
        watcher.wait_for("added")  # once it does settle, the complete file is taken
        document = watcher.stop()
    assert [p["reason"] for p in document["problems"]] == ["still being written after 1.5 s; not ingested"]
    assert set(images(ws)) == {sha(data)}


def test_a_dead_event_source_is_restarted(ws: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = WatchSource(WatchOptions(inbox, settle=0.3, rescan=60.0))
    with open_workspace(ws) as workspace:
        engine = Engine(workspace, workers=1)
        with engine.record(source.kind, source.config()) as run:
            thread = threading.Thread(target=source.collect, args=(engine, run))
            thread.start()
            try:
                deadline = time.monotonic() + 20
                while source.feed is None or not source.feed.alive():
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                source.feed.observer.stop()  # the observer thread ends, as when inotify fails under it
                source.feed.observer.join(5)
                time.sleep(0.5)
                (inbox / "after.png").write_bytes(png(50))  # the next rescan is a minute away: events must work
                while run.summary.added < 1:
                    assert time.monotonic() < deadline, run.summary
                    time.sleep(0.05)
            finally:
                run.stop.set()
                thread.join(20)
    assert source.feed is not None and source.feed.restarts >= 1
    assert run.report["event_source"]["restarts"] >= 1
    assert set(images(ws)) == {sha(png(50))}


# --- acceptance -----------------------------------------------------------------------------------------


def test_twelve_screenshots_arriving_every_way_are_ingested_once_each(ws: Path, tmp_path: Path) -> None:
    inbox, staging = tmp_path / "Screenshots", tmp_path / "staging"
    (inbox / "bugs").mkdir(parents=True)
    staging.mkdir()
    shots = {n: png(500 + n, 200 + 8 * n, 150) for n in range(12)}
    expected: dict[str, str] = {}  # sha -> label

    def arrive(n: int, relative: str, label: str) -> Path:
        expected[sha(shots[n])] = label
        return inbox / relative

    arrive(0, "at-start.png", "screens").write_bytes(shots[0])  # 1-2: present before the watcher starts
    arrive(1, "bugs/at-start.png", "bugs").write_bytes(shots[1])
    with watching(ws, inbox, "--labels-from-folders", "--label", "screens") as watcher:
        writers = [  # 3-4: written progressively, over longer than the settle time
            threading.Thread(target=slow_write, args=(arrive(2, "slow.png", "screens"), shots[2]),
                             kwargs={"pieces": 6, "gap": 0.25}),
            threading.Thread(target=slow_write, args=(arrive(3, "bugs/slow.png", "bugs"), shots[3]),
                             kwargs={"pieces": 6, "gap": 0.25}),
        ]  # fmt: skip
        for writer in writers:
            writer.start()
        for n, name in ((4, ".Screenshot 4.png.part"), (5, "shot5.png.tmp")):  # 5-6: temporary name, then renamed
            final = arrive(n, f"renamed-{n}.png", "screens")
            slow_write(inbox / name, shots[n], pieces=3, gap=0.1)
            os.rename(inbox / name, final)
        (staging / "release").mkdir()  # 7-8: a folder moved in whole (no event names its files)
        for n in (6, 7):
            (staging / "release" / f"r{n}.png").write_bytes(shots[n])
            expected[sha(shots[n])] = "release"
        shutil.move(staging / "release", inbox / "release")
        for n in (8, 9, 10, 11):  # 9-12: a burst of plain writes, two of them in a sub-folder
            arrive(n, f"{'bugs/' if n % 2 else ''}burst-{n}.png", "bugs" if n % 2 else "screens").write_bytes(shots[n])
        for writer in writers:
            writer.join()
        watcher.wait_for("added", 12, timeout=60)
        time.sleep(1.5)  # a rescan passes: nothing is taken twice
        document = watcher.stop()
    assert_summary(document, added=12, duplicates=0, rejected=0, failed=0)
    assert document["problems"] == []
    stored = images(ws)
    assert {digest: row["label"] for digest, row in stored.items()} == expected  # each once, with its label
    assert all(len(row["sources"]) == 1 for row in stored.values())
    report = ok_json(curate("fsck", "--json", "-w", ws, cwd=tmp_path))
    assert report["ok"] is True and report["missing"] == [] and report["corrupt"] == [], report
