"""Comparing stored transform-aware hashes of many images at once (numpy, no decoding).

Lives in the base layer because ingest flags near-duplicates of images already in the catalog as they arrive;
curate.hashing builds its per-pair functions and curate.dedupe its grouping on top of it. The distance between
two images is the smallest combined Hamming distance, pHash + dHash (0..128 bits), over the 8 dihedral
transforms of one image against the other, for three pairings of views (whole/whole, trimmed/trimmed,
centre/whole), each both ways round (see curate.hashing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from storage.hashing import DIHEDRAL, ImageHashes

__all__ = [
    "DEFAULT_THRESHOLD",
    "SMALL_SIDE",
    "SMALL_THRESHOLD",
    "HashArrays",
    "HashesLike",
    "cross_distances",
    "distance_matrix",
    "pair_distances",
    "pair_threshold",
]

# Largest combined pHash + dHash distance (of 128 bits) still called a near-duplicate. Measured on 4,096
# images made from 256 photos (bench/dedupe_eval.py): pair precision 0.9999 (3 false pairs of 28,849), recall
# 1.0 for every transform but screenshots (0.992). 20 loses brightness/screenshot recall, 24 has 7x the false
# pairs. Not on the scale of plain pHash thresholds (0..64).
DEFAULT_THRESHOLD = 22

# Tiny images (icons, 28 px Fashion-MNIST photos) carry too little detail for the transform-aware threshold:
# on 2,000 Fashion-MNIST images, 22 chained 1,613 of them into near-duplicate groups. A pair with an image whose
# shorter side is under SMALL_SIDE counts only within SMALL_THRESHOLD (there: 23 duplicates in 17 groups).
SMALL_SIDE = 64
SMALL_THRESHOLD = 8


def pair_threshold(side_a: int, side_b: int, threshold: int = DEFAULT_THRESHOLD) -> int:
    """The threshold for a pair of images with these shorter sides."""
    return min(threshold, SMALL_THRESHOLD) if min(side_a, side_b) < SMALL_SIDE else threshold


class HashesLike(Protocol):
    """What matching needs of an image: an ImageHashes, or the same values read back from the catalog."""

    @property
    def phash_variants(self) -> np.ndarray: ...
    @property
    def dhash_variants(self) -> np.ndarray: ...
    @property
    def trim_variants(self) -> np.ndarray: ...
    @property
    def trim_dhash_variants(self) -> np.ndarray: ...
    @property
    def center_phash(self) -> int: ...
    @property
    def center_dhash(self) -> int: ...


@dataclass(frozen=True)
class HashArrays:
    """The hashes of n images as columns, for comparing many at once."""

    phash: np.ndarray  # (n, 8) uint64: whole-image pHash variants
    dhash: np.ndarray  # (n, 8)
    trim_phash: np.ndarray  # (n, 8)
    trim_dhash: np.ndarray  # (n, 8)
    center_phash: np.ndarray  # (n,)
    center_dhash: np.ndarray  # (n,)

    def __len__(self) -> int:
        return len(self.center_phash)

    def __getitem__(self, index: slice | np.ndarray) -> HashArrays:
        """The hashes of a subset of the images (a slice gives views, no copies)."""
        return HashArrays(*(getattr(self, f.name)[index] for f in fields(self)))

    @classmethod
    def from_hashes(cls, hashes: Sequence[HashesLike]) -> HashArrays:
        def column(name: str) -> np.ndarray:
            return np.array([getattr(h, name) for h in hashes], dtype=np.uint64).reshape(len(hashes), 8)

        return cls(
            phash=column("phash_variants"),
            dhash=column("dhash_variants"),
            trim_phash=column("trim_variants"),
            trim_dhash=column("trim_dhash_variants"),
            center_phash=np.array([h.center_phash for h in hashes], dtype=np.uint64),
            center_dhash=np.array([h.center_dhash for h in hashes], dtype=np.uint64),
        )

    @classmethod
    def concat(cls, parts: Sequence[HashArrays]) -> HashArrays:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    @classmethod
    def from_blobs(cls, blobs: Sequence[bytes]) -> HashArrays:
        """From the catalog's hash blobs (ImageHashes.to_blob)."""
        return cls.from_hashes([ImageHashes.from_blob(blob) for blob in blobs])


