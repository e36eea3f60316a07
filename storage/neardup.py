"""Flag near-duplicates of catalogued images as they are ingested.

The index holds the transform-aware hashes of the catalog's keepers (whole, non-duplicate images) in memory;
each batch of new images is compared with all of them at once (storage.hashes.compare), and one within the threshold is
recorded as a duplicate of the image it matches. Above INDEX_LIMIT images the per-image cost would slow
collectors down, so the check is skipped there and `curate dedupe` (sub-quadratic) does the grouping.
"""

from __future__ import annotations

import logging
from dataclasses import fields

import numpy as np
from sqlalchemy import Connection, func, select

from storage.catalog.records import ImageFacts
from storage.catalog.schema import images
from storage.hashes.compare import SMALL_SIDE, HashArrays, cross_distances
from storage.hashes.compute import HASH_VERSION, ImageHashes

__all__ = ["INDEX_LIMIT", "NearDuplicateIndex"]

INDEX_LIMIT = 100_000

log = logging.getLogger(__name__)


class NearDuplicateIndex:
    """The catalog's keepers and their hashes; grows as new, distinct images are ingested.

    Rows live in preallocated arrays that double when full, so adding a keeper is O(1) amortised and a match
    is one vectorised comparison against a view of the filled rows.
    """

    def __init__(self, shas: list[str], arrays: HashArrays, threshold: int) -> None:
        self.threshold = threshold
        self._shas = list(shas)
        self._size = len(shas)
        capacity = max(64, 2 * self._size)
        self._columns = {f.name: _grow(getattr(arrays, f.name), capacity) for f in fields(HashArrays)}

    @classmethod
    def load(cls, conn: Connection, threshold: int) -> NearDuplicateIndex | None:
        """The index of the catalog's keepers, or None when the catalog is too large for an ingest-time check."""
        keepers = (
            (images.c.status == "ok")
            & images.c.duplicate_of.is_(None)
            & (images.c.hash_version == HASH_VERSION)
            & (images.c.width >= SMALL_SIDE)
            & (images.c.height >= SMALL_SIDE)
        )
        count = conn.execute(select(func.count()).select_from(images).where(keepers)).scalar_one()
        if count > INDEX_LIMIT:
            log.info("catalog has %d images: near-duplicates are left to `curate dedupe`", count)
            return None
        rows = conn.execute(select(images.c.sha256, images.c.hash_variants).where(keepers)).all()
        return cls([r[0] for r in rows], HashArrays.from_blobs([r[1] for r in rows]), threshold)

    def __len__(self) -> int:
        return self._size

    def _view(self) -> HashArrays:
        return HashArrays(**{name: column[: self._size] for name, column in self._columns.items()})

    def match_and_add(self, batch: list[ImageFacts]) -> list[tuple[str, int] | None]:
        """For each new image in order: (sha256, distance) of the closest keeper within the threshold, or None,
        in which case it becomes a keeper itself (later images of the batch are compared with it too).

        One vectorised comparison for the whole batch against the index, and one within the batch.
        """
        results: list[tuple[str, int] | None] = [None] * len(batch)
        probes = [(i, facts) for i, facts in enumerate(batch) if facts.hash_variants is not None and not _tiny(facts)]
        if not probes:
            return results
        arrays = HashArrays.from_hashes([ImageHashes.from_blob(f.hash_variants) for _, f in probes])  # type: ignore[arg-type]
        to_index = cross_distances(arrays, self._view()) if self._size else None
        within = cross_distances(arrays, arrays) if len(probes) > 1 else None
        keepers: list[int] = []
        for j, (i, _facts) in enumerate(probes):
            best: tuple[str, int] | None = None
            if to_index is not None:
                k = int(np.argmin(to_index[j]))
                if to_index[j, k] <= self.threshold:
                    best = (self._shas[k], int(to_index[j, k]))
            if within is not None:
                for q in keepers:
                    distance = int(within[j, q])
                    if distance <= self.threshold and (best is None or distance < best[1]):
                        best = (probes[q][1].sha256, distance)
            if best is None:
                keepers.append(j)
            results[i] = best
        for j in keepers:
            self._append(probes[j][1].sha256, arrays, j)
        return results

    def _append(self, sha256: str, arrays: HashArrays, row: int) -> None:
        if self._size == len(self._columns["center_phash"]):
            self._columns = {name: _grow(column, 2 * len(column)) for name, column in self._columns.items()}
        for name, column in self._columns.items():
            column[self._size] = getattr(arrays, name)[row]
        self._shas.append(sha256)
        self._size += 1


def _tiny(facts: ImageFacts) -> bool:
    """Tiny images are left to `curate dedupe`, which compares them within a stricter threshold."""
    return min(facts.width, facts.height) < SMALL_SIDE


def _grow(column: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.zeros((capacity, *column.shape[1:]), dtype=np.uint64)
    grown[: len(column)] = column
    return grown
