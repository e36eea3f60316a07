"""Suspects from an audit's out-of-fold probabilities: confident learning (train.audit.confident) plus
near-duplicate groups whose members carry different labels. Pure.

A near-duplicate group with two labels holds at least one wrong label whatever the model says; which member is
wrong is decided by the group's pooled evidence: the mean of its members' out-of-fold probabilities, restricted to
the labels the group carries. Every member not given that label is a suspect, scored by the pooled normalised
margin (pooled[suggested] − pooled[given] + 1) / 2. An image found both ways lists both sources and keeps the
higher score.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from storage.catalog.audits import Suspect
from train.audit.confident import LabelIssues, find_label_issues

__all__ = ["CONFIDENT", "CONFLICT", "duplicate_conflicts", "find_suspects"]

CONFIDENT = "confident_learning"
CONFLICT = "near_duplicate_conflict"


def duplicate_conflicts(labels: np.ndarray, groups: Sequence[str], probs: np.ndarray) -> list[tuple[int, int, float]]:
    """(index, suggested class, score) for members of mixed-label groups that the group's evidence outvotes."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    found = []
    for group_members in members.values():
        present = sorted({int(labels[i]) for i in group_members})
        if len(present) < 2:
            continue
        pooled = probs[group_members].mean(axis=0)
        suggested = max(present, key=lambda k: (pooled[k], -k))
        for i in group_members:
            given = int(labels[i])
            if given != suggested:
                found.append((i, suggested, float((pooled[suggested] - pooled[given] + 1) / 2)))
    return found


def find_suspects(
    shas: Sequence[str],
    labels: np.ndarray,
    groups: Sequence[str],
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    rank_by: str = "self_confidence",
) -> tuple[list[Suspect], LabelIssues]:
    """Suspects most likely first (score descending, then sha256), and the confident-learning details."""
    issues = find_label_issues(labels, probs, rank_by=rank_by)
    found: dict[int, Suspect] = {}
    for index, suggested, score in zip(issues.indices, issues.suggested, issues.scores, strict=True):
        i = int(index)
        found[i] = Suspect(shas[i], class_names[int(labels[i])], class_names[int(suggested)], float(score), [CONFIDENT])
    for i, suggested, score in duplicate_conflicts(labels, groups, probs):
        name = class_names[suggested]
        before = found.get(i)
        if before is None:
            found[i] = Suspect(shas[i], class_names[int(labels[i])], name, score, [CONFLICT])
        else:
            best = max(before.score, score)
            chosen = before.suggested if before.score >= score else name
            found[i] = Suspect(shas[i], before.label, chosen, best, [*before.sources, CONFLICT])
    ranked = sorted(found.values(), key=lambda s: (-s.score, s.sha256))
    return ranked, issues
