"""The report's pictures: confusion matrix (counts and row-normalised) and learning curves, as PNG files.

matplotlib's Agg backend renders without a display; axes are always labelled and cells annotated so a
picture is readable on its own, out of the HTML page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_confusion", "plot_curves", "save_thumbnail"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _matrix_panel(ax: Any, values: np.ndarray, labels: Sequence[str], title: str, fmt: str) -> None:
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(float(values.max()), 1e-9))
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title)
    threshold = float(values.max()) / 2
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                value = values[i, j]
                if value:
                    colour = "white" if value > threshold else "black"
                    ax.text(j, i, format(value, fmt), ha="center", va="center", color=colour, fontsize=7)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def plot_confusion(matrix: np.ndarray, normalized: np.ndarray, labels: Sequence[str], path: Path) -> None:
    plt = _pyplot()
    side = max(5.0, 0.45 * len(labels) + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    _matrix_panel(axes[0], matrix, labels, "Confusion matrix (counts)", "d")
    _matrix_panel(axes[1], normalized, labels, "Normalised by true label (recall on the diagonal)", ".2f")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: Sequence[dict[str, Any]], path: Path, best_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch for train and validation; the best epoch is marked."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((loss_ax, "loss", "Loss"), (acc_ax, "acc", "Accuracy")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], marker="o", label="train")
        val = [row[f"val_{key}"] for row in history]
        if any(v is not None for v in val):
            ax.plot(epochs, [np.nan if v is None else v for v in val], marker="o", label="validation")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(title.lower())
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_thumbnail(image: np.ndarray, path: Path, side: int = 112) -> None:
    """A (C, H, W) uint8 image as a PNG about `side` pixels wide; tiny images are enlarged without blurring."""
    from PIL import Image

    array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    picture = Image.fromarray(np.ascontiguousarray(array))
    scale = max(1, side // max(picture.size))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
