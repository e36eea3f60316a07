"""A tiny real dataset for the trainer: scikit-learn's handwritten digits (30 per class) as 16x16 PNGs.

Imported once per session through the real `import_paths` and frozen in a snapshot, so each test only pays
for the training it does. Near-duplicate flagging is off in this workspace: 8x8 digits are near-duplicates
of each other by pHash, which would leave too few to train on.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
import typer
from PIL import Image
from typer.testing import CliRunner

from curate.snapshot import create_snapshot
from harvest.importer import import_paths
from storage.workspace import Workspace, init_workspace, open_workspace
from train.cli import app as train_app
from train.config import TrainConfig

PER_CLASS = 30
SNAPSHOT = "digits"
TINY = ["--img-size", "16", "--batch-size", "32", "--device", "cpu"]


def write_digits(out: Path, per_class: int = PER_CLASS, classes: int = 10) -> dict[str, int]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts: dict[str, int] = {}
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        label = f"digit{target}"
        if target >= classes or counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        array = (pixels * (255 / 16)).astype(np.uint8)
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array, "L").resize((16, 16), Image.Resampling.NEAREST).save(folder / f"{index:04d}.png")
    return counts


def make_workspace(root: Path, images: Path) -> Workspace:
    init_workspace(root)
    config = root / "gleaner.toml"
    document = tomllib.loads(config.read_text())
    document.setdefault("ingest", {})["near_duplicates"] = False
    config.write_text(tomli_w.dumps(document))
    workspace = open_workspace(root)
    import_paths(workspace, [images], labels_from_folders=True, workers=1)
    create_snapshot(workspace, name=SNAPSHOT, threshold=0)
    return workspace


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    write_digits(out)
    return out


@pytest.fixture(scope="session")
def digits_ws(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> Iterator[Workspace]:
    workspace = make_workspace(tmp_path_factory.mktemp("digits-ws") / "ws", digits_dir)
    yield workspace
    workspace.close()


@pytest.fixture
def tiny_config() -> TrainConfig:
    return TrainConfig(epochs=2, img_size=16, batch_size=32, lr=3e-3, device="cpu")


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one thread is faster (no spinning) and kinder to neighbours."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def invoke(app: typer.Typer, *args: str | Path) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def finished_run(digits_ws: Workspace, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One 2-epoch run for every test that only reads a finished run (report, predict, export): trained once."""
    out = tmp_path_factory.mktemp("runs") / "run1"
    summary = invoke(
        train_app, "run", "--dataset", SNAPSHOT, "--epochs", "2", "--augment", "flip,zoom", *TINY,
        "--out", out, "--json", "-w", digits_ws.root,
    )  # fmt: skip
    return out, summary
