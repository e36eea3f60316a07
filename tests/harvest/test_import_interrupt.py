"""Ctrl-C during `harvest import` prints one line and exits 130, never a worker's traceback (issue 15 item 6).

A real `harvest import` process, in its own process group as a terminal runs it, gets SIGINT for the whole
group (what Ctrl-C sends) at seeded moments early in the run: while the CLI starts, while its worker pool
starts (a worker whose parent is gone must leave quietly, not die on `BrokenPipeError` at its ready message),
and while it imports; and, for each of the three commands, while the CLI itself is still loading its modules."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.processes import alive

HARVEST = Path(sys.executable).with_name("harvest")
IMAGES = 400
TRIALS = 8


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(15)
    for index in range(IMAGES):
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{index:04d}.png")
    return folder


def harvest(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key != "GLEANER_WORKSPACE"}
    return subprocess.Popen(  # type: ignore[call-overload]
        [str(HARVEST), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs
    )


def children(pid: int) -> list[str]:
    """The process's child processes (the fork server, the pool's workers): once there are any, the command is
    past loading and its pool is starting."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return []


def test_ctrl_c_during_import_prints_no_traceback(photos: Path, tmp_path: Path) -> None:
    rng = random.Random(15)
    delays = sorted(rng.uniform(0.0, 0.6) for _ in range(TRIALS))
    for trial, delay in enumerate(delays):
        ws = tmp_path / f"ws{trial}"
        init = harvest("init", str(ws))
        assert init.wait(60) == 0, init.communicate()
        process = harvest(
            "import", str(photos), "--label", "noise", "--workers", "4", "-w", str(ws), start_new_session=True
        )
        deadline = time.monotonic() + 60
        while not children(process.pid) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)  # after the pool began to start: at once, while it starts, or while it imports
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole process group
        try:
            _out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        time.sleep(0.3)  # a worker that outlived its parent has had its chance to write
        assert "Traceback" not in err, f"trial {trial} (SIGINT after {delay:.2f} s):\n{err}"
        # -SIGINT: the signal came as the interpreter was exiting, after the work was committed and reported
        # (Python has put the default action back by then); a shell shows that as 130 too.
        assert process.returncode in (0, 130, -signal.SIGINT), (trial, delay, process.returncode, err)
        if process.returncode == 130:
            assert "interrupted" in err, err


def loading(pid: int) -> bool:
    """The command is loading its modules: the interpreter is up and has mapped a C extension of the CLI's
    dependencies (PIL, SQLAlchemy, pydantic-core, torch...), but has not yet started its first child."""
    with contextlib.suppress(OSError):
        maps = Path(f"/proc/{pid}/maps").read_text()
        return ".cpython-" in maps and "site-packages" in maps
    return False


@pytest.mark.parametrize("tool", ["harvest", "curate", "train"])
def test_ctrl_c_while_the_cli_loads_exits_130_without_a_traceback(tool: str) -> None:
    command = [str(HARVEST.with_name(tool)), "--version"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not loading(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert process.poll() is None, "the command ended before it was seen loading"
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert process.returncode == 130, (process.returncode, err)


def test_sigterm_during_import_ends_like_ctrl_c(photos: Path, tmp_path: Path) -> None:
    """SIGTERM to the command alone (what Kubernetes and `kill PID` send): the batch in hand is committed, the run
    is recorded as interrupted, exit 130 with the one line, and no worker outlives it."""
    ws = tmp_path / "ws"
    assert harvest("init", str(ws)).wait(60) == 0
    process = harvest("import", str(photos), "--label", "noise", "--workers", "2", "-w", str(ws))
    deadline = time.monotonic() + 60
    while not (ws / "store" / "images").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the first objects are being written: the run is under way
    workers = children(process.pid)
    assert process.poll() is None and workers, "the import ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert process.returncode == 130 and "interrupted" in err, (process.returncode, err)
    time.sleep(1.0)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists() and alive(pid)], "a worker outlived it"
    with sqlite3.connect(ws / "catalog.db") as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
