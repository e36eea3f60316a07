"""The run dir: config.json, labels.json, metrics, checkpoints/, report files. Enough to use a model later
(`train predict`, `train export`, `train report`) without the workspace it was trained from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from storage.errors import GleanerError
from train.checkpoint import BEST, LAST, load_checkpoint
from train.config import TrainConfig
from train.models import Net, PixelLinear, build_model

__all__ = [
    "BASELINE",
    "BLENDED",
    "RUN_CONFIG",
    "FoldEnsemble",
    "attach_baseline",
    "build_net",
    "load_net",
    "read_meta",
    "save_baseline",
    "write_meta",
]

RUN_CONFIG = "config.json"
BASELINE = "baseline.json"  # the linear baseline's figures on the run's split (train.baseline)
BLENDED = "baseline.pt"  # in checkpoints/: the baseline folded into the model, and its weight (train.blend)


def write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    """config.json (the training config plus dataset facts) and labels.json (class index → label)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_CONFIG).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    (run_dir / "labels.json").write_text(json.dumps(meta["labels"], indent=2), encoding="utf-8")


def read_meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise GleanerError(f"{run_dir} is not a training run folder (no {RUN_CONFIG})")
    return json.loads(path.read_text(encoding="utf-8"))


def build_net(config: TrainConfig, classes: int, channels: int, mean: list[float], std: list[float]) -> Net:
    body, body_channels = build_model(config.model, classes, channels, config.depth, config.members)
    return Net(body, channels, body_channels, mean, std, flip_tta=bool(config.tta))


class FoldEnsemble(nn.Module):
    """The K models of a `--folds K` cross-validation as one model: the log of their mean softmax probabilities
    (so `softmax` of its output is the average; argmax the averaged vote). Same input as each fold's Net."""

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(net(x), dim=1) for net in self.nets]).mean(dim=0)
        return torch.log(probs.clamp_min(1e-12))


def _fold_dirs(run_dir: Path) -> list[Path]:
    found = [p for p in (run_dir / "folds").glob("fold-*") if (p / RUN_CONFIG).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def load_net(run_dir: Path, which: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """The run's model in eval mode, from its best checkpoint (or the last one when there is no best).

    A `--folds K` folder (no checkpoints of its own) gives the ensemble of its K fold models (FoldEnsemble).
    """
    meta = read_meta(run_dir)
    if meta.get("folds") and not (run_dir / "checkpoints").is_dir():
        folds = _fold_dirs(run_dir)
        if not folds:
            raise GleanerError(f"{run_dir} is a cross-validation folder without fold models (folds/fold-N)")
        ensemble = FoldEnsemble([load_net(fold, which)[0] for fold in folds])
        ensemble.eval()
        return ensemble, meta
    config = TrainConfig.from_json(meta["train"])
    net = build_net(config, len(meta["labels"]), meta["channels"], meta["mean"], meta["std"])
    checkpoints = run_dir / "checkpoints"
    path = checkpoints / (BEST if which == "best" else LAST)
    if not path.is_file():
        path = checkpoints / LAST
    net.load_state_dict(load_checkpoint(path)["model"] if path.name == BEST else _last_model(path))
    attach_baseline(net, checkpoints)
    net.eval()
    return net, meta


def save_baseline(net: Net, checkpoints: Path) -> None:
    """checkpoints/baseline.pt: the folded linear baseline and its blend weight (train.blend)."""
    if net.baseline is not None:
        payload = {"model": net.baseline.state_dict(), "blend": net.blend}
        torch.save(payload, checkpoints / BLENDED)


def attach_baseline(net: Net, checkpoints: Path) -> None:
    """Put the run's folded baseline into `net` with its weight, when the run has one (runs since issue 11)."""
    path = checkpoints / BLENDED
    if not path.is_file():
        return
    payload = torch.load(path, map_location="cpu", weights_only=True)
    weight = payload["model"]["linear.weight"]
    module = PixelLinear(weight.shape[1], weight.shape[0])
    module.load_state_dict(payload["model"])
    net.baseline, net.blend = module, float(payload["blend"])


def _last_model(path: Path) -> dict[str, Any]:
    return load_checkpoint(path, full=True)["model"]
