"""Comparing stored perceptual hashes: flip/turn-aware and screenshot-aware near-duplicate matching.

The hashes themselves are computed at ingest (storage.hashing, re-exported here). Two images match when the
smallest Hamming distance between one image's pHash and any of the 8 dihedral variants of the other's is at
most the threshold, either on the whole images or on their trimmed boxes (screenshot frames removed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from storage.hashing import DIHEDRAL, ImageHashes, image_hashes, pack_hashes, trim_box, unpack_hashes

__all__ = [
    "DEFAULT_THRESHOLD",
    "DIHEDRAL",
    "HashArrays",
    "HashesLike",
    "ImageHashes",
    "distance",
    "image_hashes",
    "match",
    "match_matrix",
    "pack_hashes",
    "stack_hashes",
    "trim_box",
    "unpack_hashes",
    "variant_distance",
]

DEFAULT_THRESHOLD = 10


class HashesLike(Protocol):
    """What matching needs of an image: ImageHashes, or the same values read from the catalog."""

    phash: int
    phash_variants: np.ndarray
    phash_trim: int
    trim_variants: np.ndarray


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x)


def variant_distance(a_variants: np.ndarray, b_hash: int) -> int:
    """Smallest Hamming distance between `b_hash` and any dihedral variant of image a."""
    return int(_popcount(np.asarray(a_variants, dtype=np.uint64) ^ np.uint64(b_hash)).min())


def distance(a: HashesLike, b: HashesLike) -> int:
    """The transform-aware distance: min over whole and trimmed hashes, both directions, all 8 variants."""
    return min(
        variant_distance(a.phash_variants, b.phash),
        variant_distance(b.phash_variants, a.phash),
        variant_distance(a.trim_variants, b.phash_trim),
        variant_distance(b.trim_variants, a.phash_trim),
    )


def match(a: HashesLike, b: HashesLike, threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Are a and b near-duplicates (one possibly mirrored, flipped, turned or framed as a screenshot)?"""
    return distance(a, b) <= threshold


@dataclass(frozen=True)
class HashArrays:
    """Hashes of n images as columns, for matching many at once."""

    phash: np.ndarray  # (n,) uint64
    dhash: np.ndarray  # (n,) uint64
    variants: np.ndarray  # (n, 8) uint64
    trim: np.ndarray  # (n,) uint64
    trim_variants: np.ndarray  # (n, 8) uint64

    def __len__(self) -> int:
        return len(self.phash)


def stack_hashes(hashes: Sequence[ImageHashes]) -> HashArrays:
    return HashArrays(
        phash=np.array([h.phash for h in hashes], dtype=np.uint64),
        dhash=np.array([h.dhash for h in hashes], dtype=np.uint64),
        variants=np.array([h.phash_variants for h in hashes], dtype=np.uint64).reshape(-1, 8),
        trim=np.array([h.phash_trim for h in hashes], dtype=np.uint64),
        trim_variants=np.array([h.trim_variants for h in hashes], dtype=np.uint64).reshape(-1, 8),
    )


def _variant_matrix(variants: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """(r, 8) variants x (n,) hashes -> (r, n) min distance over the variants."""
    return _popcount(variants[:, None, :] ^ hashes[None, :, None]).min(axis=2)


def match_matrix(arrays: HashArrays, rows: np.ndarray, *, plain: bool = False) -> np.ndarray:
    """Distances (len(rows), n) from images `rows` to every image; plain=True: plain pHash Hamming distance."""
    rows = np.asarray(rows)
    if plain:
        return _popcount(arrays.phash[rows][:, None] ^ arrays.phash[None, :]).astype(np.int64)
    whole = np.minimum(
        _variant_matrix(arrays.variants[rows], arrays.phash),
        _variant_matrix(arrays.variants, arrays.phash[rows]).T,
    )
    trimmed = np.minimum(
        _variant_matrix(arrays.trim_variants[rows], arrays.trim),
        _variant_matrix(arrays.trim_variants, arrays.trim[rows]).T,
    )
    return np.minimum(whole, trimmed).astype(np.int64)
