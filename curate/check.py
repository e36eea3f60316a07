"""`curate check`: measure every image's quality and store flags in the catalog for later filtering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from curate.quality import (
    MEASURE_SIDE,
    QualityMetrics,
    Thresholds,
    dataset_flags,
    image_flags,
    measure,
    summarize,
)
from storage.catalog.images import whole_images
from storage.catalog.quality import replace_flags, save_metrics, stored_metrics
from storage.images import open_image
from storage.parallel import map_objects
from storage.stores import ObjectStore
from storage.workspace import Workspace

__all__ = ["CheckReport", "check_quality", "measure_object"]


@dataclass
class CheckReport:
    checked: int = 0
    measured: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "measured": self.measured,
            "counts": self.counts,
            "flagged": [{"sha256": sha, "flags": flags} for sha, flags in sorted(self.flagged.items())],
        }


def measure_object(store: ObjectStore, row: tuple[str, str, int, int]) -> QualityMetrics:
    """Decode one stored image (storage.images.open_image: upright, JPEG in draft mode near the measuring size)
    and measure it."""
    _sha, key, width, height = row
    return measure(open_image(store.get(key), size=MEASURE_SIDE), width, height)


def check_quality(
    workspace: Workspace,
    *,
    thresholds: Thresholds = Thresholds(),
    remeasure: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[], None] | None = None,
) -> CheckReport:
    """Measure images not measured yet (all with `remeasure`), then recompute every flag.

    Metrics are kept in `image_quality`, so a rerun only decodes new images; flags are recomputed for
    all images because the dataset-level ones (greyscale among colour, odd sizes) depend on the whole set.
    """
    catalog = workspace.catalog
    with catalog.read() as conn:
        rows = whole_images(conn)
        stored = stored_metrics(conn)
    todo = [row for row in rows if remeasure or row[0] not in stored]
    if on_start:
        on_start(len(todo))
    report = CheckReport(checked=len(rows), measured=len(todo))
    unreadable: dict[str, float] = {}
    fresh: dict[str, QualityMetrics] = {}
    options = workspace.settings.store.backend_options()
    for row, result in map_objects(workspace.store, options, measure_object, todo):
        if isinstance(result, BaseException):
            unreadable[row[0]] = 1.0
        else:
            fresh[row[0]] = result
        if on_progress:
            on_progress()
    metrics = {sha: QualityMetrics(**data) for sha, data in stored.items() if sha not in fresh}
    metrics.update(fresh)
    live = {row[0] for row in rows}
    metrics = {sha: m for sha, m in metrics.items() if sha in live}
    per_set = dataset_flags(metrics, thresholds)
    flags: dict[str, dict[str, float]] = {}
    for sha, m in metrics.items():
        combined = image_flags(m, thresholds) | per_set[sha]
        if combined:
            flags[sha] = combined
    for sha in unreadable:
        flags[sha] = {"unreadable": 1.0}
    with catalog.write() as conn:
        save_metrics(conn, {sha: m.to_json() for sha, m in fresh.items()})
        replace_flags(conn, flags)
    report.flagged = flags
    report.counts = summarize(flags.values())
    return report
