"""Classification metrics from labels and predictions. Pure numpy: easy to check against hand-computed values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ClassMetrics", "accuracy", "confusion_matrix", "most_confused", "normalize_rows", "per_class_metrics"]


@dataclass(frozen=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int  # true instances of the class in the evaluated split

    def to_json(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "support": self.support,
        }


Labels = Sequence[int] | np.ndarray


def confusion_matrix(targets: Labels, predicted: Labels, classes: int) -> np.ndarray:
    """matrix[true, predicted] = count (rows: the true class, as in scikit-learn)."""
    t = np.asarray(targets, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError("targets and predictions differ in length")
    return np.bincount(t * classes + p, minlength=classes * classes).reshape(classes, classes)


def accuracy(matrix: np.ndarray) -> float:
    total = int(matrix.sum())
    return float(np.trace(matrix)) / total if total else 0.0


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def per_class_metrics(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, ClassMetrics]:
    """Precision, recall, F1 and support per class; 0 where nothing to divide by (scikit-learn's zero_division=0)."""
    result = {}
    for k, label in enumerate(labels):
        tp = float(matrix[k, k])
        predicted = float(matrix[:, k].sum())
        actual = float(matrix[k, :].sum())
        precision, recall = _ratio(tp, predicted), _ratio(tp, actual)
        f1 = _ratio(2 * precision * recall, precision + recall)
        result[label] = ClassMetrics(precision, recall, f1, int(actual))
    return result


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total: the share of a true class that went to each prediction (empty rows stay 0)."""
    totals = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=np.float64), where=totals > 0)


def most_confused(matrix: np.ndarray, labels: Sequence[str], top: int = 10) -> list[dict[str, object]]:
    """Off-diagonal cells, largest first (ties by label order): which true class is taken for which."""
    cells = [
        (int(matrix[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j and matrix[i, j] > 0
    ]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [{"true": labels[i], "predicted": labels[j], "count": count} for count, i, j in cells[:top]]
