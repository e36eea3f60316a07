"""train.audit.confident follows cleanlab's find_label_issues (prune_by_noise_rate): the same flagged images, in
the same order, on random problems (cleanlab is a dev dependency, for this check and bench/label_errors.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from train.audit.confident import find_label_issues


def _problem(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n, k = int(rng.integers(50, 400)), int(rng.integers(2, 8))
    truth = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * rng.uniform(0.5, 3)
    logits[np.arange(n), truth] += rng.uniform(0, 3)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = truth.copy()
    flip = rng.random(n) < 0.1
    given[flip] = rng.integers(0, k, int(flip.sum()))
    return given, probs


@pytest.mark.parametrize("rank_by", ["self_confidence", "normalized_margin"])
def test_same_issues_as_cleanlab(rank_by: str) -> None:
    cleanlab = pytest.importorskip("cleanlab.filter")
    rng = np.random.default_rng(0)
    same = 0
    for _ in range(30):
        given, probs = _problem(rng)
        ours = find_label_issues(given, probs, rank_by=rank_by)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = cleanlab.find_label_issues(given, probs, return_indices_ranked_by=rank_by, n_jobs=1)
        same += int(np.array_equal(ours.indices, theirs))
        assert len(set(ours.indices) ^ set(theirs)) <= 2  # at most a rounding tie apart
    assert same >= 28


def test_a_flipped_label_is_flagged_with_its_true_class() -> None:
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(3), 40)
    probs = np.full((120, 3), 0.05)
    probs[np.arange(120), truth] = 0.9
    probs += rng.uniform(0, 0.02, probs.shape)
    probs[[5, 50]] = [[0.97, 0.02, 0.01], [0.01, 0.98, 0.01]]  # surely their true class (above its threshold)
    probs /= probs.sum(axis=1, keepdims=True)
    given = truth.copy()
    given[[5, 50]] = [2, 0]
    issues = find_label_issues(given, probs)
    assert sorted(issues.indices.tolist()) == [5, 50]
    assert dict(zip(issues.indices.tolist(), issues.suggested.tolist(), strict=True)) == {5: 0, 50: 1}
    assert np.all((issues.scores > 0.8) & (issues.scores <= 1))
    assert issues.noise.shape == (3, 3) and np.allclose(issues.noise.sum(axis=0), 1)
