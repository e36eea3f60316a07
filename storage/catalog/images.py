"""Recording ingested images and reading them back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from storage.catalog.labels import ensure_label, label_event, label_name, set_label
from storage.catalog.records import ImageFacts, SourceInfo
from storage.catalog.schema import images, label_events, labels, sources
from storage.catalog.sql import dialect_insert, insert_ignore, now, signed64, unsigned64

__all__ = [
    "Sighting",
    "count_images",
    "get_image",
    "hash_rows",
    "image_exists",
    "image_exts",
    "image_modes",
    "image_sides",
    "image_sources",
    "iter_images",
    "mark_duplicate",
    "mark_status",
    "record_image",
    "record_images",
    "shorter_sides",
    "source_uris",
    "stale_hashes",
    "store_hashes",
    "whole_images",
]


def record_image(
    conn: Connection,
    facts: ImageFacts,
    object_key: str,
    source: SourceInfo,
    *,
    label: str | None,
    origin: str,
    actor: str,
    run_id: int | None = None,
    label_ids: dict[str, int] | None = None,
) -> bool:
    """Insert the image (if new), its source and label in the caller's transaction; True when the image is new.

    A second sighting of the same bytes adds a source row (once per kind+uri). Its label becomes the
    image's label only when the image has none: an existing label is never overwritten by a collector.
    `label_ids` caches label name -> id within one transaction (batches of many images).
    """
    stamp = now()
    label_id: int | None = None
    if label:
        cache = label_ids if label_ids is not None else {}
        if label not in cache:
            cache[label] = ensure_label(conn, label)
        label_id = cache[label]
    sighting = Sighting(facts, object_key, source, label)
    added = insert_ignore(conn, images, _new_image_row(sighting, label_id, stamp), ["sha256"])
    inserted = added
    if not inserted:
        # The object was written again before this call, so an image marked missing is whole again.
        restored = conn.execute(
            images.update()
            .where((images.c.sha256 == facts.sha256) & (images.c.status != "ok"))
            .values(status="ok", object_key=object_key, updated_at=stamp)
        ).rowcount
        added = restored == 1
    insert_ignore(conn, sources, _source_row(sighting, run_id, stamp), ["sha256", "kind", "uri"])
    if label and inserted:
        after = label_name(conn, label_id) if label_id is not None else label
        label_event(conn, sha256=facts.sha256, action="set", before=None, after=after, origin=origin, actor=actor)
    elif label:
        set_label(conn, [facts.sha256], label, actor=actor, origin=origin, only_if_unlabelled=True)
    return added


@dataclass(frozen=True)
class Sighting:
    """One stored object seen at one source, with the label that source suggests."""

    facts: ImageFacts
    object_key: str
    source: SourceInfo
    label: str | None = None


def _dialect_insert(conn: Connection, table: Any) -> Any:
    return dialect_insert(conn, table)


def record_images(
    conn: Connection, sightings: Sequence[Sighting], *, origin: str, actor: str, run_id: int | None = None
) -> list[bool]:
    """`record_image` for a batch, with a handful of statements instead of several per image; one bool each.

    INSERT ... ON CONFLICT DO NOTHING RETURNING tells exactly which images this call created, also when
    another process records the same bytes at the same moment.
    """
    if not sightings:
        return []
    stamp = now()
    label_ids = {name: ensure_label(conn, name) for name in sorted({s.label for s in sightings if s.label})}
    stored = {name: label_name(conn, label) for name, label in label_ids.items()}  # spellings under the label rule
    rows: dict[str, dict[str, Any]] = {}
    for s in sightings:
        if s.facts.sha256 not in rows:
            rows[s.facts.sha256] = _new_image_row(s, label_ids.get(s.label or ""), stamp)
    statement = _dialect_insert(conn, images).on_conflict_do_nothing(index_elements=["sha256"])
    created = set(conn.execute(statement.returning(images.c.sha256), list(rows.values())).scalars())
    others = [sha for sha in rows if sha not in created]
    restored: set[str] = set()
    current_label: dict[str, int | None] = {}
    if others:
        found = conn.execute(
            select(images.c.sha256, images.c.status, images.c.label_id).where(images.c.sha256.in_(others))
        ).all()
        current_label = {sha: label_id for sha, _status, label_id in found}
        broken = [sha for sha, status, _label in found if status != "ok"]
        if broken:
            # The object was written again before this call, so an image marked missing is whole again.
            conn.execute(images.update().where(images.c.sha256.in_(broken)).values(status="ok", updated_at=stamp))
            restored = set(broken)
    source_rows = [_source_row(s, run_id, stamp) for s in sightings]
    source_insert = _dialect_insert(conn, sources).on_conflict_do_nothing(index_elements=["sha256", "kind", "uri"])
    conn.execute(source_insert, source_rows)
    events = [
        {
            "sha256": sha,
            "action": "set",
            "before": None,
            "after": stored[s.label] if s.label else None,
            "origin": origin,
            "actor": actor,
            "at": stamp,
        }
        for sha, s in ((s.facts.sha256, s) for s in sightings)
        if s.label and sha in created and rows[sha]["label_id"] == label_ids[s.label]
    ]
    first_events: dict[str, dict[str, Any]] = {}
    for event in events:  # the first event of each image, in order
        first_events.setdefault(str(event["sha256"]), event)
    events = list(first_events.values())
    if events:
        conn.execute(label_events.insert(), events)
    for s in sightings:  # the rare path: known images that have no label yet
        sha = s.facts.sha256
        if s.label and sha in current_label and current_label[sha] is None:
            set_label(conn, [sha], s.label, actor=actor, origin=origin, only_if_unlabelled=True)
            current_label[sha] = label_ids[s.label]
    added: list[bool] = []
    reported: set[str] = set()
    for s in sightings:
        sha = s.facts.sha256
        added.append((sha in created or sha in restored) and sha not in reported)
        reported.add(sha)
    return added


def _new_image_row(s: Sighting, label_id: int | None, stamp: Any) -> dict[str, Any]:
    facts = s.facts
    return {
        "sha256": facts.sha256,
        "object_key": s.object_key,
        "ext": facts.ext,
        "format": facts.format,
        "size_bytes": facts.size_bytes,
        "width": facts.width,
        "height": facts.height,
        "mode": facts.mode,
        "phash": signed64(facts.phash),
        "dhash": None if facts.dhash is None else signed64(facts.dhash),
        "phash_trim": None if facts.phash_trim is None else signed64(facts.phash_trim),
        "hash_variants": facts.hash_variants,
        "hash_version": facts.hash_version,
        "content_pixels": facts.content_pixels,
        "label_id": label_id,
        "status": "ok",
        "review": "unreviewed",
        "duplicate_of": None,
        "added_at": stamp,
        "updated_at": stamp,
    }


def _source_row(s: Sighting, run_id: int | None, stamp: Any) -> dict[str, Any]:
    source = s.source
    return {
        "sha256": s.facts.sha256,
        "kind": source.kind,
        "uri": source.uri,
        "page_url": source.page_url,
        "alt_text": source.alt_text,
        "label": s.label,
        "http_status": source.http_status,
        "run_id": run_id,
        "extra": source.extra or None,
        "fetched_at": source.fetched_at or stamp,
    }


def _image_row(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    for name in ("phash", "dhash", "phash_trim"):
        if data.get(name) is not None:
            data[name] = unsigned64(data[name])
    return data


def _image_query() -> Any:
    return select(images, labels.c.name.label("label")).select_from(
        images.outerjoin(labels, images.c.label_id == labels.c.id)
    )


def get_image(conn: Connection, sha256: str) -> dict[str, Any] | None:
    row = conn.execute(_image_query().where(images.c.sha256 == sha256)).first()
    return _image_row(row) if row else None


def iter_images(conn: Connection, *, status: str | None = None) -> Iterator[dict[str, Any]]:
    query = _image_query().order_by(images.c.sha256)
    if status:
        query = query.where(images.c.status == status)
    for row in conn.execute(query):
        yield _image_row(row)


def count_images(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(images)).scalar_one())


def image_sources(conn: Connection, sha256: str) -> list[dict[str, Any]]:
    query = select(sources).where(sources.c.sha256 == sha256).order_by(sources.c.id)
    return [dict(row._mapping) for row in conn.execute(query)]


def mark_duplicate(conn: Connection, sha256: str, keeper: str | None) -> None:
    """Record `sha256` as a near-duplicate of `keeper` (None clears it); the object itself stays."""
    conn.execute(images.update().where(images.c.sha256 == sha256).values(duplicate_of=keeper, updated_at=now()))


def mark_status(conn: Connection, sha256: str, status: str) -> None:
    conn.execute(images.update().where(images.c.sha256 == sha256).values(status=status, updated_at=now()))


CHUNK = 500  # sha256s per IN (...) list


def image_exists(conn: Connection, sha256: str) -> bool:
    return conn.execute(select(images.c.sha256).where(images.c.sha256 == sha256)).first() is not None


def image_exts(conn: Connection) -> dict[str, str]:
    """sha256 -> file extension of every image (reports link the stored objects)."""
    return {str(sha): str(ext) for sha, ext in conn.execute(select(images.c.sha256, images.c.ext))}


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


def shorter_sides(conn: Connection) -> dict[str, int]:
    """sha256 -> shorter side in pixels, for every image."""
    query = select(images.c.sha256, images.c.width, images.c.height)
    return {str(sha): min(int(w), int(h)) for sha, w, h in conn.execute(query)}


def whole_images(conn: Connection) -> list[tuple[str, str, int, int]]:
    """(sha256, object key, width, height) of every image whose object is whole (status ok)."""
    query = select(images.c.sha256, images.c.object_key, images.c.width, images.c.height).where(images.c.status == "ok")
    return [(str(sha), str(key), int(w), int(h)) for sha, key, w, h in conn.execute(query)]


def source_uris(conn: Connection) -> dict[str, list[str]]:
    """sha256 -> the paths or URLs it was seen at, first sighting first."""
    found: dict[str, list[str]] = {}
    for sha, uri in conn.execute(select(sources.c.sha256, sources.c.uri).order_by(sources.c.id)):
        found.setdefault(sha, []).append(uri)
    return found


# --- perceptual hashes --------------------------------------------------------------------------------------


def stale_hashes(conn: Connection, version: int) -> list[tuple[str, str]]:
    """(sha256, object key) of whole images whose hashes are missing or older than `version`."""
    query = select(images.c.sha256, images.c.object_key).where(
        images.c.status == "ok", (images.c.hash_version.is_(None)) | (images.c.hash_version < version)
    )
    return [(str(sha), str(key)) for sha, key in conn.execute(query)]


def store_hashes(conn: Connection, rows: Iterable[tuple[str, int, int, int, bytes]], version: int) -> None:
    """Write (sha256, pHash, dHash, trimmed pHash, variants blob) rows computed at hash `version`."""
    for sha, phash, dhash, phash_trim, blob in rows:
        conn.execute(
            images.update()
            .where(images.c.sha256 == sha)
            .values(
                phash=signed64(phash),
                dhash=signed64(dhash),
                phash_trim=signed64(phash_trim),
                hash_variants=blob,
                hash_version=version,
            )
        )


def hash_rows(conn: Connection, version: int) -> list[tuple[str, bytes]]:
    """(sha256, variants blob) of whole images hashed at `version`, ordered by sha256."""
    query = select(images.c.sha256, images.c.hash_variants).where(
        images.c.status == "ok", images.c.hash_version == version
    )
    return [(str(sha), bytes(blob)) for sha, blob in conn.execute(query.order_by(images.c.sha256))]
