"""Comparing stored hashes: near-duplicate matching that survives mirroring, flips, quarter turns, screenshots
and small crops, besides what plain pHash survives.

The distance between two images is the smallest combined Hamming distance, pHash + dHash (0..128 bits), over
the 8 dihedral transforms of one image against the other as it is, for three pairings of views: whole image
with whole image, trimmed box with trimmed box (a screenshot against its photo), and centre view with whole
image (a cropped copy against its original), each both ways round. The dHash half confirms the pHash half:
with 8 variants and several views per pair, a 64-bit pHash alone meets unrelated photos by chance too often.
DEFAULT_THRESHOLD is chosen by bench/dedupe_eval.py (precision >= 0.99 with high recall for every transform).

The hashes are computed at ingest by storage.hashing; its public names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from storage.hashing import CENTER_CUT, DIHEDRAL, HASH_VERSION, ImageHashes, image_hashes, trim_box
from storage.similarity import DEFAULT_THRESHOLD, HashArrays, HashesLike, distance_matrix

__all__ = [
    "CENTER_CUT",
    "DEFAULT_THRESHOLD",
    "DIHEDRAL",
    "HASH_VERSION",
    "HashArrays",
    "HashesLike",
    "ImageHashes",
    "distance",
    "distance_matrix",
    "hamming",
    "image_hashes",
    "match",
    "matching_pairs",
    "plain_distance",
    "trim_box",
    "variant_distance",
]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def variant_distance(a_variants: np.ndarray, b_hash: int) -> int:
    """Smallest Hamming distance between `b_hash` and any dihedral variant of image a (pHash or dHash)."""
    return int(np.bitwise_count(np.asarray(a_variants, dtype=np.uint64) ^ np.uint64(b_hash)).min())


def _combined(a_p: np.ndarray, a_d: np.ndarray, b_p: int, b_d: int) -> int:
    """min over the variants k of a: pHash distance + dHash distance to b, under the same transform k."""
    return int((np.bitwise_count(a_p ^ np.uint64(b_p)) + np.bitwise_count(a_d ^ np.uint64(b_d))).min())


def distance(a: HashesLike, b: HashesLike) -> int:
    """The transform-aware distance between two images, 0..128 (see the module docstring)."""
    return min(
        _combined(a.phash_variants, a.dhash_variants, b.phash_variants[0], b.dhash_variants[0]),
        _combined(b.phash_variants, b.dhash_variants, a.phash_variants[0], a.dhash_variants[0]),
        _combined(a.trim_variants, a.trim_dhash_variants, b.trim_variants[0], b.trim_dhash_variants[0]),
        _combined(b.trim_variants, b.trim_dhash_variants, a.trim_variants[0], a.trim_dhash_variants[0]),
        _combined(a.phash_variants, a.dhash_variants, b.center_phash, b.center_dhash),
        _combined(b.phash_variants, b.dhash_variants, a.center_phash, a.center_dhash),
    )


def match(a: HashesLike, b: HashesLike, threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Are a and b near-duplicates (one possibly resized, re-encoded, recoloured, mirrored, flipped, turned,
    slightly cropped or shown in a screenshot)?"""
    return distance(a, b) <= threshold


def plain_distance(a: HashesLike, b: HashesLike) -> int:
    """Plain pHash Hamming distance (imagehash-style), for comparison."""
    return hamming(int(a.phash_variants[0]), int(b.phash_variants[0]))


def matching_pairs(
    arrays: HashArrays, threshold: int = DEFAULT_THRESHOLD, *, chunk: int = 64
) -> Iterator[tuple[int, int, int]]:
    """Every pair (i, j, distance) with i < j and distance <= threshold, by brute force in row chunks.

    Cost grows with n²: about 8 million pairs/s on one core (4,096 images in 1 s, 20,000 in about 25 s);
    far beyond that a candidate index (multi-index hashing on the variants) is the next step."""
    n = len(arrays)
    for start in range(0, n, chunk):
        tail = arrays[start:]  # only pairs i < j: the rows against themselves and what comes after them
        rows = np.arange(min(chunk, n - start))
        dist = distance_matrix(tail, rows)
        hit = (dist <= threshold) & (np.arange(len(tail))[None, :] > rows[:, None])
        for r, j in zip(*np.nonzero(hit), strict=True):
            yield start + int(r), start + int(j), int(dist[r, j])
