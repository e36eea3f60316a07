"""The engine: a killed run resumes to the same result as an uninterrupted one; early stopping restores the
best weights; checkpoints carry everything `--resume` needs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from storage.errors import GleanerError
from storage.workspace import Workspace
from tests.train.conftest import SNAPSHOT
from train.checkpoint import load_checkpoint
from train.config import TrainConfig
from train.engine import EpochRecord, Trainer
from train.loaders import TensorBatches
from train.models import Net, SmallCNN
from train.report import load_evaluation
from train.run import run_training


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def test_killed_run_resumes_to_the_same_result(digits_ws: Workspace, tmp_path: Path) -> None:
    config = TrainConfig(
        epochs=4, img_size=16, batch_size=32, device="cpu", augment=("flip", "rotate", "noise"), ema=0.9
    )  # weight averaging on: its state must survive the kill too
    killed = tmp_path / "killed"
    partial = run_training(digits_ws, killed, config, dataset=SNAPSHOT, stop_after=2)
    assert partial["status"] == "interrupted" and partial["epochs_done"] == 2
    assert len(metrics_rows(killed)) == 2
    checkpoint = load_checkpoint(killed / "checkpoints" / "last.pt", full=True)
    expected = {"model", "optimizer", "scheduler", "scaler", "epoch", "config", "state", "rng", "average"}
    assert expected <= set(checkpoint)
    assert checkpoint["epoch"] == 2
    with pytest.raises(GleanerError, match="already holds a run"):
        run_training(digits_ws, killed, config, dataset=SNAPSHOT)

    resumed = run_training(digits_ws, killed, TrainConfig(), resume=True)  # the config comes from the run dir
    straight = run_training(digits_ws, tmp_path / "straight", config, dataset=SNAPSHOT)
    assert resumed["status"] == straight["status"] == "done"
    assert metrics_rows(killed) == metrics_rows(tmp_path / "straight")
    assert len(metrics_rows(killed)) == 4
    assert resumed["accuracy"] == straight["accuracy"]
    a, b = load_evaluation(killed), load_evaluation(tmp_path / "straight")
    assert np.array_equal(a.predictions.probs, b.predictions.probs)
    assert resumed["run_id"] == partial["run_id"]  # the same catalog run, finished


class ScriptedTrainer(Trainer):
    """Real checkpoints and early stopping, but epochs that only nudge the weights and report scripted scores."""

    scores = (0.5, 0.99, 0.7, 0.6, 0.9, 0.8, 0.85, 0.99)

    def _epoch(self, epoch: int, on_batch: object) -> EpochRecord:
        with torch.no_grad():
            for param in self.net.parameters():
                param.add_(0.01 * (epoch + 1))
        val = self.scores[epoch]
        return EpochRecord(epoch + 1, 1 - val, val, 1 - val, val, 1e-3, 0.0)


def test_early_stopping_restores_the_best_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Net(SmallCNN(3, 1, depth=1), 1, 1, [0.5], [0.25])
    batches = TensorBatches(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), 2)
    val = TensorBatches(torch.zeros(100, 1, 8, 8, dtype=torch.uint8), torch.zeros(100, dtype=torch.int64), 50)
    config = TrainConfig(epochs=8, patience=2, img_size=8, device="cpu")
    trainer = ScriptedTrainer(net, config, torch.device("cpu"), tmp_path, batches, val)
    snapshots = {}
    original_save_best = trainer._save_best

    def save_best() -> None:
        snapshots[trainer.state.epochs_done] = {k: v.clone() for k, v in net.state_dict().items()}
        original_save_best()

    trainer._save_best = save_best  # type: ignore[method-assign]
    state = trainer.fit()
    # epochs 1-4 (the first half) settle and do not count, though epoch 2 scored 0.99 on a noisy split;
    # epoch 5 is the best, epochs 6 and 7 do not beat it: stopped after 7, epoch 5's weights restored
    assert trainer.settle_epochs == 4
    assert state.stopped_early and state.epochs_done == 7
    assert state.best_epoch == 5
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, snapshots[5][name]), name
    assert [row["epoch"] for row in metrics_rows(tmp_path)] == ["1", "2", "3", "4", "5", "6", "7"]


def test_a_tiny_validation_split_keeps_the_last_epoch(tmp_path: Path) -> None:
    """Under 100 validation images the scores are noise: no best-epoch choice, no early stop, final weights."""
    torch.manual_seed(0)
    net = Net(SmallCNN(3, 1, depth=1), 1, 1, [0.5], [0.25])
    batches = TensorBatches(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), 2)
    config = TrainConfig(epochs=8, patience=2, img_size=8, device="cpu")
    trainer = ScriptedTrainer(net, config, torch.device("cpu"), tmp_path, batches, batches)
    state = trainer.fit()
    assert trainer.settle_epochs == 7 and not state.stopped_early
    assert state.epochs_done == state.best_epoch == 8
