"""Transform-aware perceptual hashes of one image: pHash, its 8 dihedral variants, dHash, and the same after
trimming uniform borders (screenshot frames, title bars, letterboxing).

Why: a plain pHash matches resized, re-encoded, brightened, noisy and greyscale copies, but not a mirrored or
turned copy (the DCT pattern changes) nor a screenshot (the frame moves every coefficient). Both are cheap to
undo at hash time:

* Dihedral variants from one DCT. The pHash keeps the 8x8 lowest DCT-II coefficients C of a 32x32 thumbnail.
  Reversing the columns of the thumbnail multiplies column-frequency v by (-1)^v, reversing the rows does the
  same for row-frequency u, and transposing the thumbnail transposes C. So the pHash of each of the 8
  dihedral transforms of the thumbnail is a sign pattern and/or transpose of C, thresholded at its own
  median: no extra resize, no extra DCT.
* Trimming. Rows and columns at the edges that are mostly one colour (tolerating a little text in a title bar
  and JPEG noise) are peeled off on a small greyscale copy; the pHash is then taken of the remaining box. An
  image with nothing to trim gets the plain hashes back unchanged.

Everything here is pure (image in, integers out) and uses numpy and Pillow only, so ingest can call it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from storage.perceptual import HASH_INPUT_SIZE

__all__ = [
    "DIHEDRAL",
    "TRIM_WORK_SIDE",
    "ImageHashes",
    "dhash",
    "dihedral_phashes",
    "image_hashes",
    "pack_hashes",
    "trim_box",
    "unpack_hashes",
]

_N = HASH_INPUT_SIZE
_K = 8
# The same matrix (same expression, so the same floats) as storage.perceptual: variant 0 equals its pHash.
_DCT_ROWS = 2.0 * np.cos(np.pi * np.arange(_K)[:, None] * (2 * np.arange(_N)[None, :] + 1) / (2 * _N))
_ALT = (-1.0) ** np.arange(_K)
_SIGN_ROWS = _ALT[:, None] * np.ones(_K)[None, :]  # (-1)^u: the thumbnail's rows reversed (vertical flip)
_SIGN_COLS = np.ones(_K)[:, None] * _ALT[None, :]  # (-1)^v: its columns reversed (mirror)

# Names of the 8 dihedral transforms, in the order of ImageHashes.phash_variants, with the Pillow transpose
# that produces each (None: identity). "90" is Pillow's ROTATE_90, a quarter turn counter-clockwise.
DIHEDRAL: tuple[tuple[str, Image.Transpose | None], ...] = (
    ("identity", None),
    ("mirror", Image.Transpose.FLIP_LEFT_RIGHT),
    ("flip", Image.Transpose.FLIP_TOP_BOTTOM),
    ("rotate180", Image.Transpose.ROTATE_180),
    ("transpose", Image.Transpose.TRANSPOSE),
    ("rotate90", Image.Transpose.ROTATE_90),
    ("rotate270", Image.Transpose.ROTATE_270),
    ("transverse", Image.Transpose.TRANSVERSE),
)

# Trimming works on a greyscale copy whose longer side is at most this (a JPEG draft is already about that).
TRIM_WORK_SIDE = 160
_TRIM_TOLERANCE = 10  # grey levels a "uniform" pixel may differ from its line's median (JPEG noise, gradients)
_TRIM_UNIFORM_SHARE = 0.8  # share of a line's pixels that must be uniform (the rest: title text, icons)
_TRIM_MIN_KEEP = 0.2  # keep at least this share of each side; less means a blank image: do not trim
_TRIM_ROUNDS = 4


@dataclass(frozen=True, eq=False)
class ImageHashes:
    """The hashes ingest stores for one image. All hashes are unsigned 64-bit ints / uint64 arrays."""

    phash: int  # equals storage.perceptual.phash(image) (and imagehash.phash)
    dhash: int  # imagehash.dhash-compatible difference hash of the whole image
    phash_variants: np.ndarray  # (8,) uint64: pHash of each DIHEDRAL transform; [0] == phash
    trim_box: tuple[int, int, int, int]  # (left, top, right, bottom) in the given image's pixels
    phash_trim: int  # pHash of the trimmed box; == phash when nothing was trimmed
    trim_variants: np.ndarray  # (8,) uint64: dihedral variants of phash_trim

    @property
    def trimmed(self) -> bool:
        return self.phash_trim != self.phash or not np.array_equal(self.trim_variants, self.phash_variants)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageHashes):
            return NotImplemented
        return (
            self.phash == other.phash
            and self.dhash == other.dhash
            and self.trim_box == other.trim_box
            and self.phash_trim == other.phash_trim
            and np.array_equal(self.phash_variants, other.phash_variants)
            and np.array_equal(self.trim_variants, other.trim_variants)
        )

    __hash__ = None  # type: ignore[assignment]


def _low_dct(thumb: np.ndarray) -> np.ndarray:
    return _DCT_ROWS @ thumb @ _DCT_ROWS.T


def _pack_rows(bits: np.ndarray) -> np.ndarray:
    """(n, 64) bools, first column the top bit -> (n,) uint64."""
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def dihedral_phashes(low: np.ndarray) -> np.ndarray:
    """The 8 pHashes (uint64, DIHEDRAL order) of the transforms of a thumbnail whose low DCT block is `low`."""
    t = low.T
    blocks = np.stack(
        (
            low,
            low * _SIGN_COLS,  # mirror: columns reversed
            low * _SIGN_ROWS,  # flip: rows reversed
            low * _SIGN_ROWS * _SIGN_COLS,  # 180: both
            t,  # transpose
            t * _SIGN_ROWS,  # rotate 90 counter-clockwise = transpose, then rows reversed
            t * _SIGN_COLS,  # rotate 270 = transpose, then columns reversed
            t * _SIGN_ROWS * _SIGN_COLS,  # transverse
        )
    ).reshape(8, _K * _K)
    return _pack_rows(blocks > np.median(blocks, axis=1, keepdims=True))


def dhash(grey: Image.Image) -> int:
    """imagehash.dhash of a greyscale image: 9x8 thumbnail, bit set where a pixel is brighter than its left."""
    pixels = np.asarray(grey.resize((_K + 1, _K), Image.Resampling.LANCZOS), dtype=np.int16)
    return int(_pack_rows((pixels[:, 1:] > pixels[:, :-1]).reshape(1, -1))[0])


def _uniform_lines(block: np.ndarray) -> np.ndarray:
    """For each row of `block`: is it mostly one grey level?"""
    median = np.median(block, axis=1, keepdims=True)
    close = np.abs(block - median) <= _TRIM_TOLERANCE
    return close.mean(axis=1) >= _TRIM_UNIFORM_SHARE


def _run_lengths(flags: np.ndarray) -> tuple[int, int]:
    """Lengths of the leading and trailing runs of True."""
    if flags.all():
        return len(flags), 0
    lead = int(np.argmin(flags))
    trail = int(np.argmin(flags[::-1]))
    return lead, trail


def trim_box(grey: Image.Image) -> tuple[int, int, int, int]:
    """The box (left, top, right, bottom) left after peeling uniform border rows and columns off `grey`.

    Works on a copy reduced to at most TRIM_WORK_SIDE px; the box is scaled back to `grey`'s pixels. Returns
    the whole image when there is nothing to trim or when trimming would leave less than a fifth of a side.
    """
    width, height = grey.size
    factor = max(1, -(-max(width, height) // TRIM_WORK_SIDE))
    small = grey.reduce(factor) if factor > 1 else grey
    pixels = np.asarray(small, dtype=np.int16)
    h, w = pixels.shape
    top, bottom, left, right = 0, h, 0, w
    for _ in range(_TRIM_ROUNDS):
        before = (top, bottom, left, right)
        lead, trail = _run_lengths(_uniform_lines(pixels[top:bottom, left:right]))
        top, bottom = top + lead, max(top + lead, bottom - trail)
        if bottom - top < _TRIM_MIN_KEEP * h:
            return 0, 0, width, height
        lead, trail = _run_lengths(_uniform_lines(pixels[top:bottom, left:right].T))
        left, right = left + lead, max(left + lead, right - trail)
        if right - left < _TRIM_MIN_KEEP * w:
            return 0, 0, width, height
        if (top, bottom, left, right) == before:
            break
    if (top, bottom, left, right) == (0, h, 0, w):
        return 0, 0, width, height
    sx, sy = width / w, height / h
    return (
        round(left * sx),
        round(top * sy),
        min(width, round(right * sx)),
        min(height, round(bottom * sy)),
    )


def image_hashes(image: Image.Image) -> ImageHashes:
    """All hashes of `image` (any mode; for a JPEG, the draft-decoded image ingest already has)."""
    grey = image.convert("L")
    thumb = np.asarray(grey.resize((_N, _N), Image.Resampling.LANCZOS), dtype=np.float64)
    variants = dihedral_phashes(_low_dct(thumb))
    box = trim_box(grey)
    if box == (0, 0, grey.width, grey.height):
        trim_variants = variants
    else:
        trimmed = np.asarray(grey.crop(box).resize((_N, _N), Image.Resampling.LANCZOS), dtype=np.float64)
        trim_variants = dihedral_phashes(_low_dct(trimmed))
    variants.flags.writeable = False
    trim_variants.flags.writeable = False
    return ImageHashes(
        phash=int(variants[0]),
        dhash=dhash(grey),
        phash_variants=variants,
        trim_box=box,
        phash_trim=int(trim_variants[0]),
        trim_variants=trim_variants,
    )


def pack_hashes(values: np.ndarray) -> bytes:
    """uint64 hashes -> big-endian bytes (8 per hash), for a catalog BLOB column."""
    return np.asarray(values, dtype=np.uint64).astype(">u8").tobytes()


def unpack_hashes(blob: bytes) -> np.ndarray:
    """The inverse of pack_hashes."""
    return np.frombuffer(blob, dtype=">u8").astype(np.uint64)
