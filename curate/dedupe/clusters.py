"""Near-duplicate groups of the catalog's images, their keepers, label conflicts, and applying the result.

Matching is transform-aware (storage.hashes.compare): mirrored, flipped, turned, slightly cropped and screenshot
copies are candidates of their originals; storage.hashes.verify confirms them on the pixels and
curate.dedupe.groups builds groups that cannot chain. Up to BRUTE_FORCE_LIMIT images every pair is compared;
beyond that a multi-index candidate search on the pHash variants (curate.dedupe.index) finds the pairs within
CANDIDATE_RADIUS bits, which the full distance then confirms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curate.dedupe.groups import Link, group_images
from curate.dedupe.index import find_pairs, groups_from_pairs
from storage.catalog.duplicates import (
    add_decision,
    decision_history,
    dedupe_facts,
    duplicate_marks,
    load_decisions,
    marked_duplicates,
    replace_keeper,
    set_duplicate_marks,
)
from storage.catalog.images import hash_rows, source_uris, stale_hashes, store_hashes
from storage.catalog.images import shorter_sides as catalog_shorter_sides
from storage.catalog.lookup import resolve_sha
from storage.errors import GleanerError
from storage.hashes.compare import (
    DEFAULT_THRESHOLD,
    HashArrays,
    best_match,
    matching_pairs,
    pair_distances,
    pair_threshold,
)
from storage.hashes.compute import HASH_VERSION, image_hashes
from storage.hashes.perceptual import HASH_INPUT_SIZE
from storage.hashes.verify import Verdict
from storage.images import open_image
from storage.neardup import PixelVerifier
from storage.parallel import map_objects
from storage.stores import ObjectStore
from storage.workspace import Workspace

__all__ = [
    "DEFAULT_THRESHOLD",
    "Cluster",
    "DedupeReport",
    "apply_report",
    "choose_keeper",
    "confirm_duplicates",
    "dedupe_decisions",
    "ensure_hashes",
    "find_clusters",
    "image_groups",
    "load_hash_rows",
    "mark_not_duplicates",
    "pair_distances",
    "similar_pairs",
    "undo_duplicates",
]

BRUTE_FORCE_LIMIT = 20_000
CANDIDATE_RADIUS = 12  # pHash bits: candidates beyond the brute-force limit, confirmed by the full distance


# --- hashes ---------------------------------------------------------------------------------------------------


def _rehash(store: ObjectStore, row: tuple[str, str]) -> tuple[str, int, int, int, bytes]:
    """Hash a stored image exactly as ingest does (storage.images.open_image: JPEG draft to the hash size,
    upright)."""
    sha, key = row
    hashes = image_hashes(open_image(store.get(key), size=2 * HASH_INPUT_SIZE))
    return sha, hashes.phash, hashes.dhash, hashes.phash_trim, hashes.to_blob()


def ensure_hashes(workspace: Workspace, on_progress: Callable[[int, int], None] | None = None) -> int:
    """Compute the transform-aware hashes of images that lack them (catalogs from before schema v2, or an
    older HASH_VERSION); returns how many were computed. Unreadable objects are left for `curate fsck`."""
    with workspace.catalog.read() as conn:
        todo = stale_hashes(conn, HASH_VERSION)
    batch: list[tuple[str, int, int, int, bytes]] = []
    options = workspace.settings.store.backend_options()
    for done, (_row, result) in enumerate(map_objects(workspace.store, options, _rehash, todo), 1):
        if not isinstance(result, BaseException):
            batch.append(result)
        if on_progress:
            on_progress(done, len(todo))
        if len(batch) >= 500:
            _store_hashes(workspace, batch)
            batch = []
    _store_hashes(workspace, batch)
    return len(todo)


def _store_hashes(workspace: Workspace, batch: list[tuple[str, int, int, int, bytes]]) -> None:
    if not batch:
        return
    with workspace.catalog.write() as conn:
        store_hashes(conn, batch, HASH_VERSION)


def shorter_sides(workspace: Workspace, shas: Sequence[str]) -> list[int]:
    """The shorter side of each image, in the order of `shas` (for storage.hashes.compare.pair_threshold)."""
    with workspace.catalog.read() as conn:
        sizes = catalog_shorter_sides(conn)
    return [sizes[sha] for sha in shas]


def load_hash_rows(workspace: Workspace, shas: Sequence[str] | None = None) -> tuple[list[str], HashArrays]:
    """The sha256s (sorted) and hash arrays of whole images with current hashes; all of them when shas is None."""
    with workspace.catalog.read() as conn:
        rows = hash_rows(conn, HASH_VERSION)
    if shas is not None:
        wanted = set(shas)
        rows = [row for row in rows if row[0] in wanted]
    return [row[0] for row in rows], HashArrays.from_blobs([row[1] for row in rows])


# --- pairs and groups -----------------------------------------------------------------------------------------


def _candidates(arrays: HashArrays) -> tuple[np.ndarray, np.ndarray]:
    """i < j pairs whose pHash (any variant, trimmed or centre view) is within CANDIDATE_RADIUS bits."""
    n = len(arrays)
    index = np.concatenate([arrays.phash[:, 0], arrays.trim_phash[:, 0]])
    owner = np.concatenate([np.arange(n), np.arange(n)])
    queries = np.concatenate([arrays.phash.T.ravel(), arrays.trim_phash.T.ravel(), arrays.center_phash])
    query_owner = np.concatenate([np.tile(np.arange(n), 8), np.tile(np.arange(n), 8), np.arange(n)])
    q, i = find_pairs(index, queries, CANDIDATE_RADIUS)
    left, right = query_owner[q], owner[i]
    keep = left != right
    low, high = np.minimum(left[keep], right[keep]), np.maximum(left[keep], right[keep])
    unique = np.unique(low * n + high)
    return unique // n, unique % n


def similar_pairs(
    arrays: HashArrays, threshold: int = DEFAULT_THRESHOLD, sides: Sequence[int] | None = None
) -> Iterator[tuple[int, int, int]]:
    """Every pair (i, j, distance), i < j, within `threshold` (stricter for tiny images when `sides`, the
    shorter side of each image, is given: storage.hashes.compare.pair_threshold)."""
    for i, j, dist in _pairs(arrays, threshold):
        if sides is None or dist <= pair_threshold(sides[i], sides[j], threshold):
            yield i, j, dist


def _pairs(arrays: HashArrays, threshold: int) -> Iterator[tuple[int, int, int]]:
    if len(arrays) <= BRUTE_FORCE_LIMIT:
        yield from matching_pairs(arrays, threshold)
        return
    left, right = _candidates(arrays)
    for start in range(0, len(left), 1 << 20):
        part_left, part_right = left[start : start + (1 << 20)], right[start : start + (1 << 20)]
        dist = pair_distances(arrays, part_left, part_right)
        for k in np.nonzero(dist <= threshold)[0]:
            yield int(part_left[k]), int(part_right[k]), int(dist[k])


def image_groups(
    shas: Sequence[str], arrays: HashArrays, threshold: int = DEFAULT_THRESHOLD, sides: Sequence[int] | None = None
) -> dict[str, str]:
    """sha256 → its group's key (the smallest sha256 in the group); singletons are their own group."""
    pairs = list(similar_pairs(arrays, threshold, sides))
    left = np.array([p[0] for p in pairs], dtype=np.int64)
    right = np.array([p[1] for p in pairs], dtype=np.int64)
    ids = groups_from_pairs(len(shas), left, right)
    return {sha: shas[int(ids[k])] for k, sha in enumerate(shas)}  # shas are sorted: index order = sha order


