"""Confidence intervals of proportions, shared by train's reports and harvest's demo (both sit on storage).

On 20 test images "90% accuracy" means anything from 70% to 97%; the normal approximation would claim up to
103% and collapse to a zero-width interval at 0 or 100%. Wilson stays inside [0, 1] and is honest at the
extremes, which is where small sets live.
"""

from __future__ import annotations

import math

__all__ = ["Z95", "wilson_interval"]

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); None when nothing was counted."""
    if total <= 0:
        return None
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # Rounding can put an end a hair on the wrong side of p at 0 or n (1 - 1e-16 for 20 of 20).
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))
