"""The linear baseline folded into the delivered model, and how much weight it gets (`--blend`).

Every run fits a logistic regression on the pixels next to its model (train.baseline). On a few hundred
images the two are often about as good as each other and wrong on different images, so the average of
their probabilities beats both; on large sets the CNN is far better and the baseline only drags it down.
So after training the baseline is folded into the model (models.PixelLinear: one Linear layer on the
model's input, exactly the baseline's logits) with a weight chosen here, and `train predict`, the exports
and the test evaluation all use the blend. The report keeps the parts apart: the model alone, the
baseline alone and the blend, each on the same test split, so a blend never hides a model that learned
nothing.

The weight (`--blend auto`): the candidate in BLEND_CANDIDATES with the lowest validation log-loss, among
those whose validation accuracy is within one image of the best. Log-loss uses every image's probability,
not only its argmax, so it separates candidates on a 20-image validation split where accuracy ties.
A number (`--blend 0.5`) fixes it; `--blend 0` delivers the model alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from train.baseline import MAX_SIDE, BaselineResult
from train.models import PixelLinear

__all__ = ["BLEND_CANDIDATES", "choose_blend", "fold_baseline", "mix"]

BLEND_CANDIDATES = (0.0, 0.25, 0.5)


def _pool_matrix(size: int, out: int) -> torch.Tensor:
    """(out, size): the adaptive average pooling of one axis as a matrix (torch's bins: floor/ceil)."""
    matrix = torch.zeros(out, size, dtype=torch.float64)
    for i in range(out):
        start, end = (i * size) // out, math.ceil((i + 1) * size / out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def fold_baseline(result: BaselineResult, channels: int, height: int, width: int) -> PixelLinear:
    """The fitted baseline as one Linear layer on (N, channels, height, width) inputs in [0, 1]."""
    assert result.weight is not None and result.bias is not None
    assert result.feature_mean is not None and result.feature_std is not None
    out_h, out_w = min(MAX_SIDE, height), min(MAX_SIDE, width)
    weight = result.weight.double() / result.feature_std.double().unsqueeze(1)  # (features, classes)
    classes = weight.shape[1]
    bias = result.bias.double() - (result.feature_mean.double() / result.feature_std.double()) @ result.weight.double()
    per_pixel = weight.view(channels, out_h, out_w, classes)
    folded = torch.einsum("ia,jb,cijk->cabk", _pool_matrix(height, out_h), _pool_matrix(width, out_w), per_pixel)
    module = PixelLinear(channels * height * width, classes)
    with torch.no_grad():
        module.linear.weight.copy_(folded.reshape(-1, classes).T.float())
        module.linear.bias.copy_(bias.float())
    return module


def mix(model_probs: np.ndarray, baseline_probs: np.ndarray, blend: float) -> np.ndarray:
    return (1 - blend) * model_probs + blend * baseline_probs


def _log_loss(probs: np.ndarray, targets: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-12, None)).mean())


def choose_blend(
    model_probs: np.ndarray, baseline_probs: np.ndarray, targets: np.ndarray
) -> tuple[float, dict[str, Any]]:
    """(weight of the baseline, the validation figures it was chosen on)."""
    if not len(targets):
        return 0.5, {"reason": "no validation images: equal weights"}
    rows = []
    for blend in BLEND_CANDIDATES:
        probs = mix(model_probs, baseline_probs, blend)
        correct = int((probs.argmax(1) == targets).sum())
        rows.append({"blend": blend, "val_correct": correct, "val_log_loss": round(_log_loss(probs, targets), 4)})
    best_correct = max(r["val_correct"] for r in rows)
    eligible = [r for r in rows if r["val_correct"] >= best_correct - 1]
    chosen = min(eligible, key=lambda r: (r["val_log_loss"], -r["blend"]))
    reason = (
        f"lowest validation log-loss ({chosen['val_log_loss']:.3f}) among weights within one image of the best "
        f"validation accuracy ({best_correct}/{len(targets)})"
    )
    return float(chosen["blend"]), {"reason": reason, "candidates": rows}