# --- clusters, keepers, conflicts --------------------------------------------------------------------------


@dataclass
class Cluster:
    keeper: str
    members: list[dict[str, Any]]  # sha256, sources, width, height, label, distance, matched, score (keeper first)
    conflict: bool  # members carry different labels

    def to_json(self) -> dict[str, Any]:
        return {"keeper": self.keeper, "conflict": self.conflict, "members": self.members}


@dataclass
class DedupeReport:
    threshold: int
    images: int
    clusters: list[Cluster] = field(default_factory=list)  # verified groups: what --apply sets aside
    candidates: list[dict[str, Any]] = field(default_factory=list)  # within the threshold, not verified: review
    exact: list[dict[str, Any]] = field(default_factory=list)  # one image seen at several sources

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "images": self.images,
            "clusters": [c.to_json() for c in self.clusters],
            "duplicates": sum(len(c.members) - 1 for c in self.clusters),
            "conflicts": sum(c.conflict for c in self.clusters),
            "candidates": self.candidates,
            "exact": self.exact,
        }


def find_clusters(
    workspace: Workspace,
    threshold: int = DEFAULT_THRESHOLD,
    on_progress: Callable[[int, int], None] | None = None,
) -> DedupeReport:
    """Verified near-duplicate groups (stars around their keepers, curate.dedupe.groups) among the images that
    are not rejected, and the unverified candidates for review. `on_progress(done, total)`: images with
    candidates judged so far (verifying their pixels is the long part)."""
    ensure_hashes(workspace)
    shas, arrays = load_hash_rows(workspace)
    facts = _facts(workspace)
    live = [k for k, sha in enumerate(shas) if facts.get(sha, {}).get("review") != "rejected"]
    shas = [shas[k] for k in live]
    arrays = arrays[np.array(live, dtype=np.int64)] if live else arrays
    sides = [min(facts[sha]["width"], facts[sha]["height"]) for sha in shas]
    pairs = list(similar_pairs(arrays, threshold, sides))
    infos = [facts[sha]["info"] for sha in shas]
    verifier = PixelVerifier(workspace.store)

    def verify(keeper: int, member: int) -> Verdict:
        key_a, key_b = facts[shas[keeper]]["object_key"], facts[shas[member]]["object_key"]
        return verifier.verify(key_a, arrays.row(keeper), key_b, arrays.row(member))

    with workspace.catalog.read() as conn:
        decisions = load_decisions(conn)
    grouping = group_images(infos, pairs, verify, decisions, on_progress)
    source_map = _sources(workspace)
    report = DedupeReport(threshold=threshold, images=len(shas))
    for keeper, links in grouping.groups.items():
        entries = [_member(shas[keeper], facts, source_map, None)]
        entries += [_member(shas[link.member], facts, source_map, link, arrays) for link in links]
        labels_seen = {entry["label"] for entry in entries} - {None}
        report.clusters.append(Cluster(shas[keeper], entries, len(labels_seen) > 1))
    report.clusters.sort(key=lambda c: (-len(c.members), c.keeper))
    report.candidates = [
        {
            "a": shas[link.keeper],
            "b": shas[link.member],
            "distance": link.distance,
            "matched": best_match(arrays.row(link.keeper), arrays.row(link.member)).describe(),
            "score": round(link.verdict.score, 4),
            "reason": link.verdict.reason,
            "sources_a": source_map.get(shas[link.keeper], []),
            "sources_b": source_map.get(shas[link.member], []),
        }
        for link in sorted(grouping.candidates, key=lambda link: (link.distance, shas[link.member]))
    ]
    report.exact = [{"sha256": sha, "sources": found} for sha, found in sorted(source_map.items()) if len(found) > 1]
    return report


