"""Flag near-duplicates of catalogued images as they are ingested.

The index holds the transform-aware hashes of the catalog's keepers (whole, non-duplicate images) in memory;
each new image is compared with all of them at once (storage.similarity), and one within the threshold is
recorded as a duplicate of the image it matches. Above INDEX_LIMIT images the per-image cost would slow
collectors down, so the check is skipped there and `curate dedupe` (sub-quadratic) does the grouping.
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import Connection, func, select

from storage.catalog.records import ImageFacts
from storage.catalog.schema import images
from storage.hashing import HASH_VERSION, ImageHashes
from storage.similarity import HashArrays, cross_distances

__all__ = ["INDEX_LIMIT", "NearDuplicateIndex"]

INDEX_LIMIT = 100_000
_FLUSH = 256  # new keepers gathered before they are folded into the main block

log = logging.getLogger(__name__)


class NearDuplicateIndex:
    """The catalog's keepers and their hashes; grows as new, distinct images are ingested."""

    def __init__(self, shas: list[str], arrays: HashArrays, threshold: int) -> None:
        self.threshold = threshold
        self._shas = list(shas)
        self._blocks = [arrays] if len(shas) else []
        self._pending: list[ImageHashes] = []

    @classmethod
    def load(cls, conn: Connection, threshold: int) -> NearDuplicateIndex | None:
        """The index of the catalog's keepers, or None when the catalog is too large for an ingest-time check."""
        keepers = (images.c.status == "ok") & images.c.duplicate_of.is_(None) & (images.c.hash_version == HASH_VERSION)
        count = conn.execute(select(func.count()).select_from(images).where(keepers)).scalar_one()
        if count > INDEX_LIMIT:
            log.info("catalog has %d images: near-duplicates are left to `curate dedupe`", count)
            return None
        rows = conn.execute(select(images.c.sha256, images.c.hash_variants).where(keepers)).all()
        return cls([r[0] for r in rows], HashArrays.from_blobs([r[1] for r in rows]), threshold)

    def __len__(self) -> int:
        return len(self._shas)

    def _arrays(self) -> list[HashArrays]:
        if self._pending:
            self._blocks.append(HashArrays.from_hashes(self._pending))
            self._pending = []
        if len(self._blocks) > 1 and len(self._blocks[-1]) >= _FLUSH:
            self._blocks = [HashArrays.concat(self._blocks)]
        return self._blocks

    def match(self, facts: ImageFacts) -> tuple[str, int] | None:
        """(sha256, distance) of the closest keeper within the threshold, or None."""
        if facts.hash_variants is None or not self._shas:
            return None
        probe = HashArrays.from_hashes([ImageHashes.from_blob(facts.hash_variants)])
        best: tuple[int, int] | None = None
        offset = 0
        for block in self._arrays():
            distances = cross_distances(probe, block)[0]
            k = int(np.argmin(distances))
            if distances[k] <= self.threshold and (best is None or distances[k] < best[1]):
                best = (offset + k, int(distances[k]))
            offset += len(block)
        return None if best is None else (self._shas[best[0]], best[1])

    def add(self, facts: ImageFacts) -> None:
        if facts.hash_variants is not None:
            self._shas.append(facts.sha256)
            self._pending.append(ImageHashes.from_blob(facts.hash_variants))
