"""`python -m harvest.idx`: help with descriptions and defaults, the training split by default, and one line for a
missing or broken file (issue 15 item 14)."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harvest.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR


def idx(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "harvest.idx", *map(str, args)]
    env = {**os.environ, "COLUMNS": "200"}  # help lines wide enough that no default is broken over two
    return subprocess.run(command, capture_output=True, text=True, timeout=240, check=False, env=env)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_help_describes_every_option_and_its_default() -> None:
    shown = idx("--help")
    assert shown.returncode == 0, shown.stderr
    assert "usage: python -m harvest.idx" in shown.stdout
    for text in (
        "--split",
        "training split",
        "(default: train)",
        "--per-class",
        "(default: all)",
        str(FASHION_MNIST_DIR),
    ):
        assert text in shown.stdout, text


def test_the_training_split_is_the_default(tmp_path: Path) -> None:
    source = tmp_path / "idx"
    source.mkdir()
    pixels = np.arange(4 * 28 * 28).reshape(4, 28, 28) % 256
    write_idx(source / "train-images-idx3-ubyte.gz", pixels)
    write_idx(source / "train-labels-idx1-ubyte.gz", np.array([0, 1, 1, 9]))
    done = idx(tmp_path / "out", "--source", source)
    assert done.returncode == 0, done.stderr
    assert "wrote 4 images" in done.stdout
    names = FASHION_MNIST_CLASSES
    assert sorted(p.parent.name for p in (tmp_path / "out").rglob("*.png")) == sorted(
        [names[0], names[1], names[1], names[9]]
    )


def test_missing_and_broken_files_are_one_line(tmp_path: Path) -> None:
    missing = idx(tmp_path / "out", "--source", tmp_path)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().startswith("error:") and "train-images-idx3-ubyte.gz not found" in missing.stderr
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not an idx file"))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"nor this"))
    broken = idx(tmp_path / "out", "--source", tmp_path)
    assert broken.returncode != 0 and "Traceback" not in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1 and "not an IDX file" in broken.stderr
    assert idx(tmp_path / "out", "--per-class", "0").returncode == 2


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_the_real_test_split(tmp_path: Path) -> None:
    done = idx(tmp_path / "out", "--split", "t10k", "--per-class", "2")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == set(FASHION_MNIST_CLASSES)
    assert len(list((tmp_path / "out").rglob("*.png"))) == 20
