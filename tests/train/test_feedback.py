"""The targets rule: underrepresented and weak labels, in order of urgency, with readable reasons."""

from __future__ import annotations

import numpy as np
import pytest

from train.feedback import collection_targets, confused_with, f1_bar
from train.metrics import ClassMetrics, confusion_matrix, per_class_metrics

LABELS = ["bag", "coat", "shirt", "trouser"]


def metrics(**f1s: float) -> dict[str, ClassMetrics]:
    return {label: ClassMetrics(f1, f1, f1, 100) for label, f1 in f1s.items()}


def test_underrepresented_label_comes_first() -> None:
    counts = {"bag": 1000, "coat": 1000, "shirt": 50, "trouser": 1000}
    matrix = np.diag([100, 80, 5, 100])
    matrix[2, 1] = 10  # shirts taken for coats
    found = collection_targets(LABELS, counts, per_class_metrics(matrix, LABELS), matrix)
    assert found[0].label == "shirt"
    assert found[0].want == 950  # up to the median: 1000 - 50
    assert found[0].reason.startswith("50 snapshot images vs median 1000; recall 0.33; f1 0.50")
    assert found[0].reason.endswith("confused with coat")


def test_weak_label_wants_its_share() -> None:
    counts = {label: 1000 for label in LABELS}
    found = collection_targets(LABELS, counts, metrics(bag=0.95, coat=0.9, shirt=0.6, trouser=0.97), np.zeros((4, 4)))
    # median F1 0.925 → bar 0.825: only shirt is weak; it wants (1 - 0.6) x 1000 = 400
    assert [(t.label, t.want) for t in found] == [("shirt", 400)]
    assert found[0].urgency == pytest.approx(0.4)


def test_order_by_urgency_then_f1() -> None:
    counts = {"bag": 400, "coat": 1000, "shirt": 1000, "trouser": 1000}
    found = collection_targets(LABELS, counts, metrics(bag=0.95, coat=0.3, shirt=0.95, trouser=0.95), np.zeros((4, 4)))
    # bag: gap 600 → urgency 0.6; coat: weak, 0.7 x 1000 = 700 → 0.7 (more urgent)
    assert [(t.label, t.want) for t in found] == [("coat", 700), ("bag", 600)]


def test_nothing_to_collect_when_balanced_and_good() -> None:
    counts = {label: 500 for label in LABELS}
    assert collection_targets(LABELS, counts, metrics(bag=0.99, coat=0.98, shirt=0.97, trouser=0.99), np.eye(4)) == []


def test_label_without_test_images_is_judged_on_count_only() -> None:
    counts = {"bag": 10, "coat": 100, "shirt": 100, "trouser": 100}
    scores = metrics(coat=0.99, shirt=0.99, trouser=0.99)
    scores["bag"] = ClassMetrics(0.0, 0.0, 0.0, 0)
    found = collection_targets(LABELS, counts, scores, np.zeros((4, 4)))
    assert [(t.label, t.want) for t in found] == [("bag", 90)]
    assert "no test images" in found[0].reason and found[0].f1 is None


def test_bar_is_clamped_and_confusion_counts_both_ways() -> None:
    assert f1_bar([0.99, 0.99]) == pytest.approx(0.89)
    assert f1_bar([0.2, 0.3]) == 0.5
    assert f1_bar([]) == 0.5
    matrix = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 0, 0, 2], 3)
    assert confused_with(matrix, ["a", "b", "c"], 0) == ("c", 2)
    assert confused_with(np.eye(3, dtype=int), ["a", "b", "c"], 1) is None
