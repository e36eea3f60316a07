"""Review state (unreviewed, accepted, rejected) and its history: every change writes a review_events row, so
the review app's undo, and anyone asking later, can see who changed what and when."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from storage.catalog.schema import images, labels, review_events
from storage.catalog.sql import now

__all__ = ["current_states", "review_history", "set_review"]


def current_states(conn: Connection, shas: Sequence[str]) -> dict[str, tuple[str | None, str]]:
    """sha256 -> (label name, review state) for the images that exist."""
    query = (
        select(images.c.sha256, labels.c.name, images.c.review)
        .select_from(images.outerjoin(labels, images.c.label_id == labels.c.id))
        .where(images.c.sha256.in_(list(shas)))
    )
    return {str(sha): (name, str(review)) for sha, name, review in conn.execute(query)}


def set_review(conn: Connection, shas: Sequence[str], after: str, befores: Mapping[str, str], actor: str) -> None:
    """Set the review state of `shas` to `after`, with one history row each (`befores`: their states until now)."""
    stamp = now()
    conn.execute(images.update().where(images.c.sha256.in_(list(shas))).values(review=after, updated_at=stamp))
    conn.execute(
        review_events.insert(),
        [{"sha256": sha, "before": befores[sha], "after": after, "actor": actor, "at": stamp} for sha in shas],
    )


def review_history(conn: Connection, sha256: str, limit: int = 50) -> list[dict[str, Any]]:
    """The image's review changes, newest first."""
    query = (
        select(review_events).where(review_events.c.sha256 == sha256).order_by(review_events.c.id.desc()).limit(limit)
    )
    return [dict(row._mapping) for row in conn.execute(query)]
