"""Quality checks: pure measurements of one image, and flags from those measurements.

Measurements are taken on a greyscale copy whose longer side is at most 256 px (JPEGs decode in draft
mode to that size), so a check costs a few milliseconds per image and does not depend on resolution.
Default thresholds were calibrated on the 256 COCO photos in ../shared/data/photos (see README):

| flag | rule (default) | calibration |
| --- | --- | --- |
| `blurry` | variance of the Laplacian < 60 | photos: min 68, median 1,274; blurred (r=4): median 18 |
| `dark` | 90th percentile of brightness < 50 | photos: mean brightness 25-215 |
| `bright` | 10th percentile of brightness > 220 | |
| `low_information` | greyscale histogram entropy < 3.5 bits | photos: min 4.8 bits; a blank image: 0 |
| `odd_aspect_ratio` | longer side / shorter side > 3.0 | cleanvision's odd_aspect_ratio is comparable |
| `too_small` | shorter side < 32 px | ingest refuses < 8 px; a classifier wants more |
| `grayscale` | greyscale in a dataset that is mostly colour (< 50 % greyscale) | |
| `odd_size` | pixel count < median / 10 or > median x 10 (dataset median) | cleanvision's odd_size factor is 10 |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from storage.images import flatten_alpha

__all__ = ["FLAGS", "QualityMetrics", "Thresholds", "dataset_flags", "image_flags", "measure"]

MEASURE_SIDE = 256
FLAGS = (
    "blurry",
    "dark",
    "bright",
    "low_information",
    "odd_aspect_ratio",
    "too_small",
    "grayscale",
    "odd_size",
)


@dataclass(frozen=True)
class Thresholds:
    blurry: float = 60.0
    dark: float = 50.0
    bright: float = 220.0
    low_information: float = 3.5
    odd_aspect_ratio: float = 3.0
    too_small: int = 32
    grayscale_majority: float = 0.5
    odd_size_factor: float = 10.0


@dataclass(frozen=True)
class QualityMetrics:
    width: int
    height: int
    laplacian_var: float
    brightness_p10: float
    brightness_p90: float
    entropy: float
    grayscale: bool

    def to_json(self) -> dict[str, float | int | bool]:
        return asdict(self)


def measure(image: Image.Image, width: int | None = None, height: int | None = None) -> QualityMetrics:
    """Measure one image. `width`/`height` are the original size when `image` was decoded smaller."""
    full_width, full_height = width or image.width, height or image.height
    image = flatten_alpha(image)  # transparency on white, as storage.images.open_image shows it
    rgb_like = image.convert("RGB") if image.mode not in ("L", "RGB") else image
    small = rgb_like.copy()
    small.thumbnail((MEASURE_SIDE, MEASURE_SIDE))
    grey = np.asarray(small.convert("L"), dtype=np.float32)
    return QualityMetrics(
        width=full_width,
        height=full_height,
        laplacian_var=_laplacian_variance(grey),
        brightness_p10=float(np.percentile(grey, 10)),
        brightness_p90=float(np.percentile(grey, 90)),
        entropy=_entropy(grey),
        grayscale=_is_grayscale(small),
    )


def _laplacian_variance(grey: np.ndarray) -> float:
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    return float(lap.var())


def _entropy(grey: np.ndarray) -> float:
    counts = np.bincount(grey.astype(np.uint8).ravel(), minlength=256)
    probabilities = counts[counts > 0] / grey.size
    return float(-(probabilities * np.log2(probabilities)).sum())


def _is_grayscale(image: Image.Image) -> bool:
    if image.mode in ("L", "LA", "1", "I", "I;16", "F"):
        return True
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return float(spread.mean()) < 3.0


def image_flags(metrics: QualityMetrics, thresholds: Thresholds = Thresholds()) -> dict[str, float]:
    """Flags that one image earns on its own: flag → the measured value that tripped it."""
    flags: dict[str, float] = {}
    if metrics.laplacian_var < thresholds.blurry:
        flags["blurry"] = metrics.laplacian_var
    if metrics.brightness_p90 < thresholds.dark:
        flags["dark"] = metrics.brightness_p90
    if metrics.brightness_p10 > thresholds.bright:
        flags["bright"] = metrics.brightness_p10
    if metrics.entropy < thresholds.low_information:
        flags["low_information"] = metrics.entropy
    aspect = max(metrics.width, metrics.height) / max(1, min(metrics.width, metrics.height))
    if aspect > thresholds.odd_aspect_ratio:
        flags["odd_aspect_ratio"] = aspect
    if min(metrics.width, metrics.height) < thresholds.too_small:
        flags["too_small"] = float(min(metrics.width, metrics.height))
    return flags


def dataset_flags(
    metrics: Mapping[str, QualityMetrics], thresholds: Thresholds = Thresholds()
) -> dict[str, dict[str, float]]:
    """Flags that depend on the whole set: greyscale among colour, and sizes far from the median."""
    flags: dict[str, dict[str, float]] = {key: {} for key in metrics}
    if not metrics:
        return flags
    gray_share = sum(m.grayscale for m in metrics.values()) / len(metrics)
    areas = np.array([m.width * m.height for m in metrics.values()], dtype=np.float64)
    median_area = float(np.median(areas))
    factor = thresholds.odd_size_factor
    for key, m in metrics.items():
        if m.grayscale and gray_share < thresholds.grayscale_majority:
            flags[key]["grayscale"] = gray_share
        area = m.width * m.height
        if area < median_area / factor or area > median_area * factor:
            flags[key]["odd_size"] = area / median_area
    return flags


def summarize(all_flags: Iterable[Mapping[str, float]]) -> dict[str, int]:
    counts = dict.fromkeys(FLAGS, 0)
    for flags in all_flags:
        for name in flags:
            counts[name] = counts.get(name, 0) + 1
    return counts
