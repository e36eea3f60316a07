"""The linear baseline folded into the delivered model, and how much weight it gets (`--blend`).

Every run fits a logistic regression on the pixels next to its model (train.baseline). On a few hundred
images the two are often about as good as each other and wrong on different images, so the average of
their probabilities beats both; on large sets the CNN is far better and the baseline only drags it down.
So after training the baseline is folded into the model (models.PixelLinear: one Linear layer on the
model's input, exactly the baseline's logits) with a weight chosen here, and `train predict`, the exports
and the test evaluation all use the blend. The report keeps the parts apart: the model alone, the
baseline alone and the blend, each on the same test split, so a blend never hides a model that learned
nothing.

The weight (`--blend auto`): a prior, moved only when the validation split shows, beyond its noise, that
another candidate of BLEND_CANDIDATES is better: lower per-image log-loss by more than two standard errors
of the paired difference, and no fewer images right. The prior (default_blend) is SMALL_SET_BLEND while the
network learns from at most SMALL_SET_PER_CLASS training images per class, 0 above. Why a prior: a 20-60
image validation split rarely shows a difference, and choosing on its raw figures picked 0 or 0.5 by chance
(the earlier rule, lowest log-loss among weights within one image of the best accuracy: 89.6 % mean test
accuracy on the five tuning sets of `bench/train_small.py`, 2 seeds, 100-200 training images per class;
0.25 fixed: 89.8 %, 0.5 fixed: 89.8 %, 0 fixed: 89.3 %). Why 0 on larger sets: at 800 per class
(`bench/train_fashion.py`) 0.25 cost 0.7 points of test accuracy, and 1,000 validation images showed only
1.7 standard errors of it (label smoothing keeps the network's own log-loss high). A baseline that only adds
noise (uniform or confidently wrong probabilities) raises every image's log-loss, which the test sees at once.
A number (`--blend 0.5`) fixes the weight; `--blend 0` delivers the model alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from train.baseline import MAX_SIDE, BaselineResult
from train.models import PixelLinear

__all__ = [
    "BLEND_CANDIDATES",
    "SMALL_SET_BLEND",
    "SMALL_SET_PER_CLASS",
    "choose_blend",
    "default_blend",
    "fold_baseline",
    "mix",
]

BLEND_CANDIDATES = (0.0, 0.25, 0.5)
SMALL_SET_BLEND = 0.25
# Between the largest small set measured (200 per class, where 0.25 helped) and the 10,000-image Fashion-MNIST
# subset (800 per class, where it cost 0.7 points): nothing between them was measured.
SMALL_SET_PER_CLASS = 400
EVIDENCE_STANDARD_ERRORS = 2.0


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


def _why(prior: float) -> str:
    return "a small training set" if prior else f"over {SMALL_SET_PER_CLASS} training images per class"


def _image_log_losses(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(probs[np.arange(len(targets)), targets], 1e-12, None))


def _evidence(prior_losses: np.ndarray, losses: np.ndarray) -> float:
    """How many standard errors lower `losses` are than `prior_losses`, paired per image (inf: always lower)."""
    gain = prior_losses - losses
    mean = float(gain.mean())
    spread = float(gain.std(ddof=1)) / math.sqrt(len(gain)) if len(gain) > 1 else 0.0
    if spread == 0.0:
        return math.inf if mean > 0 else 0.0
    return mean / spread


def default_blend(train_images: int, classes: int) -> float:
    """The prior weight of the baseline for a network that learns from `train_images` in `classes` classes."""
    return SMALL_SET_BLEND if train_images <= SMALL_SET_PER_CLASS * max(1, classes) else 0.0


def choose_blend(
    model_probs: np.ndarray, baseline_probs: np.ndarray, targets: np.ndarray, prior: float = SMALL_SET_BLEND
) -> tuple[float, dict[str, Any]]:
    """(weight of the baseline, the validation figures it was chosen on); `prior`: default_blend's weight."""
    if not len(targets):
        return prior, {"reason": f"no validation images: the prior weight {prior:g} ({_why(prior)})"}
    losses = {b: _image_log_losses(mix(model_probs, baseline_probs, b), targets) for b in BLEND_CANDIDATES}
    correct = {b: int((mix(model_probs, baseline_probs, b).argmax(1) == targets).sum()) for b in BLEND_CANDIDATES}
    evidence = {b: _evidence(losses[prior], losses[b]) for b in BLEND_CANDIDATES if b != prior}
    rows = [
        {
            "blend": b,
            "val_correct": correct[b],
            "val_log_loss": round(float(losses[b].mean()), 4),
            "evidence": None if b == prior else round(min(evidence[b], 99.0), 2),
        }
        for b in BLEND_CANDIDATES
    ]
    better = [b for b, e in evidence.items() if e > EVIDENCE_STANDARD_ERRORS and correct[b] >= correct[prior]]
    if not better:
        reason = (
            f"the prior weight {prior:g} ({_why(prior)}): no other weight is better on the {len(targets)} validation "
            f"images by more than {EVIDENCE_STANDARD_ERRORS:g} standard errors of log-loss"
        )
        return prior, {"reason": reason, "candidates": rows}
    chosen = min(better, key=lambda b: float(losses[b].mean()))
    reason = (
        f"validation log-loss {losses[chosen].mean():.3f} against {losses[prior].mean():.3f} at the prior "
        f"{prior:g} ({min(evidence[chosen], 99.0):.1f} standard errors lower, {correct[chosen]}/{len(targets)} "
        "right)"
    )
    return float(chosen), {"reason": reason, "candidates": rows}
