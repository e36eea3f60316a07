"""Per-class recall with Wilson intervals on the demo's fixed evaluation split, from `train predict --json`.

The snapshot's own test split changes when the targeted collection adds images, so before and after are
compared on one held-out set instead. The interval is storage.intervals', shared with train's reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.intervals import wilson_interval

__all__ = ["ClassRecall", "per_class_recall"]


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
        return wilson_interval(self.correct, self.total) or (0.0, 1.0)

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
