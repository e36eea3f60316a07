"""Classification metrics from labels and predictions. Pure numpy: easy to check against hand-computed values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from storage.intervals import wilson_interval

__all__ = [
    "ClassMetrics",
    "accuracy",
    "confusion_matrix",
    "most_confused",
    "normalize_rows",
    "per_class_metrics",
]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class ClassMetrics:
    """Per-class figures on the evaluated (test) split. None means "not measured": a class without test
    images has no recall (and no F1); a class nothing was predicted as, and with no test images, no precision."""

    precision: float | None
    recall: float | None
    f1: float | None
    support: int  # true instances of the class in the evaluated split (test images), as in scikit-learn
    recall_ci: tuple[float, float] | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "recall_ci": None if self.recall_ci is None else [round(v, 4) for v in self.recall_ci],
            "f1": _round(self.f1),
            "support": self.support,
            "test_support": self.support,
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
    """Precision, recall (with its Wilson interval), F1 and support per class.

    A class with test images but no predictions has precision 0 (scikit-learn's zero_division=0: it was
    tested and never found). A class without test images has recall and F1 None (not measured, not zero).
    """
    result = {}
    for k, label in enumerate(labels):
        tp = float(matrix[k, k])
        predicted = float(matrix[:, k].sum())
        actual = int(matrix[k, :].sum())
        if actual == 0:
            precision = 0.0 if predicted else None  # predicted but never there: every such prediction wrong
            result[label] = ClassMetrics(precision, None, None, 0)
            continue
        precision, recall = _ratio(tp, predicted), tp / actual
        f1 = _ratio(2 * precision * recall, precision + recall)
        result[label] = ClassMetrics(precision, recall, f1, actual, wilson_interval(int(tp), actual))
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
