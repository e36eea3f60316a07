"""Flag near-duplicates of catalogued images as they are ingested.

The index holds the transform-aware hashes of the catalog's keepers (whole, non-duplicate images) in memory;
each new image is compared with all of them at once (storage.similarity), and one within the threshold is
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
from storage.hashing import HASH_VERSION, ImageHashes
from storage.similarity import SMALL_SIDE, HashArrays, cross_distances

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

    def match(self, facts: ImageFacts) -> tuple[str, int] | None:
        """(sha256, distance) of the closest keeper within the threshold, or None."""
        if facts.hash_variants is None or not self._size or _tiny(facts):
            return None
        probe = HashArrays.from_hashes([ImageHashes.from_blob(facts.hash_variants)])
        distances = cross_distances(probe, self._view())[0]
        k = int(np.argmin(distances))
        return (self._shas[k], int(distances[k])) if distances[k] <= self.threshold else None

    def add(self, facts: ImageFacts) -> None:
        if facts.hash_variants is None or _tiny(facts):
            return
        row = HashArrays.from_hashes([ImageHashes.from_blob(facts.hash_variants)])
        if self._size == len(self._columns["center_phash"]):
            self._columns = {name: _grow(column, 2 * len(column)) for name, column in self._columns.items()}
        for name, column in self._columns.items():
            column[self._size] = getattr(row, name)[0]
        self._shas.append(facts.sha256)
        self._size += 1


def _tiny(facts: ImageFacts) -> bool:
    """Tiny images are left to `curate dedupe`, which compares them within a stricter threshold."""
    return min(facts.width, facts.height) < SMALL_SIDE


def _grow(column: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.zeros((capacity, *column.shape[1:]), dtype=np.uint64)
    grown[: len(column)] = column
    return grown
