"""Per-class recall with Wilson intervals on the demo's fixed evaluation split, from `train predict --json`.

The snapshot's own test split changes when the targeted collection adds images, so before and after are
compared on one held-out set instead. Wilson here, not train's: harvest does not import train.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ClassRecall", "per_class_recall", "wilson"]


def wilson(successes: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (sound at 0 and n, unlike the normal one)."""
    if total <= 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    # Rounding can put an end a hair on the wrong side of p at 0 or n (1 - 1e-16 for 20 of 20).
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


@dataclass(frozen=True)
class ClassRecall:
    label: str
    correct: int
    total: int

    @property
    def recall(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.total)

    def as_json(self) -> dict[str, Any]:
        low, high = self.interval
        return {"recall": round(self.recall, 4), "ci": [round(low, 4), round(high, 4)], "n": self.total}


def per_class_recall(
    predictions: Sequence[Mapping[str, Any]], root: Path, labels: Sequence[str]
) -> dict[str, ClassRecall]:
    """Recall per label; an image's true label is its folder under `root` (`root/<label>/<n>.png`)."""
    correct = dict.fromkeys(labels, 0)
    total = dict.fromkeys(labels, 0)
    for item in predictions:
        truth = Path(item["image"]).resolve().relative_to(root.resolve()).parts[0]
        total[truth] = total.get(truth, 0) + 1
        correct[truth] = correct.get(truth, 0) + (item["label"] == truth)
    return {label: ClassRecall(label, correct[label], total[label]) for label in total}
