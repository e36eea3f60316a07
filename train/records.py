"""What a training run writes to the catalog: its status, per-image predictions, and the collection targets.

The feedback to collection goes through the catalog's `targets` table (harvest reads it; no imports across
packages). A run replaces the open targets that earlier runs made; targets a person set by hand stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, select

from storage.catalog.schema import images, predictions, runs, targets
from storage.catalog.sql import now
from train.feedback import Target

__all__ = [
    "LOW_CONFIDENCE",
    "image_modes",
    "image_sides",
    "mark_run",
    "replace_run_targets",
    "write_predictions",
]

LOW_CONFIDENCE = 0.5  # below this a prediction is shown for review even when it is right
CHUNK = 500


def image_modes(conn: Connection, shas: Sequence[str]) -> list[str]:
    """Pillow modes of the given images (to choose 1 or 3 input channels)."""
    modes: list[str] = []
    for start in range(0, len(shas), CHUNK):
        chunk = list(shas[start : start + CHUNK])
        modes.extend(conn.execute(select(images.c.mode).where(images.c.sha256.in_(chunk))).scalars())
    return modes


def image_sides(conn: Connection, shas: Sequence[str]) -> list[int]:
    """Shorter sides in pixels of the given images, from the catalog (the input size is chosen from these
    before anything is decoded)."""
    sides: list[int] = []
    for start in range(0, len(shas), CHUNK):
        chunk = list(shas[start : start + CHUNK])
        rows = conn.execute(select(images.c.width, images.c.height).where(images.c.sha256.in_(chunk)))
        sides.extend(min(int(w), int(h)) for w, h in rows)
    return sides


def mark_run(conn: Connection, run_id: int, status: str) -> None:
    conn.execute(runs.update().where(runs.c.id == run_id).values(status=status, finished_at=None))


def write_predictions(conn: Connection, run_id: int, rows: Iterable[dict[str, Any]]) -> int:
    """Replace this run's predictions. A row needs review when it is wrong or its confidence is low."""
    conn.execute(predictions.delete().where(predictions.c.run_id == run_id))
    batch: list[dict[str, Any]] = []
    written = 0
    for row in rows:
        wrong = row.get("true_label") is not None and row["true_label"] != row["predicted_label"]
        batch.append({**row, "run_id": run_id, "needs_review": bool(wrong or row["confidence"] < LOW_CONFIDENCE)})
        if len(batch) >= CHUNK:
            conn.execute(predictions.insert(), batch)
            written += len(batch)
            batch = []
    if batch:
        conn.execute(predictions.insert(), batch)
        written += len(batch)
    return written


def replace_run_targets(conn: Connection, new: Sequence[Target], run_id: int | None) -> None:
    """Drop the open targets earlier runs made, then open the new ones (priority 1 = most urgent)."""
    stamp = now()
    conn.execute(
        targets.update()
        .where(targets.c.status == "open", targets.c.run_id.is_not(None))
        .values(status="dropped", updated_at=stamp)
    )
    for rank, target in enumerate(new, start=1):
        conn.execute(
            targets.insert().values(
                label=target.label,
                want=target.want,
                reason=target.reason,
                status="open",
                priority=rank,
                run_id=run_id,
                created_at=stamp,
                updated_at=stamp,
            )
        )
