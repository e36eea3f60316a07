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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from storage.hashing import CENTER_CUT, DIHEDRAL, HASH_VERSION, ImageHashes, image_hashes, trim_box

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

# Largest combined pHash + dHash distance (of 128 bits) still called a near-duplicate. Measured on 4,096
# images made from 256 photos (bench/dedupe_eval.py): pair precision 0.9999 (3 false pairs of 28,849), recall
# 1.0 for every transform but screenshots (0.992). 20 loses brightness/screenshot recall, 24 has 7x the false
# pairs. Not on the scale of plain pHash thresholds (0..64).
DEFAULT_THRESHOLD = 22


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
    """(len(rows), n) distances from images `rows` to every image, as `distance` computes them one by one.
    plain=True: plain pHash Hamming distance instead."""
    rows = np.asarray(rows)
    if plain:
        return np.bitwise_count(arrays.phash[rows, :1] ^ arrays.phash[None, :, 0]).astype(np.int64)
    whole = (arrays.phash, arrays.dhash)
    trim = (arrays.trim_phash, arrays.trim_dhash)
    centre = (arrays.center_phash, arrays.center_dhash)

    def take(view: tuple[np.ndarray, np.ndarray], k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The rows' part of a view (k=0: their hashes as they are, not the variants)."""
        return (view[0][rows], view[1][rows]) if k is None else (view[0][rows, k], view[1][rows, k])

    def identity(view: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return view[0][:, 0], view[1][:, 0]

    pairings = (
        _pairing(take(whole), identity(whole)),  # the rows' variants against every image
        _pairing(take(whole, 0), whole),  # every image's variants against the rows
        _pairing(take(trim), identity(trim)),
        _pairing(take(trim, 0), trim),
        _pairing(take(whole), centre),  # the rows' variants against every image's centre
        _pairing(take(centre), whole),  # the rows' centres against every image's variants
    )
    return np.minimum.reduce(pairings).astype(np.int64)


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
