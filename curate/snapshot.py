"""Snapshots: immutable dataset versions (sha256 → label → split) stored as a manifest in the object store.

This is the API `train` may use of `curate` (an import-linter contract): snapshots, their manifests, and the
leak-free split assignment they are made with (curate.splits, re-exported for cross-validation folds)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from curate.dedupe.clusters import DEFAULT_THRESHOLD, ensure_hashes, image_groups, load_hash_rows, shorter_sides
from curate.splits import SplitItem, assign_splits
from storage.catalog import snapshots as catalog_snapshots
from storage.catalog.sql import now
from storage.errors import GleanerError
from storage.workspace import Workspace

__all__ = [
    "ManifestEntry",
    "SnapshotInfo",
    "SplitItem",
    "assign_splits",
    "create_snapshot",
    "delete_snapshot",
    "eligible_images",
    "list_snapshots",
    "load_manifest",
]

MANIFEST_PREFIX = "snapshots/"


@dataclass(frozen=True)
class ManifestEntry:
    sha256: str
    label: str
    split: str
    key: str  # object key in the store
    group: str  # near-duplicate group (the smallest sha256 in it)


@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    manifest_key: str
    image_count: int
    created_at: datetime
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


def eligible_images(workspace: Workspace, accepted_only: bool) -> list[tuple[str, str, str]]:
    """(sha256, label, object_key) of labelled, whole, non-duplicate, non-rejected images: what a snapshot freezes
    (`accepted_only`: only images accepted in review), ordered by sha256."""
    with workspace.catalog.read() as conn:
        return catalog_snapshots.eligible_images(conn, accepted_only)


def create_snapshot(
    workspace: Workspace,
    *,
    name: str | None = None,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    threshold: int = DEFAULT_THRESHOLD,
    accepted_only: bool = False,
) -> SnapshotInfo:
    """Freeze the current dataset; near-duplicate groups never straddle train/val/test."""
    created = now()
    name = name or f"snap-{created:%Y%m%d-%H%M%S}"
    with workspace.catalog.read() as conn:
        if catalog_snapshots.snapshot_exists(conn, name):
            raise GleanerError(f"snapshot {name!r} already exists; snapshots are immutable, choose another name")
    rows = eligible_images(workspace, accepted_only)
    if not rows:
        raise GleanerError("nothing to snapshot: no labelled, non-rejected, non-duplicate images")
    ensure_hashes(workspace)
    shas, arrays = load_hash_rows(workspace, [sha for sha, _, _ in rows])
    groups = image_groups(shas, arrays, threshold, shorter_sides(workspace, shas))
    groups.update({sha: sha for sha, _, _ in rows if sha not in groups})  # unhashable objects stand alone
    items = [SplitItem(sha, label, groups[sha]) for sha, label, _ in rows]
    splits = assign_splits(items, ratios, seed)
    entries = [ManifestEntry(sha, label, splits[sha], key, groups[sha]) for sha, label, key in rows]
    manifest_key = f"{MANIFEST_PREFIX}{name}/manifest.jsonl"
    body = "".join(json.dumps(asdict(entry), sort_keys=True) + "\n" for entry in entries).encode()
    workspace.store.put(manifest_key, body, "application/x-ndjson")
    meta = {
        "ratios": list(ratios),
        "seed": seed,
        "threshold": threshold,
        "accepted_only": accepted_only,
        "splits": dict(Counter(e.split for e in entries)),
        "labels": dict(sorted(Counter(e.label for e in entries).items())),
        "per_label": {
            label: dict(Counter(e.split for e in entries if e.label == label))
            for label in sorted({e.label for e in entries})
        },
        "groups": len({e.group for e in entries}),
    }
    with workspace.catalog.write() as conn:
        catalog_snapshots.add_snapshot(conn, name, manifest_key, len(entries), meta, created)
    return SnapshotInfo(name, manifest_key, len(entries), created, meta)


def list_snapshots(workspace: Workspace) -> list[SnapshotInfo]:
    with workspace.catalog.read() as conn:
        rows = catalog_snapshots.snapshot_rows(conn)
    return [SnapshotInfo(r.name, r.manifest_key, r.image_count, _aware(r.created_at), r.meta) for r in rows]


def delete_snapshot(workspace: Workspace, name: str) -> SnapshotInfo:
    """Remove a snapshot: its catalog row, then its manifest object. Returns what it was.

    The images stay (a snapshot only names them). The row goes first, so a failure in between leaves at worst an
    unlisted manifest object, never a listed snapshot whose manifest is gone. Run folders trained on it keep
    their models, reports and exports; only `train run --resume` of such a run needs the snapshot again.
    """
    matches = [s for s in list_snapshots(workspace) if s.name == name]
    if not matches:
        known = ", ".join(s.name for s in list_snapshots(workspace)) or "none"
        raise GleanerError(f"no snapshot named {name!r} (have: {known})")
    info = matches[0]
    with workspace.catalog.write() as conn:
        catalog_snapshots.remove_snapshot(conn, name)
    workspace.store.delete(info.manifest_key)  # a missing object is not an error
    return info


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def load_manifest(workspace: Workspace, name: str | None = None) -> tuple[SnapshotInfo, list[ManifestEntry]]:
    """A snapshot's entries; the newest snapshot when no name is given."""
    known = list_snapshots(workspace)
    if not known:
        raise GleanerError("no snapshots yet: run `curate snapshot` first")
    if name is None:
        info = known[-1]
    else:
        matches = [s for s in known if s.name == name]
        if not matches:
            raise GleanerError(f"no snapshot named {name!r} (have: {', '.join(s.name for s in known)})")
        info = matches[0]
    try:
        body = workspace.store.get(info.manifest_key)
    except KeyError:
        raise GleanerError(f"snapshot {info.name!r}: manifest {info.manifest_key} is missing from the store") from None
    entries = [ManifestEntry(**json.loads(line)) for line in body.decode().splitlines() if line.strip()]
    return info, entries
