"""Comparing stored transform-aware hashes of many images at once (numpy, no decoding).

Lives in the base layer because ingest looks for near-duplicates of catalogued images as they arrive;
curate.dedupe groups on top of it. The distance between two images is the smallest combined Hamming distance,
pHash + dHash (0..128 bits), over the 8 dihedral transforms of one image against the other as it is, for three
pairings of views: whole image with whole image, trimmed box with trimmed box (a screenshot against its
photo), and centre view with whole image (a cropped copy against its original), each both ways round. The
dHash half confirms the pHash half: with 8 variants and several views per pair, a 64-bit pHash alone meets
unrelated photos by chance too often.

A distance is only a candidate: `storage.hashes.verify` confirms a pair on the aligned pixels, using the view
and transform that `best_match` reports.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from storage.hashes.compute import DIHEDRAL, ImageHashes

__all__ = [
    "DEFAULT_THRESHOLD",
    "SMALL_SIDE",
    "SMALL_THRESHOLD",
    "VIEWS",
    "HashArrays",
    "HashesLike",
    "Match",
    "best_match",
    "cross_distances",
    "distance",
    "distance_matrix",
    "matching_pairs",
    "pair_distances",
    "pair_threshold",
    "plain_distance",
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

    def row(self, k: int) -> ImageHashes:
        """The hashes of image k, for per-pair functions such as best_match."""
        return ImageHashes(
            self.phash[k],
            self.dhash[k],
            self.trim_phash[k],
            self.trim_dhash[k],
            int(self.center_phash[k]),
            int(self.center_dhash[k]),
        )

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
        return np.asarray(np.bitwise_count(arrays.phash[rows, :1] ^ arrays.phash[None, :, 0]), dtype=np.int64)
    return cross_distances(arrays[rows], arrays)


def _combined(p_var: np.ndarray, d_var: np.ndarray, p: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Per pair: min over the 8 variants of pHash + dHash distance (p_var/d_var (m, 8), p/d (m,))."""
    return np.asarray((np.bitwise_count(p_var ^ p[:, None]) + np.bitwise_count(d_var ^ d[:, None])).min(axis=1))


def pair_distances(arrays: HashArrays, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The distance of each pair (left[k], right[k]) of images in `arrays`, vectorised."""
    a, b = arrays[left], arrays[right]
    variants = [
        _combined(a.phash, a.dhash, b.phash[:, 0], b.dhash[:, 0]),
        _combined(b.phash, b.dhash, a.phash[:, 0], a.dhash[:, 0]),
        _combined(a.trim_phash, a.trim_dhash, b.trim_phash[:, 0], b.trim_dhash[:, 0]),
        _combined(b.trim_phash, b.trim_dhash, a.trim_phash[:, 0], a.trim_dhash[:, 0]),
        _combined(a.phash, a.dhash, b.center_phash, b.center_dhash),
        _combined(b.phash, b.dhash, a.center_phash, a.center_dhash),
    ]
    return np.asarray(np.minimum.reduce(variants), dtype=np.int64)


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
    return np.asarray(np.minimum.reduce(pairings), dtype=np.int64)


# The view pairings of the distance, in the order of `pair_distances`: (view of a, view of b), the first of
# the two being the one whose dihedral variants are taken.
VIEWS: tuple[tuple[str, str], ...] = (
    ("whole", "whole"),
    ("whole", "whole"),
    ("trim", "trim"),
    ("trim", "trim"),
    ("whole", "centre"),
    ("centre", "whole"),
)


@dataclass(frozen=True)
class Match:
    """How two images a and b matched: `distance` bits, with view `view_a` of a and `view_b` of b, and
    DIHEDRAL[transform] applied to a's view (transform_of == "a") or to b's view ("b") to align them."""

    distance: int
    view_a: str
    view_b: str
    transform: int
    transform_of: str

    @property
    def transform_name(self) -> str:
        return DIHEDRAL[self.transform][0]

    def describe(self) -> str:
        """Like "mirror, trim/trim" or "identity, whole/centre"."""
        return f"{self.transform_name}, {self.view_a}/{self.view_b}"


def _variant_distances(p_var: np.ndarray, d_var: np.ndarray, p: int, d: int) -> np.ndarray:
    return np.asarray(np.bitwise_count(p_var ^ np.uint64(p)) + np.bitwise_count(d_var ^ np.uint64(d)))


def best_match(a: HashesLike, b: HashesLike) -> Match:
    """The closest pairing of views and transform of a and b (its distance is `distance(a, b)`)."""
    whole_a, whole_b = (a.phash_variants, a.dhash_variants), (b.phash_variants, b.dhash_variants)
    trim_a, trim_b = (a.trim_variants, a.trim_dhash_variants), (b.trim_variants, b.trim_dhash_variants)
    centre_a, centre_b = (a.center_phash, a.center_dhash), (b.center_phash, b.center_dhash)
    candidates = (  # (per-variant distances, index into VIEWS, the side whose variants are taken)
        (_variant_distances(*whole_a, whole_b[0][0], whole_b[1][0]), 0, "a"),
        (_variant_distances(*whole_b, whole_a[0][0], whole_a[1][0]), 1, "b"),
        (_variant_distances(*trim_a, trim_b[0][0], trim_b[1][0]), 2, "a"),
        (_variant_distances(*trim_b, trim_a[0][0], trim_a[1][0]), 3, "b"),
        (_variant_distances(*whole_a, *centre_b), 4, "a"),
        (_variant_distances(*whole_b, *centre_a), 5, "b"),
    )
    best: Match | None = None
    for distances, pairing, side in candidates:
        k = int(np.argmin(distances))
        if best is None or int(distances[k]) < best.distance:
            view_a, view_b = VIEWS[pairing]
            best = Match(int(distances[k]), view_a, view_b, k, side)
    assert best is not None
    return best


def distance(a: HashesLike, b: HashesLike) -> int:
    """The transform-aware distance between two images, 0..128 (see the module docstring)."""
    return best_match(a, b).distance


def plain_distance(a: HashesLike, b: HashesLike) -> int:
    """Plain pHash Hamming distance (imagehash-style), for comparison."""
    return int(np.bitwise_count(np.uint64(a.phash_variants[0]) ^ np.uint64(b.phash_variants[0])))


def matching_pairs(
    arrays: HashArrays, threshold: int = DEFAULT_THRESHOLD, *, chunk: int = 64
) -> Iterator[tuple[int, int, int]]:
    """Every pair (i, j, distance) with i < j and distance <= threshold, by brute force in row chunks.

    Cost grows with n²: about 8 million pairs/s on one core (4,096 images in 1 s, 20,000 in about 25 s);
    curate.dedupe uses a candidate index beyond that."""
    n = len(arrays)
    for start in range(0, n, chunk):
        tail = arrays[start:]  # only pairs i < j: the rows against themselves and what comes after them
        rows = np.arange(min(chunk, n - start))
        dist = distance_matrix(tail, rows)
        hit = (dist <= threshold) & (np.arange(len(tail))[None, :] > rows[:, None])
        for r, j in zip(*np.nonzero(hit), strict=True):
            yield start + int(r), start + int(j), int(dist[r, j])
