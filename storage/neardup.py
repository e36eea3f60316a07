"""Near-duplicates of catalogued images, judged as they are ingested.

The index holds the transform-aware hashes of the catalog's keepers (whole, non-duplicate images) in memory;
each batch of new images is compared with all of them at once (storage.hashes.compare). A new image within the
threshold of a keeper is set aside as its duplicate only when the pixels confirm it (storage.hashes.verify);
otherwise the pair is recorded as a candidate for review and the image stays in the training set. When the new
copy is the better keeper (labelled, colour, larger... storage.keepers), it takes the old keeper's place.
Above INDEX_LIMIT images the per-image cost would slow collectors down, so the check is skipped there and
`curate dedupe` (sub-quadratic) does the grouping.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image
from sqlalchemy import Connection, func, select

from storage.catalog.records import ImageFacts
from storage.catalog.schema import images
from storage.errors import StoreError
from storage.hashes.compare import SMALL_SIDE, HashArrays, HashesLike, best_match, cross_distances
from storage.hashes.compute import HASH_VERSION, ImageHashes
from storage.hashes.verify import Box, Verdict, decode_for_verify, trim_box_for_verify, verify_pair
from storage.keepers import ImageInfo, clearly_better
from storage.stores import ObjectStore

__all__ = ["INDEX_LIMIT", "Judgement", "NearDuplicateIndex", "PixelVerifier"]

INDEX_LIMIT = 100_000
MAX_VERIFIED = 3  # closest keepers a new image is verified against

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judgement:
    """What ingest decided about one new image against the keepers."""

    duplicate_of: str | None = None  # set aside as a verified near-duplicate of this keeper
    replaces: str | None = None  # the new image is the better copy: this old keeper becomes its duplicate
    candidates: tuple[tuple[str, int, str, Verdict], ...] = ()  # (keeper, distance, matched, verdict): review


class NearDuplicateIndex:
    """The catalog's keepers, their hashes, object keys and keeper facts; grows as distinct images arrive.

    Rows live in preallocated arrays that double when full, so adding a keeper is O(1) amortised and a match
    is one vectorised comparison against a view of the filled rows.
    """

    def __init__(
        self, shas: list[str], keys: list[str], infos: list[ImageInfo], arrays: HashArrays, threshold: int
    ) -> None:
        self.threshold = threshold
        self._shas, self._keys, self._infos = list(shas), list(keys), list(infos)
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
        c = images.c
        columns = (c.sha256, c.object_key, c.width, c.height, c.size_bytes, c.format, c.mode, c.label_id)
        rows = conn.execute(select(*columns, c.added_at, c.content_pixels, c.hash_variants).where(keepers)).all()
        infos = [ImageInfo(r[0], r[2], r[3], r[4], r[5], r[6], r[7] is not None, r[8], r[9]) for r in rows]
        arrays = HashArrays.from_blobs([r[-1] for r in rows])
        return cls([r[0] for r in rows], [r[1] for r in rows], infos, arrays, threshold)

    def __len__(self) -> int:
        return self._size

    def _view(self) -> HashArrays:
        return HashArrays(**{name: column[: self._size] for name, column in self._columns.items()})

    def judge(
        self,
        batch: list[tuple[ImageFacts, str, bool]],
        verify: Callable[[str, HashesLike, str, HashesLike], Verdict],
        separated: Callable[[str, str], bool] = lambda a, b: False,
    ) -> list[Judgement]:
        """For each new image (facts, object key, labelled) in order: its judgement. Images that are not set
        aside become keepers (later images of the batch are compared with them too).

        `verify(keeper key, keeper hashes, new key, new hashes)`; `separated(a, b)`: a person said a and b are
        not duplicates. Two vectorised distance computations: the batch against the index, and within the batch
        (for the keepers it adds)."""
        results = [Judgement()] * len(batch)
        probes = [k for k, (facts, _, _) in enumerate(batch) if facts.hash_variants is not None and not _tiny(facts)]
        if not probes:
            return results
        hashes = [ImageHashes.from_blob(batch[k][0].hash_variants) for k in probes]  # type: ignore[arg-type]
        arrays = HashArrays.from_hashes(hashes)
        to_index = cross_distances(arrays, self._view()) if self._size else np.zeros((len(probes), 0), np.int64)
        within = cross_distances(arrays, arrays)
        occupant: dict[int, int] = {}  # index row -> the probe of this batch now in it (appended or replacing)
        for j, k in enumerate(probes):
            facts, key, labelled = batch[k]
            rows = [int(r) for r in np.flatnonzero(to_index[j] <= self.threshold) if int(r) not in occupant]
            near = [(int(to_index[j, r]), r) for r in rows]
            near += [(int(within[j, q]), r) for r, q in occupant.items() if within[j, q] <= self.threshold]
            size = self._size
            judgement = self._judge_one(facts, key, labelled, hashes[j], sorted(near), verify, separated)
            if self._size > size:
                occupant[self._size - 1] = j
            elif judgement.replaces is not None:
                occupant[self._shas.index(facts.sha256)] = j
            results[k] = judgement
        return results

    def _judge_one(
        self,
        facts: ImageFacts,
        key: str,
        labelled: bool,
        hashes: ImageHashes,
        near: list[tuple[int, int]],
        verify: Callable[[str, HashesLike, str, HashesLike], Verdict],
        separated: Callable[[str, str], bool],
    ) -> Judgement:
        info = ImageInfo(
            facts.sha256,
            facts.width,
            facts.height,
            facts.size_bytes,
            facts.format,
            facts.mode,
            labelled,
            content_pixels=facts.content_pixels,
        )
        candidates: list[tuple[str, int, str, Verdict]] = []
        for dist, row in near:
            if separated(self._shas[row], facts.sha256):
                continue
            if len(candidates) >= MAX_VERIFIED:
                break
            keeper_hashes = self._row(row)
            verdict = verify(self._keys[row], keeper_hashes, key, hashes)
            if verdict.verified:
                old = self._shas[row]
                if clearly_better(info, self._infos[row]):
                    self._set_row(row, facts.sha256, key, info, hashes)
                    return Judgement(replaces=old)
                return Judgement(duplicate_of=old)
            matched = best_match(keeper_hashes, hashes).describe()
            candidates.append((self._shas[row], dist, matched, verdict))
        self._append(facts.sha256, key, info, hashes)
        return Judgement(candidates=tuple(candidates))

    def _row(self, row: int) -> ImageHashes:
        return self._view().row(row)

    def _set_row(self, row: int, sha256: str, key: str, info: ImageInfo, hashes: ImageHashes) -> None:
        """Put an image in row `row` (an existing keeper's, or the next free one)."""
        single = HashArrays.from_hashes([hashes])
        for name, column in self._columns.items():
            column[row] = getattr(single, name)[0]
        if row == len(self._shas):
            self._shas.append(sha256)
            self._keys.append(key)
            self._infos.append(info)
        else:
            self._shas[row], self._keys[row], self._infos[row] = sha256, key, info

    def _append(self, sha256: str, key: str, info: ImageInfo, hashes: ImageHashes) -> None:
        if self._size == len(self._columns["center_phash"]):
            self._columns = {name: _grow(column, 2 * len(column)) for name, column in self._columns.items()}
        self._set_row(self._size, sha256, key, info, hashes)
        self._size += 1


def _tiny(facts: ImageFacts) -> bool:
    """Tiny images are left to `curate dedupe`, which compares them within a stricter threshold."""
    return min(facts.width, facts.height) < SMALL_SIDE


def _grow(column: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.zeros((capacity, *column.shape[1:]), dtype=np.uint64)
    grown[: len(column)] = column
    return grown


class PixelVerifier:
    """Verifies candidate pairs of stored images on their pixels (storage.hashes.verify), reading each object
    once: the decoded, reduced images of the last CACHE_SIZE images are kept."""

    CACHE_SIZE = 256

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._images: OrderedDict[str, tuple[Image.Image, Box]] = OrderedDict()

    def image(self, key: str) -> tuple[Image.Image, Box]:
        """The decoded image and its trim box (a keeper is verified against many copies: both are kept)."""
        cached = self._images.get(key)
        if cached is None:
            image = decode_for_verify(self.store.get(key))
            cached = self._images[key] = (image, trim_box_for_verify(image))
            if len(self._images) > self.CACHE_SIZE:
                self._images.popitem(last=False)
        else:
            self._images.move_to_end(key)
        return cached

    def verify(self, key_a: str, hashes_a: HashesLike, key_b: str, hashes_b: HashesLike) -> Verdict:
        """The verdict on a (the keeper) and b; an object that cannot be read or decoded is not verified."""
        match = best_match(hashes_a, hashes_b)
        try:
            (image_a, box_a), (image_b, box_b) = self.image(key_a), self.image(key_b)
            return verify_pair(image_a, image_b, match, box_a, box_b)
        except (OSError, StoreError, ValueError, Image.DecompressionBombError) as exc:
            return Verdict(False, 0.0, f"could not read the pixels: {exc}")
