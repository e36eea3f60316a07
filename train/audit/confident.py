"""Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) on out-of-fold probabilities: which given labels
are probably wrong, what they probably are, and the estimated noise. Pure numpy.

It follows cleanlab 2.x's `find_label_issues(filter_by="prune_by_noise_rate")` step by step (cleanlab/count.py
and cleanlab/filter.py), so the benchmark can compare the two on the same probabilities:

1. per-class thresholds t_j: the mean probability of class j over the examples *given* label j (their mean
   self-confidence), clipped below at 2e-6;
2. the confident joint C[i][j]: examples given label i whose probability of class j reaches t_j (when several
   classes reach their threshold, the most probable one counts); its diagonal is at least 1; calibrated so that
   row i sums to the number of examples given label i and the whole to N (rounded, row totals kept);
3. prune by noise rate: for every off-diagonal cell (given i, true j) the C[i][j] examples given i with the
   largest margin p_j − p_i are flagged (after keeping at least one example per class, as cleanlab does);
4. an example whose most probable class is its given label is never flagged;
5. ranked by label quality: self-confidence p_given (default), or the normalised margin
   (p_given − max_{k≠given} p_k + 1) / 2. A suspect's score is 1 − quality: in [0, 1], higher is more likely wrong.

The suggested label is the most probable class. The noise matrix P(given = i | true = j) is the calibrated joint
normalised by column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "RANKINGS",
    "LabelIssues",
    "confident_joint",
    "confident_thresholds",
    "find_label_issues",
    "label_quality",
    "noise_matrix",
]

RANKINGS = ("self_confidence", "normalized_margin")
THRESHOLD_FLOOR = 2e-6  # cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND
EPSILON = 1e-6  # cleanlab's FLOATING_POINT_COMPARISON
MISSING_CLASS = 2.0  # a class nobody was given: a threshold no probability reaches


@dataclass
class LabelIssues:
    """What confident learning found: flagged indices most likely first, with suggestions and scores."""

    indices: np.ndarray  # int64, ranked: most likely wrong first
    suggested: np.ndarray  # int64 class per flagged index
    scores: np.ndarray  # float64 in [0, 1] per flagged index (1 − label quality)
    thresholds: np.ndarray  # (K,)
    joint: np.ndarray  # (K, K) calibrated confident joint, rows: given label, columns: true label
    noise: np.ndarray  # (K, K) P(given = i | true = j)


def confident_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    classes = probs.shape[1]
    values = [probs[labels == k, k].mean() if np.any(labels == k) else MISSING_CLASS for k in range(classes)]
    return np.clip(np.asarray(values, dtype=np.float64), THRESHOLD_FLOOR, None)


def _round_keeping_sum(values: np.ndarray) -> np.ndarray:
    """Round to integers whose sum is the rounded sum (cleanlab's round_preserving_sum)."""
    ints = values.round()
    target = round(float(values.sum()))
    while abs(ints.sum() - target) > EPSILON:
        step = 1 if target > ints.sum() else -1
        changes = min(int(abs(target - ints.sum())), len(values))
        order = np.argsort(values - ints)[::-step][:changes]  # up: largest remainders first; down: smallest
        ints[order] += step
    return ints.astype(np.int64)


def _round_rows(matrix: np.ndarray) -> np.ndarray:
    return np.stack([_round_keeping_sum(row) for row in matrix]) if len(matrix) else matrix.astype(np.int64)


def confident_joint(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """The calibrated confident joint (K, K): rows the given label, columns the (confidently) likely one."""
    classes = probs.shape[1]
    thresholds = confident_thresholds(labels, probs) if thresholds is None else thresholds
    above = probs >= thresholds - EPSILON
    count = above.sum(axis=1)
    guess = np.where(count > 1, probs.argmax(axis=1), above.argmax(axis=1))
    confident = count > 0
    joint = np.zeros((classes, classes), dtype=np.float64)
    np.add.at(joint, (labels[confident], guess[confident]), 1)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    given = np.bincount(labels, minlength=classes).astype(np.float64)
    joint = (joint.T / np.clip(joint.sum(axis=1), 1e-100, None) * given).T
    joint = joint / max(joint.sum(), 1e-100) * given.sum()
    return _round_rows(joint)


def noise_matrix(joint: np.ndarray) -> np.ndarray:
    """P(given = i | true = j): the joint normalised by column."""
    totals = joint.sum(axis=0, keepdims=True).astype(np.float64)
    return np.divide(joint, totals, out=np.zeros(joint.shape, dtype=np.float64), where=totals > 0)


def _keep_per_class(prune: np.ndarray, keep: int) -> np.ndarray:
    """cleanlab's _keep_at_least_n_per_class (frac_noise 1): raise each diagonal entry to at least `keep`, taking
    the difference evenly from the column's non-zero noise entries. `prune` is the transposed joint."""
    diagonal = prune.diagonal().astype(np.float64)
    raised = np.maximum(diagonal, keep)
    nonzero = np.maximum(np.count_nonzero(prune, axis=0) - 1.0, 1.0)
    result = prune - (raised - diagonal) / nonzero
    result[result < 0] = 0
    np.fill_diagonal(result, raised)
    return result.astype(np.int64)  # truncated, as cleanlab's _reduce_prune_counts does


def label_quality(labels: np.ndarray, probs: np.ndarray, method: str = "self_confidence") -> np.ndarray:
    """Per example, 0-1: low means the given label is probably wrong."""
    own = probs[np.arange(len(labels)), labels]
    if method == "self_confidence":
        return own.astype(np.float64)
    if method == "normalized_margin":
        others = probs.copy()
        others[np.arange(len(labels)), labels] = -np.inf
        return ((own - others.max(axis=1) + 1) / 2).astype(np.float64)
    raise ValueError(f"rank by one of {', '.join(RANKINGS)}, not {method!r}")


def find_label_issues(
    labels: np.ndarray, probs: np.ndarray, *, rank_by: str = "self_confidence", min_per_class: int = 1
) -> LabelIssues:
    """Flag the examples whose given label (int class per row of `probs`) is probably wrong; see the module."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    classes = probs.shape[1]
    thresholds = confident_thresholds(labels, probs)
    joint = confident_joint(labels, probs, thresholds)
    prune = _keep_per_class(joint.T, min_per_class)  # prune[j][i]: given i, truly j
    flagged = np.zeros(len(labels), dtype=bool)
    for given in range(classes):
        members = np.flatnonzero(labels == given)
        if len(members) <= min_per_class:
            continue
        for true in range(classes):
            count = int(prune[true, given])
            if true == given or count <= 0:
                continue
            margin = probs[members, true] - probs[members, given]
            flagged[members[np.argsort(-margin, kind="stable")[:count]]] = True
    boosted = probs.copy()
    boosted[np.arange(len(labels)), labels] += EPSILON
    flagged &= boosted.argmax(axis=1) != labels
    quality = label_quality(labels, probs, rank_by)
    index = np.flatnonzero(flagged)
    index = index[np.argsort(quality[index], kind="stable")]
    return LabelIssues(index, probs[index].argmax(axis=1), 1.0 - quality[index], thresholds, joint, noise_matrix(joint))
