"""Everything the detail view shows about one image: provenance, hashes, group, flags, predictions, history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, or_, select

from storage.catalog import get_image, image_sources, label_history
from storage.catalog.schema import image_quality, images, labels, predictions, quality_flags, review_events

__all__ = ["image_detail"]

GROUP_LIMIT = 60
HISTORY_LIMIT = 50


def _hex64(value: int | None) -> str | None:
    return None if value is None else f"{value:016x}"


def _group(conn: Connection, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Members of the image's applied near-duplicate group, keeper first (empty when it is in none)."""
    keeper = row["duplicate_of"] or row["sha256"]
    query = (
        select(images.c.sha256, images.c.width, images.c.height, images.c.review, images.c.duplicate_of, labels.c.name)
        .select_from(images.outerjoin(labels, images.c.label_id == labels.c.id))
        .where(or_(images.c.sha256 == keeper, images.c.duplicate_of == keeper))
        .order_by(images.c.duplicate_of.isnot(None), images.c.sha256)
        .limit(GROUP_LIMIT)
    )
    members = [
        {
            "sha256": sha,
            "width": width,
            "height": height,
            "review": review,
            "keeper": duplicate_of is None,
            "label": name,
        }
        for sha, width, height, review, duplicate_of, name in conn.execute(query)
    ]
    return members if len(members) > 1 else []


def image_detail(conn: Connection, sha256: str) -> dict[str, Any] | None:
    """The detail view's data, or None for an unknown image."""
    row = get_image(conn, sha256)
    if row is None:
        return None
    flags = {
        flag: value
        for flag, value in conn.execute(
            select(quality_flags.c.flag, quality_flags.c.value).where(quality_flags.c.sha256 == sha256)
        )
    }
    metrics = conn.execute(select(image_quality.c.metrics).where(image_quality.c.sha256 == sha256)).scalar()
    preds = [
        dict(r._mapping)
        for r in conn.execute(
            select(predictions).where(predictions.c.sha256 == sha256).order_by(predictions.c.run_id.desc()).limit(5)
        )
    ]
    reviews = [
        dict(r._mapping)
        for r in conn.execute(
            select(review_events)
            .where(review_events.c.sha256 == sha256)
            .order_by(review_events.c.id.desc())
            .limit(HISTORY_LIMIT)
        )
    ]
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
        "metrics": metrics or {},
        "predictions": preds,
        "label_history": label_history(conn, sha256, limit=HISTORY_LIMIT),
        "review_history": reviews,
    }
