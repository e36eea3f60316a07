"""Which snapshot a run trains on: the one named, else the newest one when the catalog has not changed since,
else a new one. A run that cannot train (fewer than two labels) fails before anything is frozen.

Freezing a new snapshot on every `train run` filled the catalog with identical versions, one per attempt,
including attempts that then failed; reusing the newest one when its images and labels are the catalog's
current ones keeps one version per actual change.
"""

from __future__ import annotations

import logging

from curate.snapshot import (
    ManifestEntry,
    SnapshotInfo,
    create_snapshot,
    eligible_images,  # the rows create_snapshot would freeze
    list_snapshots,
    load_manifest,
)
from storage.errors import GleanerError
from storage.workspace import Workspace

__all__ = ["choose_snapshot"]

log = logging.getLogger(__name__)


def _check_labels(labels: set[str], where: str) -> None:
    if len(labels) < 2:
        found = f": {', '.join(sorted(labels))}" if labels else ""
        raise GleanerError(f"{where} has {len(labels)} label(s){found}; a classifier needs at least 2")


def choose_snapshot(workspace: Workspace, name: str | None) -> tuple[SnapshotInfo, list[ManifestEntry], str]:
    """(snapshot, its entries, how: "given" | "reused" | "created")."""
    if name is not None:
        info, entries = load_manifest(workspace, name)
        _check_labels({e.label for e in entries}, f"snapshot {info.name}")
        return info, entries, "given"
    rows = eligible_images(workspace, False)
    if not rows:
        raise GleanerError("nothing to train on: no labelled, non-rejected, non-duplicate images in the catalog")
    _check_labels({label for _, label, _ in rows}, "the catalog")
    current = {(sha, label) for sha, label, _ in rows}
    known = [s for s in list_snapshots(workspace) if not s.meta.get("accepted_only")]
    if known and known[-1].image_count == len(current):
        info, entries = load_manifest(workspace, known[-1].name)
        if {(e.sha256, e.label) for e in entries} == current:
            log.info("reusing snapshot %s: the catalog's images and labels have not changed since", info.name)
            return info, entries, "reused"
    info = create_snapshot(workspace)
    log.info("created snapshot %s (%d images)", info.name, info.image_count)
    _, entries = load_manifest(workspace, info.name)
    return info, entries, "created"