def _member(
    sha: str,
    facts: dict[str, dict[str, Any]],
    source_map: dict[str, list[str]],
    link: Link | None,
    arrays: HashArrays | None = None,
) -> dict[str, Any]:
    entry = {
        "sha256": sha,
        "sources": source_map.get(sha, []),
        "width": facts[sha]["width"],
        "height": facts[sha]["height"],
        "label": facts[sha]["label"],
        "distance": 0,
        "verified": True,
    }
    if link is not None and arrays is not None:
        entry["distance"] = link.distance
        entry["matched"] = best_match(arrays.row(link.keeper), arrays.row(link.member)).describe()
        entry["score"] = round(link.verdict.score, 4)
    return entry


def _facts(workspace: Workspace) -> dict[str, dict[str, Any]]:
    with workspace.catalog.read() as conn:
        return dedupe_facts(conn)


def _sources(workspace: Workspace) -> dict[str, list[str]]:
    with workspace.catalog.read() as conn:
        return source_uris(conn)


# --- applying --------------------------------------------------------------------------------------------------


def apply_report(workspace: Workspace, report: DedupeReport) -> int:
    """Make the catalog's duplicate marks what the report says: every verified member marked as a duplicate of
    its keeper, every other image not (objects are never deleted); returns how many images changed."""
    with workspace.catalog.write() as conn:
        marks: dict[str, str | None] = dict.fromkeys(marked_duplicates(conn))
        for cluster in report.clusters:
            for member in cluster.members:
                marks[member["sha256"]] = None if member["sha256"] == cluster.keeper else cluster.keeper
        return set_duplicate_marks(conn, marks)