def _pairing(left: tuple[np.ndarray, np.ndarray], right: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(r, n) min over the 8 variants of the combined pHash + dHash distance between r left and n right images.
    Each side is (pHashes, dHashes); exactly one side holds (m, 8) variants, the other (m,) hashes."""
    (lp, ld), (rp, rd) = left, right
    shape = (len(lp), len(rp))
    xor, count, other = np.empty(shape, np.uint64), np.empty(shape, np.uint8), np.empty(shape, np.uint8)
    best = np.full(shape, 255, np.uint8)
    for k in range(len(DIHEDRAL)):
        pl, dl = (lp[:, k], ld[:, k]) if lp.ndim == 2 else (lp, ld)
        pr, dr = (rp[:, k], rd[:, k]) if rp.ndim == 2 else (rp, rd)
        np.bitwise_count(np.bitwise_xor(pl[:, None], pr[None, :], out=xor), out=count)
        np.bitwise_count(np.bitwise_xor(dl[:, None], dr[None, :], out=xor), out=other)
        np.minimum(best, np.add(count, other, out=count), out=best)
    return best


def distance_matrix(arrays: HashArrays, rows: np.ndarray, *, plain: bool = False) -> np.ndarray:
    """(len(rows), n) distances from images `rows` to every image in `arrays`.
    plain=True: plain pHash Hamming distance instead."""
    rows = np.asarray(rows)
    if plain:
        return np.bitwise_count(arrays.phash[rows, :1] ^ arrays.phash[None, :, 0]).astype(np.int64)
    return cross_distances(arrays[rows], arrays)


def _combined(p_var: np.ndarray, d_var: np.ndarray, p: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Per pair: min over the 8 variants of pHash + dHash distance (p_var/d_var (m, 8), p/d (m,))."""
    return (np.bitwise_count(p_var ^ p[:, None]) + np.bitwise_count(d_var ^ d[:, None])).min(axis=1)


def pair_distances(arrays: HashArrays, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The distance of each pair (left[k], right[k]) of images in `arrays`, vectorised."""
    a, b = arrays[left], arrays[right]
    return np.minimum.reduce(
        [
            _combined(a.phash, a.dhash, b.phash[:, 0], b.dhash[:, 0]),
            _combined(b.phash, b.dhash, a.phash[:, 0], a.dhash[:, 0]),
            _combined(a.trim_phash, a.trim_dhash, b.trim_phash[:, 0], b.trim_dhash[:, 0]),
            _combined(b.trim_phash, b.trim_dhash, a.trim_phash[:, 0], a.trim_dhash[:, 0]),
            _combined(a.phash, a.dhash, b.center_phash, b.center_dhash),
            _combined(b.phash, b.dhash, a.center_phash, a.center_dhash),
        ]
    ).astype(np.int64)


def cross_distances(a: HashArrays, b: HashArrays) -> np.ndarray:
    """(len(a), len(b)) distances between every image of `a` and every image of `b`."""

    def identity(view: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return view[0][:, 0], view[1][:, 0]

    a_whole, b_whole = (a.phash, a.dhash), (b.phash, b.dhash)
    a_trim, b_trim = (a.trim_phash, a.trim_dhash), (b.trim_phash, b.trim_dhash)
    pairings = (
        _pairing(a_whole, identity(b_whole)),
        _pairing(identity(a_whole), b_whole),
        _pairing(a_trim, identity(b_trim)),
        _pairing(identity(a_trim), b_trim),
        _pairing(a_whole, (b.center_phash, b.center_dhash)),
        _pairing((a.center_phash, a.center_dhash), b_whole),
    )
    return np.minimum.reduce(pairings).astype(np.int64)
