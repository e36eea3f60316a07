"""Everything the detail view shows about one image: provenance, hashes, group, flags, predictions, history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from storage.catalog import get_image, image_sources, label_history
from storage.catalog.duplicates import group_members
from storage.catalog.predictions import image_predictions
from storage.catalog.quality import image_flags, image_metrics
from storage.catalog.review_events import review_history

__all__ = ["image_detail"]

GROUP_LIMIT = 60
HISTORY_LIMIT = 50


def _hex64(value: int | None) -> str | None:
    return None if value is None else f"{value:016x}"


def _group(conn: Connection, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Members of the image's applied near-duplicate group, keeper first (empty when it is in none)."""
    members = group_members(conn, row["duplicate_of"] or row["sha256"], GROUP_LIMIT)
    return members if len(members) > 1 else []


def image_detail(conn: Connection, sha256: str) -> dict[str, Any] | None:
    """The detail view's data, or None for an unknown image."""
    row = get_image(conn, sha256)
    if row is None:
        return None
    flags = image_flags(conn, sha256)
    metrics = image_metrics(conn, sha256)
    preds = image_predictions(conn, sha256, limit=5)
    reviews = review_history(conn, sha256, limit=HISTORY_LIMIT)
    return {
        "image": row,
        "hashes": {
            "sha256": row["sha256"],
            "phash": _hex64(row.get("phash")),
            "dhash": _hex64(row.get("dhash")),
            "phash_trim": _hex64(row.get("phash_trim")),
        },
        "sources": image_sources(conn, sha256),
        "group": _group(conn, row),
        "flags": flags,
        "metrics": metrics,
        "predictions": preds,
        "label_history": label_history(conn, sha256, limit=HISTORY_LIMIT),
        "review_history": reviews,
    }
