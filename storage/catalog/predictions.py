"""Per-image predictions of training runs: written by `train run`, read by the review app's model views."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import Connection, func, select

from storage.catalog.schema import predictions

__all__ = ["LOW_CONFIDENCE", "image_predictions", "latest_prediction_run", "write_predictions"]

LOW_CONFIDENCE: Final = 0.5  # below this a prediction is shown for review even when it is right
CHUNK = 500


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


def latest_prediction_run(conn: Connection) -> int | None:
    """The newest training run with predictions (the model views show its mistakes)."""
    found = conn.execute(select(func.max(predictions.c.run_id))).scalar()
    return None if found is None else int(found)


def image_predictions(conn: Connection, sha256: str, limit: int = 5) -> list[dict[str, Any]]:
    """The image's predictions, newest run first."""
    query = select(predictions).where(predictions.c.sha256 == sha256).order_by(predictions.c.run_id.desc()).limit(limit)
    return [dict(row._mapping) for row in conn.execute(query)]
