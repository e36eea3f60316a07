"""Leak-free, stratified, deterministic train/val/test assignment (pure).

Near-duplicate groups are the unit of assignment, so no group ever straddles two splits. Within each label
(a group counts under its majority label) groups are placed largest first, each into the split furthest
below its target share; ties are broken by a seeded hash, so the result depends only on the input and seed.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["SPLITS", "SplitItem", "assign_splits", "parse_ratios"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitItem:
    sha256: str
    label: str
    group: str  # items with the same group always land in the same split


def parse_ratios(text: str) -> tuple[float, float, float]:
    """'80/10/10' (percentages) or '0.8,0.1,0.1' (fractions) → (train, val, test) fractions.

    The three must add up to 100 or to 1: a typo such as 80/10/20 is refused, not silently rescaled."""
    parts = [p for p in text.replace("/", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"split ratios must be numbers, like 80/10/10, not {text!r}") from None
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0 or values[0] == 0:
        raise ValueError(f"split ratios need three non-negative numbers with train > 0, not {text!r}")
    total = sum(values)
    if not any(abs(total - whole) <= 1e-6 * whole for whole in (100.0, 1.0)):
        raise ValueError(f"split ratios must add up to 100 (or to 1), not {total:g}: {text!r}")
    return (values[0] / total, values[1] / total, values[2] / total)


def _tiebreak(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(
    items: Iterable[SplitItem], ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, str]:
    """sha256 → 'train' | 'val' | 'test'."""
    groups: dict[str, list[SplitItem]] = defaultdict(list)
    for item in items:
        groups[item.group].append(item)
    by_label: dict[str, list[tuple[str, list[SplitItem]]]] = defaultdict(list)
    for group_key, members in groups.items():
        counts = Counter(member.label for member in members)
        majority = min(counts, key=lambda label: (-counts[label], label))
        by_label[majority].append((group_key, members))
    result: dict[str, str] = {}
    for label in sorted(by_label):
        entries = sorted(by_label[label], key=lambda e: (-len(e[1]), _tiebreak(seed, e[0])))
        total = sum(len(members) for _, members in entries)
        filled = [0, 0, 0]
        for _group_key, members in entries:
            deficits = [ratios[i] * total - filled[i] for i in range(3)]
            # the split furthest below its target; splits with a zero ratio never receive anything
            choice = max((i for i in range(3) if ratios[i] > 0), key=lambda i: (deficits[i], -i))
            filled[choice] += len(members)
            for member in members:
                result[member.sha256] = SPLITS[choice]
    return result
