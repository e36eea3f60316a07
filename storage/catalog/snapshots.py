"""Snapshot rows: the catalog's list of frozen dataset versions (their manifests live in the object store), and
the images a new snapshot may freeze."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, select

from storage.catalog.schema import images, labels, snapshots

__all__ = ["SnapshotRow", "add_snapshot", "eligible_images", "remove_snapshot", "snapshot_exists", "snapshot_rows"]


class SnapshotRow(NamedTuple):
    name: str
    manifest_key: str
    image_count: int
    created_at: datetime
    meta: dict[str, Any]


def eligible_images(conn: Connection, accepted_only: bool) -> list[tuple[str, str, str]]:
    """(sha256, label, object_key) of labelled, whole, non-duplicate, non-rejected images: what a snapshot freezes
    (`accepted_only`: only images accepted in review), ordered by sha256."""
    query = (
        select(images.c.sha256, labels.c.name, images.c.object_key)
        .select_from(images.join(labels, images.c.label_id == labels.c.id))
        .where(images.c.status == "ok", images.c.duplicate_of.is_(None))
        .order_by(images.c.sha256)
    )
    query = query.where(images.c.review == "accepted") if accepted_only else query.where(images.c.review != "rejected")
    return [(str(sha), str(label), str(key)) for sha, label, key in conn.execute(query)]


def snapshot_exists(conn: Connection, name: str) -> bool:
    return conn.execute(select(snapshots.c.id).where(snapshots.c.name == name)).first() is not None


def add_snapshot(
    conn: Connection, name: str, manifest_key: str, image_count: int, meta: dict[str, Any], created_at: datetime
) -> None:
    conn.execute(
        snapshots.insert().values(
            name=name, manifest_key=manifest_key, image_count=image_count, meta=meta, created_at=created_at
        )
    )


def snapshot_rows(conn: Connection) -> list[SnapshotRow]:
    """Every snapshot, oldest first."""
    rows = conn.execute(select(snapshots).order_by(snapshots.c.id)).all()
    return [SnapshotRow(r.name, r.manifest_key, int(r.image_count), r.created_at, r.meta or {}) for r in rows]


def remove_snapshot(conn: Connection, name: str) -> None:
    conn.execute(snapshots.delete().where(snapshots.c.name == name))
