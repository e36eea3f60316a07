"""Label management with history: every change writes a label_events row (who, when, before, after)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, func, select

from storage.catalog.schema import images, label_events, labels
from storage.catalog.sql import insert_ignore, now
from storage.errors import GleanerError

__all__ = [
    "add_label",
    "delete_label",
    "ensure_label",
    "label_counts",
    "label_event",
    "label_history",
    "label_id",
    "merge_labels",
    "rename_label",
    "set_label",
    "unlabelled_count",
]


def _check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 200 or any(ch in cleaned for ch in "\n\r\t/\\"):
        raise GleanerError(f"invalid label name {name!r}: 1-200 characters, no slashes or line breaks")
    return cleaned


def label_id(conn: Connection, name: str) -> int | None:
    return conn.execute(select(labels.c.id).where(labels.c.name == name)).scalar()


def ensure_label(conn: Connection, name: str) -> int:
    """The id of a label, creating it when needed (safe when several processes race)."""
    name = _check_name(name)
    insert_ignore(conn, labels, {"name": name, "created_at": now()}, ["name"])
    found = label_id(conn, name)
    assert found is not None
    return found


def label_event(
    conn: Connection,
    *,
    action: str,
    before: str | None,
    after: str | None,
    origin: str,
    actor: str,
    sha256: str | None = None,
) -> None:
    conn.execute(
        label_events.insert().values(
            sha256=sha256, action=action, before=before, after=after, origin=origin, actor=actor, at=now()
        )
    )


def add_label(conn: Connection, name: str, *, actor: str, origin: str = "cli") -> bool:
    """Create an empty label; False when it already existed."""
    name = _check_name(name)
    created = insert_ignore(conn, labels, {"name": name, "created_at": now()}, ["name"])
    if created:
        label_event(conn, action="add", before=None, after=name, origin=origin, actor=actor)
    return created


def _require(conn: Connection, name: str) -> int:
    found = label_id(conn, name)
    if found is None:
        raise GleanerError(f"no label named {name!r}")
    return found


def rename_label(conn: Connection, old: str, new: str, *, actor: str, origin: str = "cli") -> int:
    """Rename a label in place (its images follow); returns the number of images carrying it."""
    old_id = _require(conn, old)
    new = _check_name(new)
    if label_id(conn, new) is not None:
        raise GleanerError(f"label {new!r} already exists; use `curate label merge {old} --into {new}`")
    conn.execute(labels.update().where(labels.c.id == old_id).values(name=new))
    label_event(conn, action="rename", before=old, after=new, origin=origin, actor=actor)
    return conn.execute(select(func.count()).where(images.c.label_id == old_id)).scalar_one()


def merge_labels(conn: Connection, sources: Iterable[str], into: str, *, actor: str, origin: str = "cli") -> int:
    """Move every image of the source labels to `into` (created if needed) and drop the sources.

    `into` may be among the sources (`merge tote bag --into bag`), but merging a label only into itself is refused:
    it would do nothing while saying it merged."""
    sources = list(sources)
    if sources and all(name.strip() == into.strip() for name in sources):
        raise GleanerError(f"cannot merge {into!r} into itself: name another label to merge into {into!r}")
    target_id = ensure_label(conn, into)
    moved = 0
    for name in sources:
        if name == into:
            continue
        source_id = _require(conn, name)
        shas = conn.execute(select(images.c.sha256).where(images.c.label_id == source_id)).scalars().all()
        for sha in shas:
            label_event(conn, sha256=sha, action="set", before=name, after=into, origin=origin, actor=actor)
        conn.execute(images.update().where(images.c.label_id == source_id).values(label_id=target_id, updated_at=now()))
        conn.execute(labels.delete().where(labels.c.id == source_id))
        label_event(conn, action="merge", before=name, after=into, origin=origin, actor=actor)
        moved += len(shas)
    return moved


def delete_label(conn: Connection, name: str, *, actor: str, origin: str = "cli") -> int:
    """Remove a label; its images become unlabelled (one `clear` event each). Returns how many images it had."""
    label = _require(conn, name)
    shas = conn.execute(select(images.c.sha256).where(images.c.label_id == label)).scalars().all()
    for sha in shas:
        label_event(conn, sha256=sha, action="clear", before=name, after=None, origin=origin, actor=actor)
    conn.execute(images.update().where(images.c.label_id == label).values(label_id=None, updated_at=now()))
    conn.execute(labels.delete().where(labels.c.id == label))
    label_event(conn, action="delete", before=name, after=None, origin=origin, actor=actor)
    return len(shas)


def set_label(
    conn: Connection,
    shas: Iterable[str],
    name: str | None,
    *,
    actor: str,
    origin: str = "cli",
    only_if_unlabelled: bool = False,
) -> int:
    """Set (or clear, with None) the current label of images; returns how many changed."""
    new_id = ensure_label(conn, name) if name is not None else None
    changed = 0
    for sha in shas:
        row = conn.execute(
            select(images.c.label_id, labels.c.name)
            .select_from(images.outerjoin(labels, images.c.label_id == labels.c.id))
            .where(images.c.sha256 == sha)
        ).first()
        if row is None:
            raise GleanerError(f"no image with sha256 {sha}")
        if row.label_id == new_id or (only_if_unlabelled and row.label_id is not None):
            continue
        conn.execute(images.update().where(images.c.sha256 == sha).values(label_id=new_id, updated_at=now()))
        label_event(
            conn, sha256=sha, action="set" if name else "clear", before=row.name, after=name, origin=origin, actor=actor
        )
        changed += 1
    return changed


def label_counts(conn: Connection, *, include_empty: bool = True) -> dict[str, int]:
    """Current labels of images that are not rejected, duplicates or missing: name → count."""
    counted = (
        select(labels.c.name, func.count(images.c.sha256))
        .select_from(
            labels.outerjoin(
                images,
                (images.c.label_id == labels.c.id)
                & (images.c.review != "rejected")
                & (images.c.status == "ok")
                & images.c.duplicate_of.is_(None),
            )
        )
        .group_by(labels.c.name)
        .order_by(labels.c.name)
    )
    result = {name: int(count) for name, count in conn.execute(counted)}
    return result if include_empty else {k: v for k, v in result.items() if v}


def unlabelled_count(conn: Connection) -> int:
    """Images without a label, counted as `label_counts` counts (not rejected, duplicates or missing)."""
    query = select(func.count()).where(
        images.c.label_id.is_(None),
        images.c.review != "rejected",
        images.c.status == "ok",
        images.c.duplicate_of.is_(None),
    )
    return int(conn.execute(query).scalar_one())


def label_history(conn: Connection, sha256: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest label events, for one image or for all."""
    query = select(label_events).order_by(label_events.c.id.desc()).limit(limit)
    if sha256:
        query = query.where(label_events.c.sha256 == sha256)
    return [dict(row._mapping) for row in conn.execute(query)]
