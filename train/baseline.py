"""The linear baseline every run trains next to its model: multinomial logistic regression on the pixels.

On a few hundred images a CNN can learn nothing and still report a number; a logistic regression on the raw
pixels of the same split is the floor any model has to clear (on 200 25 px crops of two classes it scored
96% where the old defaults' CNN scored 50%). It is plain torch (no new dependency), fits in a second or two
with full-batch L-BFGS, and picks its L2 strength on the validation split, as the model picks its epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from storage.intervals import wilson_interval
from train.evaluate import Predictions

__all__ = ["MAX_SIDE", "PENALTIES", "BaselineResult", "fit_linear", "linear_baseline", "pixel_features"]

MAX_SIDE = 32  # larger inputs are area-averaged to 32 px: 12k features at most, and no worse a floor
PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # L2 strengths tried; the validation split chooses
MAX_ITER = 200


@dataclass
class BaselineResult:
    accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    val_accuracy: float | None
    penalty: float
    features: int
    seconds: float
    predictions: Predictions  # on the test split
    val_predictions: Predictions | None = None
    weight: torch.Tensor | None = None  # (features, classes), on standardised features
    bias: torch.Tensor | None = None
    feature_mean: torch.Tensor | None = None  # the training split's per-feature mean and std (standardisation)
    feature_std: torch.Tensor | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": "linear (logistic regression on pixels)",
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
            "accuracy_ci": None if self.accuracy_ci is None else [round(v, 4) for v in self.accuracy_ci],
            "val_accuracy": None if self.val_accuracy is None else round(self.val_accuracy, 4),
            "l2": self.penalty,
            "features": self.features,
            "seconds": round(self.seconds, 2),
        }


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, S, S) → float (N, features) in [0, 1], area-averaged to at most MAX_SIDE px."""
    x = images.float() / 255
    if x.shape[-1] > MAX_SIDE or x.shape[-2] > MAX_SIDE:
        x = F.adaptive_avg_pool2d(x, (min(MAX_SIDE, x.shape[-2]), min(MAX_SIDE, x.shape[-1])))
    return x.flatten(1)


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, penalty: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias minimising mean cross-entropy + penalty/2 · |W|² (full-batch L-BFGS, deterministic)."""
    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=MAX_ITER, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _predictions(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> Predictions:
    logits = x @ weight + bias
    losses = F.cross_entropy(logits, y, reduction="none")
    probs = torch.softmax(logits, dim=1)
    return Predictions(y.numpy().astype(np.int64), probs.numpy().astype(np.float32), losses.numpy())


def linear_baseline(splits: dict[str, tuple[torch.Tensor, torch.Tensor]], classes: int) -> BaselineResult:
    """Fit on "train", choose the L2 strength on "val" (accuracy, then loss), evaluate on "test".

    `splits` maps split names to (uint8 images, class indices); features are standardised with the
    training split's per-pixel mean and std.
    """
    started = time.perf_counter()
    features = {name: (pixel_features(images), targets) for name, (images, targets) in splits.items()}
    train_x, train_y = features["train"]
    mean = train_x.mean(0)
    std = train_x.std(0).clamp(min=1e-2) if len(train_x) > 1 else torch.ones_like(mean)
    scaled = {name: ((x - mean) / std, y) for name, (x, y) in features.items()}
    val = scaled.get("val")
    candidates = PENALTIES if val is not None and len(val[1]) else (1e-2,)
    best: tuple[tuple[float, float], float, tuple[torch.Tensor, torch.Tensor], Predictions | None] | None = None
    for penalty in candidates:
        fitted = fit_linear(scaled["train"][0], train_y, classes, penalty)
        result = None
        if val is not None and len(val[1]):
            result = _predictions(*val, *fitted)
            score = (result.accuracy, -result.loss)
        else:
            score = (0.0, 0.0)
        if best is None or score > best[0]:
            best = (score, penalty, fitted, result)
    assert best is not None
    score, penalty, fitted, val_predictions = best
    test = _predictions(*scaled["test"], *fitted)
    total = len(test.targets)
    correct = int((test.predicted == test.targets).sum()) if total else 0
    return BaselineResult(
        accuracy=correct / total if total else None,
        accuracy_ci=wilson_interval(correct, total),
        val_accuracy=score[0] if val is not None and len(val[1]) else None,
        penalty=penalty,
        features=int(train_x.shape[1]),
        seconds=time.perf_counter() - started,
        predictions=test,
        val_predictions=val_predictions,
        weight=fitted[0],
        bias=fitted[1],
        feature_mean=mean,
        feature_std=std,
    )
