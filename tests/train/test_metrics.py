"""Metrics against values worked out by hand (and scikit-learn as a second opinion)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from storage.intervals import wilson_interval
from train.metrics import (
    accuracy,
    confusion_matrix,
    most_confused,
    normalize_rows,
    per_class_metrics,
)

LABELS = ["cat", "dog", "fox"]
# true:      cat cat cat cat dog dog dog fox fox fox
# predicted: cat cat dog fox dog dog cat fox fox dog
TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]


def test_confusion_matrix_rows_are_true_labels() -> None:
    matrix = confusion_matrix(TRUE, PRED, 3)
    assert matrix.tolist() == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    assert accuracy(matrix) == pytest.approx(6 / 10)


def test_per_class_by_hand() -> None:
    metrics = per_class_metrics(confusion_matrix(TRUE, PRED, 3), LABELS)
    # cat: tp 2, predicted 3 (2 + dog's 1), actual 4 → P 2/3, R 1/2, F1 2PR/(P+R) = 4/7
    assert metrics["cat"].precision == pytest.approx(2 / 3)
    assert metrics["cat"].recall == pytest.approx(1 / 2)
    assert metrics["cat"].f1 == pytest.approx(4 / 7)
    assert metrics["cat"].support == 4
    # dog: tp 2, predicted 4, actual 3 → P 1/2, R 2/3, F1 4/7
    assert (metrics["dog"].precision, metrics["dog"].recall) == (pytest.approx(0.5), pytest.approx(2 / 3))
    # fox: tp 2, predicted 3, actual 3 → P = R = F1 = 2/3
    assert metrics["fox"].f1 == pytest.approx(2 / 3)
    precision, recall, f1, support = precision_recall_fscore_support(TRUE, PRED, zero_division=0)
    for k, label in enumerate(LABELS):
        got = metrics[label]
        assert (got.precision, got.recall, got.f1, got.support) == pytest.approx(
            (precision[k], recall[k], f1[k], support[k])
        )


def test_a_class_without_test_images_is_not_measured_rather_than_zero() -> None:
    metrics = per_class_metrics(confusion_matrix([0, 0], [0, 0], 2), ["a", "b"])
    assert metrics["b"].to_json() == {
        "precision": None, "recall": None, "recall_ci": None, "f1": None, "support": 0, "test_support": 0,
    }  # fmt: skip
    # predicted as "b" but never there: those predictions are measured, and all wrong
    assert per_class_metrics(confusion_matrix([0, 0], [0, 1], 2), ["a", "b"])["b"].precision == 0.0
    # tested and never found: recall 0 is a measurement
    found = per_class_metrics(confusion_matrix([0, 1], [0, 0], 2), ["a", "b"])["b"]
    assert (found.precision, found.recall, found.f1, found.support) == (0.0, 0.0, 0.0, 1)
    empty = confusion_matrix([], [], 2)
    assert empty.tolist() == [[0, 0], [0, 0]] and accuracy(empty) == 0.0


def test_wilson_interval_against_worked_values() -> None:
    # Wilson (1927) / Newcombe (1998) table: 81 of 263 → 0.2553-0.3662; 0 of 10 → 0-0.2775; 10 of 10 → 0.7225-1
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(18, 20)  # type: ignore[misc]
    assert low < 0.9 < high and high < 1.0  # "90% on 20 images" is roughly 70-97%
    metrics = per_class_metrics(confusion_matrix(TRUE, PRED, 3), LABELS)
    assert metrics["cat"].recall_ci == pytest.approx(wilson_interval(2, 4))


def test_wilson_intervals_always_hold_the_proportion() -> None:
    """Rounding once put 10 of 10 at an upper end of 1 - 1e-16, and the demo's recall chart refused the
    negative whisker; the demo's per-class recall uses the same interval."""
    from harvest.demo.recall import ClassRecall

    for total in range(1, 200):
        for successes in range(total + 1):
            p = successes / total
            interval = wilson_interval(successes, total)
            assert interval is not None and interval[0] <= p <= interval[1], (successes, total)
            assert ClassRecall("x", successes, total).interval == interval


def test_normalized_rows_and_most_confused() -> None:
    matrix = confusion_matrix(TRUE, PRED, 3)
    normalized = normalize_rows(matrix)
    assert normalized[0].tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert np.allclose(normalized.sum(axis=1), 1)
    assert normalize_rows(np.zeros((2, 2), dtype=int)).tolist() == [[0, 0], [0, 0]]
    pairs = most_confused(matrix, LABELS, top=2)
    assert pairs == [
        {"true": "cat", "predicted": "dog", "count": 1},
        {"true": "cat", "predicted": "fox", "count": 1},
    ]
    assert len(most_confused(matrix, LABELS)) == 4  # every non-zero off-diagonal cell
