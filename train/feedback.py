"""Collection targets from an evaluation: which labels need more images, how many, and why. Pure.

The rule (documented in docs/train.md, tested in tests/train/test_feedback.py):

- `n` is a label's image count in the snapshot, `median` the median of those counts over all labels.
- gap = max(0, median − n): an underrepresented label should at least reach the typical label's size.
- A label is *weak* when its test F1 is below the bar = clamp(median F1 − 0.10, 0.50, 0.90): clearly worse
  than its peers, or bad outright. A weak label wants (1 − F1) × max(n, median) images: the worse it is
  recognised, the larger the share of a typical class it still needs.
- want = max(gap, weak share), rounded up to a multiple of 10; labels with want 0 get no target.
- Urgency = want / median (the number of "typical classes" of images still missing), so the most
  underrepresented or worst-recognised label comes first; ties go to the lower F1, then the label name.
- A label without test images is judged on its count alone (its F1 is unknown, not zero).

Reasons read like "50 snapshot images vs median 1000; recall 0.40; f1 0.45; confused with coat": the counts are the
snapshot's images per label (`snapshot_count`), the recall and F1 come from its test images (`test_support`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from train.metrics import ClassMetrics

__all__ = ["F1_BAR_RANGE", "Target", "collection_targets", "confused_with", "f1_bar"]

F1_BAR_RANGE = (0.5, 0.9)
F1_MARGIN = 0.10
ROUND_TO = 10


@dataclass(frozen=True)
class Target:
    label: str
    want: int
    reason: str
    urgency: float
    snapshot_count: int  # the label's images in the snapshot (not its test images)
    recall: float | None
    f1: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "want": self.want,
            "reason": self.reason,
            "urgency": round(self.urgency, 4),
            "snapshot_count": self.snapshot_count,
        }


def f1_bar(f1s: Sequence[float]) -> float:
    """F1 below this is weak: 0.10 under the median F1, but never above 0.90 nor below 0.50."""
    if not f1s:
        return F1_BAR_RANGE[0]
    return min(F1_BAR_RANGE[1], max(F1_BAR_RANGE[0], float(np.median(f1s)) - F1_MARGIN))


def confused_with(matrix: np.ndarray, labels: Sequence[str], index: int) -> tuple[str, int] | None:
    """The label most often mixed up with labels[index], counting both directions of the confusion."""
    if matrix.size == 0:
        return None
    both = matrix[index, :] + matrix[:, index]
    both[index] = 0
    best = int(np.argmax(both))
    return (labels[best], int(both[best])) if both[best] > 0 else None


def _round_up(value: float) -> int:
    return int(math.ceil(value / ROUND_TO) * ROUND_TO) if value > 0 else 0


def collection_targets(
    labels: Sequence[str],
    counts: Mapping[str, int],
    metrics: Mapping[str, ClassMetrics],
    matrix: np.ndarray,
) -> list[Target]:
    """Targets for the labels that need more images, most urgent first (see the module docstring for the rule)."""
    if not labels:
        return []
    sizes = [int(counts.get(label, 0)) for label in labels]
    median = float(np.median(sizes))
    evaluated = [m.f1 for m in (metrics.get(label) for label in labels) if m is not None and m.f1 is not None]
    bar = f1_bar(evaluated)
    targets = []
    for index, label in enumerate(labels):
        n = int(counts.get(label, 0))
        gap = max(0.0, median - n)
        known = metrics.get(label)
        tested = known is not None and known.support > 0 and known.f1 is not None and known.recall is not None
        recall = known.recall if known is not None and tested else None
        f1 = known.f1 if known is not None and tested else None
        weak_share = 0.0
        if f1 is not None and f1 < bar:
            weak_share = (1 - f1) * max(n, median)
        want = _round_up(max(gap, weak_share))
        if want <= 0:
            continue
        parts = [f"{n} snapshot images vs median {median:g}"]
        if recall is not None and f1 is not None:
            parts += [f"recall {recall:.2f}", f"f1 {f1:.2f}"]
            partner = confused_with(matrix, labels, index)
            if partner:
                parts.append(f"confused with {partner[0]}")
        else:
            parts.append("no test images")
        targets.append(
            Target(
                label=label,
                want=want,
                reason="; ".join(parts),
                urgency=want / median if median else float(want),
                snapshot_count=n,
                recall=recall,
                f1=f1,
            )
        )
    targets.sort(key=lambda t: (-t.urgency, t.f1 if t.f1 is not None else 1.0, t.label))
    return targets
