"""The demo's before/after picture: per-class recall with 95% intervals, the scarce class first.

People read a loop paying off faster from two bars than from a table; the table stays the exact record.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harvest.demo.recall import ClassRecall

__all__ = ["plot_recall"]


def _pyplot() -> Any:
    import matplotlib  # a dependency, imported late: the CLI starts without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_recall(before: Mapping[str, ClassRecall], after: Mapping[str, ClassRecall], scarce: str, path: Path) -> Path:
    """Write a PNG of recall before and after the targeted collection (bars) with Wilson intervals (whiskers)."""
    plt = _pyplot()
    labels = sorted(before, key=lambda label: (label != scarce, label))
    fig, ax = plt.subplots(figsize=(7.0, 0.55 * len(labels) + 1.4))
    height = 0.38
    for offset, (name, values, colour) in enumerate(
        (("before", before, "#9aa5b1"), ("after the targets job", after, "#2f6fdf"))
    ):
        rows = [y + (offset - 0.5) * height for y in range(len(labels))]
        recall = [values[label].recall for label in labels]
        low = [values[label].recall - values[label].interval[0] for label in labels]
        high = [values[label].interval[1] - values[label].recall for label in labels]
        ax.barh(rows, recall, height=height, color=colour, label=name, xerr=[low, high], capsize=3)
    ax.set_yticks(range(len(labels)), [f"{label} (scarce)" if label == scarce else label for label in labels])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("recall on the fixed evaluation split (95% Wilson interval)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
