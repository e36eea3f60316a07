"""Figures drawn with matplotlib, in families of near-identical but different figures: the tuning set for plots
on white backgrounds (the held-out one is scikit-image's gallery, which none of these come from).

Every family shares a layout and differs in what is plotted: another noise draw of a signal, a parameter
nudged, one bar changed, a threshold moved, one segment recoloured, and each is drawn at two figure sizes
(4:3 and 8:3, the same plot stretched). Members differ in what a person can see; pixel noise alone (two noisy
photographs of one field) is not made a difference here. Those are the pairs that hide distinct images when a dedupe
looks only at the layout; no family member is a copy of another.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

__all__ = ["plot_families"]

Draw = Callable[[Figure, np.random.Generator, int], None]


def _lines(fig: Figure, rng: np.random.Generator, member: int) -> None:
    ax = fig.subplots()
    x = np.linspace(0, 10, 400)
    ax.plot(x, np.sin(x) + rng.normal(0, 0.15, x.size), lw=1)
    ax.set_title("signal with noise")


def _frequency(fig: Figure, rng: np.random.Generator, member: int) -> None:
    ax = fig.subplots()
    x = np.linspace(0, 10, 400)
    ax.plot(x, np.sin((1 + 0.08 * member) * x), lw=2)
    ax.set_xlabel("t")
    ax.grid(True)


def _scatter(fig: Figure, rng: np.random.Generator, member: int) -> None:
    ax = fig.subplots()
    points = rng.normal(size=(120, 2))
    ax.scatter(points[:, 0], points[:, 1], s=12, c="tab:blue")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)


def _bars(fig: Figure, rng: np.random.Generator, member: int) -> None:
    ax = fig.subplots()
    heights = np.array([3, 5, 2, 6, 4, 7, 3], dtype=float)
    heights[member % len(heights)] += 2.5
    ax.bar(range(len(heights)), heights, color="tab:orange")
    ax.set_ylim(0, 10)


def _histogram(fig: Figure, rng: np.random.Generator, member: int) -> None:
    ax = fig.subplots()
    ax.hist(rng.normal(size=300), bins=30, color="tab:green")
    ax.set_xlim(-4, 4)


def _field(seed: int, side: int = 96) -> np.ndarray:
    """A smooth random image (sum of blobs), the same for a seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    image = np.zeros((side, side))
    for _ in range(12):
        cy, cx, r = rng.uniform(0, side), rng.uniform(0, side), rng.uniform(6, 20)
        image += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
    return image


def _thresholds(fig: Figure, rng: np.random.Generator, member: int) -> None:
    image = _field(seed=7)
    axes = fig.subplots(1, 3)
    for ax, level in zip(axes, (0.3, 0.5 + 0.05 * member, 0.9), strict=True):
        ax.imshow(image > level, cmap="gray")
        ax.set_axis_off()


def _segments(fig: Figure, rng: np.random.Generator, member: int) -> None:
    labels = (_field(seed=11) * 3).astype(int) % 6
    colours = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75]])
    colours[member % 6] = colours[(member + 3) % 6] // 2 + 60 + 12 * (member // 6)
    axes = fig.subplots(1, 2)
    axes[0].imshow(_field(seed=11), cmap="gray")
    axes[1].imshow(colours[labels].astype(np.uint8))
    for ax in axes:
        ax.set_axis_off()


def _contours(fig: Figure, rng: np.random.Generator, member: int) -> None:
    ax = fig.subplots()
    y, x = np.mgrid[-3:3:200j, -3:3:200j]
    ax.contour(x, y, np.exp(-(x**2) - (y - 0.3 * member) ** 2) + 0.5 * np.exp(-((x - 1) ** 2) - y**2), levels=8)
    ax.set_aspect("equal")


FAMILIES: dict[str, Draw] = {
    "lines": _lines,
    "frequency": _frequency,
    "scatter": _scatter,
    "bars": _bars,
    "histogram": _histogram,
    "thresholds": _thresholds,
    "segments": _segments,
    "contours": _contours,
}
SIZES = ((6.4, 4.8), (8.0, 3.0))


def _render(draw: Draw, seed: int, member: int, size: tuple[float, float]) -> Image.Image:
    fig = plt.figure(figsize=size, dpi=80, facecolor="white")
    try:
        draw(fig, np.random.default_rng(seed), member)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", facecolor="white")
    finally:
        plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return image.convert("RGB")


def plot_families(members: int = 6) -> Iterator[tuple[str, Image.Image]]:
    """(stem, figure) for `members` members of every family at both sizes: all different figures."""
    for name, draw in FAMILIES.items():
        for s, size in enumerate(SIZES):
            for k in range(members):
                member = s * members + k  # what is drawn differs between the sizes too
                yield f"{name}_{s}_{k}", _render(draw, seed=1000 * s + k, member=member, size=size)
