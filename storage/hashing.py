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
    "dihedral_dhashes",
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
_TRIM_TOLERANCE = 6  # grey levels a "uniform" pixel may differ from its line's median (JPEG noise)
_TRIM_STRICT_SHARE = 0.95  # a border line: (almost) all its pixels within tolerance
_TRIM_MAX_BAND = 0.08  # a title bar's text band: at most this share of the side
_TRIM_BAND_SHARE = 0.25  # ...and each of its lines still shows this much of the bar's colour
_TRIM_MIN_KEEP = 0.2  # keep at least this share of each side; less means a blank image: do not trim
_TRIM_ROUNDS = 4


@dataclass(frozen=True, eq=False)
class ImageHashes:
    """The hashes ingest stores for one image: (8,) uint64 arrays in DIHEDRAL order, index 0 the image as is.

    Three views of the image: the whole image, its trimmed box (`trim_box`; the whole image when nothing was
    trimmed) and its centre (5% cut off every side, for matching cropped copies).
    """

    phash_variants: np.ndarray  # pHash of each dihedral transform; [0] == storage.perceptual.phash(image)
    dhash_variants: np.ndarray  # dHash of each transform (confirmation)
    trim_box: tuple[int, int, int, int]  # (left, top, right, bottom) in the given image's pixels
    trim_variants: np.ndarray
    trim_dhash_variants: np.ndarray
    center_variants: np.ndarray
    center_dhash_variants: np.ndarray

    @property
    def phash(self) -> int:
        return int(self.phash_variants[0])

    @property
    def dhash(self) -> int:
        return int(self.dhash_variants[0])

    @property
    def phash_trim(self) -> int:
        return int(self.trim_variants[0])

    @property
    def trimmed(self) -> bool:
        return not np.array_equal(self.trim_variants, self.phash_variants)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageHashes):
            return NotImplemented
        return self.trim_box == other.trim_box and all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in (
                "phash_variants",
                "dhash_variants",
                "trim_variants",
                "trim_dhash_variants",
                "center_variants",
                "center_dhash_variants",
            )
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


def _box_matrix(out: int, size: int) -> np.ndarray:
    """(out, size) area-averaging weights: resampling `size` samples to `out`, symmetric under reversal."""
    edges = np.arange(out + 1) * size / out
    lo, hi = edges[:-1, None], edges[1:, None]
    pixel = np.arange(size)[None, :]
    overlap = np.clip(np.minimum(hi, pixel + 1) - np.maximum(lo, pixel), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


_BOX8 = _box_matrix(_K, _N)
_BOX9 = _box_matrix(_K + 1, _N)


def dihedral_dhashes(thumb: np.ndarray) -> np.ndarray:
    """The 8 dHashes (uint64, DIHEDRAL order) of the transforms of a 32x32 thumbnail: each transform's 8 rows
    x 9 columns grid, bit set where a cell is brighter than the cell on its left."""
    wide = _BOX8 @ thumb @ _BOX9.T  # 8 rows x 9 columns
    tall = (_BOX9 @ thumb @ _BOX8.T).T  # the transposed image's 8 x 9 grid
    grids = np.stack(
        (wide, wide[:, ::-1], wide[::-1], wide[::-1, ::-1], tall, tall[::-1], tall[:, ::-1], tall[::-1, ::-1])
    )
    return _pack_rows((grids[:, :, 1:] > grids[:, :, :-1]).reshape(8, _K * _K))


def _line_stats(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `block`: its median grey level and whether (almost) all its pixels are within tolerance."""
    median = np.median(block, axis=1)
    share = (np.abs(block - median[:, None]) <= _TRIM_TOLERANCE).mean(axis=1)
    return median, share >= _TRIM_STRICT_SHARE


def _border_run(block: np.ndarray, median: np.ndarray, uniform: np.ndarray) -> int:
    """How many rows from the top of `block` are border.

    Uniform rows are border. So is a thin band of other rows (title text, window buttons) between uniform rows
    when each of its rows is at least partly of one plain colour (its own median, or the colour of the uniform
    row above or below it): the inside of a title bar or a toolbar.
    """
    rows = len(uniform)
    max_band = max(2, round(_TRIM_MAX_BAND * rows))
    i = 0
    while i < rows:
        if uniform[i]:
            i += 1
            continue
        if i == 0:
            return 0
        following = np.flatnonzero(uniform[i + 1 : i + 1 + max_band])
        if not len(following):
            return i
        end = i + 1 + int(following[0])
        band = block[i:end]
        colours = np.stack((np.full(end - i, median[i - 1]), np.full(end - i, median[end]), median[i:end]), axis=1)
        share = (np.abs(band[:, None, :] - colours[:, :, None]) <= _TRIM_TOLERANCE).mean(axis=2).max(axis=1)
        if share.min() < _TRIM_BAND_SHARE:
            return i
        i = end
    return rows


def _run_lengths(block: np.ndarray) -> tuple[int, int]:
    """Border rows at the top and at the bottom of `block`."""
    median, uniform = _line_stats(block)
    lead = _border_run(block, median, uniform)
    if lead >= len(uniform):
        return lead, 0
    trail = _border_run(block[lead:][::-1], median[lead:][::-1], uniform[lead:][::-1])
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
        lead, trail = _run_lengths(pixels[top:bottom, left:right])
        top, bottom = top + lead, max(top + lead, bottom - trail)
        if bottom - top < _TRIM_MIN_KEEP * h:
            return 0, 0, width, height
        lead, trail = _run_lengths(pixels[top:bottom, left:right].T)
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


_CENTER_CUT = 0.05


def _view(grey: Image.Image, box: tuple[int, int, int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """pHash and dHash variants of `grey` (or of its `box`)."""
    region = grey if box is None else grey.crop(box)
    thumb = np.asarray(region.resize((_N, _N), Image.Resampling.LANCZOS), dtype=np.float64)
    return dihedral_phashes(_low_dct(thumb)), dihedral_dhashes(thumb)


def _frozen(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.flags.writeable = False


def image_hashes(image: Image.Image) -> ImageHashes:
    """All hashes of `image` (any mode; for a JPEG, the draft-decoded image ingest already has)."""
    grey = image.convert("L")
    width, height = grey.size
    phashes, dhashes = _view(grey, None)
    box = trim_box(grey)
    if box == (0, 0, width, height):
        trim_p, trim_d = phashes, dhashes
    else:
        trim_p, trim_d = _view(grey, box)
    cx, cy = round(width * _CENTER_CUT), round(height * _CENTER_CUT)
    center_p, center_d = _view(grey, (cx, cy, width - cx, height - cy))
    _frozen(phashes, dhashes, trim_p, trim_d, center_p, center_d)
    return ImageHashes(
        phash_variants=phashes,
        dhash_variants=dhashes,
        trim_box=box,
        trim_variants=trim_p,
        trim_dhash_variants=trim_d,
        center_variants=center_p,
        center_dhash_variants=center_d,
    )


def pack_hashes(values: np.ndarray) -> bytes:
    """uint64 hashes -> big-endian bytes (8 per hash), for a catalog BLOB column."""
    return np.asarray(values, dtype=np.uint64).astype(">u8").tobytes()


def unpack_hashes(blob: bytes) -> np.ndarray:
    """The inverse of pack_hashes."""
    return np.frombuffer(blob, dtype=">u8").astype(np.uint64)