def undo_duplicates(workspace: Workspace) -> int:
    """Clear every duplicate mark (the reverse of --apply)."""
    with workspace.catalog.write() as conn:
        return set_duplicate_marks(conn, dict.fromkeys(marked_duplicates(conn)))


def mark_not_duplicates(workspace: Workspace, a: str, b: str, actor: str) -> tuple[str, str]:
    """A person says a and b are different images: never grouped again, and neither stays set aside as the
    other's duplicate. Returns the full sha256s."""
    with workspace.catalog.write() as conn:
        a, b = resolve_sha(conn, a), resolve_sha(conn, b)
        if a == b:
            raise GleanerError("--not-duplicate needs two different images")
        add_decision(conn, "not_duplicate", a, b, actor)
        duplicate_of = duplicate_marks(conn, [a, b])
        set_duplicate_marks(conn, {sha: None for sha in (a, b) if duplicate_of.get(sha) in (a, b)})
    return a, b


def confirm_duplicates(workspace: Workspace, keeper: str, duplicate: str, actor: str) -> tuple[str, str]:
    """A person says `duplicate` is a copy of `keeper`: it is set aside now, and reruns keep the pair grouped
    without a pixel check (when the hashes still find it). Returns the full sha256s."""
    with workspace.catalog.write() as conn:
        keeper, duplicate = resolve_sha(conn, keeper), resolve_sha(conn, duplicate)
        if keeper == duplicate:
            raise GleanerError("--duplicate needs two different images")
        add_decision(conn, "duplicate", keeper, duplicate, actor)
        replace_keeper(conn, duplicate, keeper)  # the copy's own duplicates follow it: no chains
        set_duplicate_marks(conn, {keeper: None})
    return keeper, duplicate


def dedupe_decisions(workspace: Workspace) -> list[dict[str, object]]:
    """Every near-duplicate decision people made, oldest first, revoked ones included."""
    with workspace.catalog.read() as conn:
        return decision_history(conn)


def choose_keeper(workspace: Workspace, sha: str, actor: str) -> str:
    """A person chooses `sha` as the keeper of its group: it is never set aside, and its group's other members
    point to it. Returns the full sha256."""
    with workspace.catalog.write() as conn:
        sha = resolve_sha(conn, sha)
        add_decision(conn, "keeper", sha, None, actor)
        old = duplicate_marks(conn, [sha])[sha]
        if old is not None:
            replace_keeper(conn, old, sha)
            set_duplicate_marks(conn, {sha: None})
    return sha
