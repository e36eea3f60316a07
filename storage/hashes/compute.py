"""Transform-aware perceptual hashes of one image, for near-duplicate matching that survives mirroring,
flips, quarter turns, screenshots and small crops, besides what plain pHash survives (resizing, re-encoding,
brightness, noise, greyscale).

Why each part exists (measured by bench/dedupe_eval.py):

* Dihedral variants from one DCT. pHash keeps the 8x8 lowest DCT-II coefficients C of a 32x32 greyscale
  thumbnail. Reversing the thumbnail's columns multiplies column frequency v by (-1)^v, reversing its rows
  does the same for row frequency u, and transposing the thumbnail transposes C. So the pHash of each of the
  8 dihedral transforms (mirror, flip, quarter turns...) is a sign pattern and/or transpose of C, thresholded
  at its own median: no extra resize, no extra DCT. The same goes for dHash on an 8x9 grid.
* dHash next to pHash. With 8 variants (and several views) per pair, a 64-bit pHash alone meets unrelated
  photos by chance too often; matching on pHash + dHash distance (128 bits) keeps precision high.
* Trimming. Rows and columns at the edges that are uniform, plus a thin band of title text or buttons between
  them, are peeled off a small greyscale copy, and the hashes are taken again of what is left: a screenshot of
  a photo then hashes like the photo. An image with nothing to trim gets its whole-image hashes back.
* The centre view (5% cut off every side) matches copies cropped by about 2-8% per side.

Pure functions (image in, integers out), numpy and Pillow only, so ingest can call them; comparison lives in
storage.hashes.compare.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from storage.hashes.perceptual import HASH_INPUT_SIZE

__all__ = [
    "CENTER_CUT",
    "DIHEDRAL",
    "HASH_VERSION",
    "ImageHashes",
    "dihedral_dhashes",
    "dihedral_phashes",
    "image_hashes",
    "is_framed",
    "trim_box",
]

# Bump when any hash below changes: stored hashes of an older version must be recomputed before comparing.
HASH_VERSION = 1

_N = HASH_INPUT_SIZE
_K = 8
# The same matrix (same expression, so the same floats) as storage.hashes.perceptual: variant 0 equals its pHash.
_DCT_ROWS = 2.0 * np.cos(np.pi * np.arange(_K)[:, None] * (2 * np.arange(_N)[None, :] + 1) / (2 * _N))
_ALT = (-1.0) ** np.arange(_K)
_SIGN_ROWS = np.repeat(_ALT[:, None], _K, axis=1)  # (-1)^u: the thumbnail's rows reversed (vertical flip)
_SIGN_COLS = _SIGN_ROWS.T  # (-1)^v: its columns reversed (mirror)

# The 8 dihedral transforms in the order of every variants array, with the Pillow transpose that makes each
# (None: the image as is). Pillow's ROTATE_90 turns a quarter counter-clockwise.
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

CENTER_CUT = 0.05  # the centre view cuts this share off every side

# Trimming and the trimmed and centre views work on a greyscale copy whose longer side is at most this.
_WORK_SIDE = 160
_TRIM_TOLERANCE = 6  # grey levels a pixel of a uniform line may differ from the line's median (JPEG noise)
_TRIM_STRICT_SHARE = 0.95  # a uniform line: at least this share of its pixels within tolerance
_TRIM_MAX_BAND = 0.08  # a title bar's band of text or buttons: at most this share of the side...
_TRIM_BAND_SHARE = 0.25  # ...each of its lines at least this much of one plain colour
_TRIM_MIN_KEEP = 0.2  # trimming must keep this share of each side, else the image is blank: do not trim
_TRIM_ROUNDS = 4
_VARIANT_FIELDS = ("phash_variants", "dhash_variants", "trim_variants", "trim_dhash_variants")


@dataclass(frozen=True, eq=False)
class ImageHashes:
    """What ingest stores for one image. Hashes are unsigned 64-bit; variant arrays are (8,) uint64 in
    DIHEDRAL order, index 0 the image as it is.

    Three views: the whole image, its trimmed box (the whole image when nothing was trimmed; then the trim
    arrays are the whole-image arrays) and its centre (CENTER_CUT off every side; no variants are needed for
    it, the other image's whole-image variants cover the transforms).
    """

    phash_variants: np.ndarray  # [0] == storage.hashes.perceptual.phash(image) == imagehash.phash
    dhash_variants: np.ndarray  # dHash from the same thumbnail (8x9 box grid), not imagehash.dhash
    trim_variants: np.ndarray
    trim_dhash_variants: np.ndarray
    center_phash: int
    center_dhash: int
    trim_box: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) in the hashed image's pixels

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
        """Does the trimmed view hash differently from the whole image?"""
        return not (
            np.array_equal(self.trim_variants, self.phash_variants)
            and np.array_equal(self.trim_dhash_variants, self.dhash_variants)
        )

    def to_blob(self) -> bytes:
        """The hashes as little-endian uint64s for one catalog column: 8 pHash variants, 8 dHash variants,
        centre pHash, centre dHash, then (only when trimmed) 8 trimmed pHash and 8 trimmed dHash variants.
        18 or 34 values, 144 or 272 bytes. The trim box is not included."""
        parts = [self.phash_variants, self.dhash_variants, np.array([self.center_phash, self.center_dhash], np.uint64)]
        if self.trimmed:
            parts += [self.trim_variants, self.trim_dhash_variants]
        return np.concatenate(parts).astype("<u8").tobytes()

    @classmethod
    def from_blob(cls, blob: bytes) -> ImageHashes:
        values = np.frombuffer(blob, dtype="<u8").astype(np.uint64)
        if len(values) not in (18, 34):
            raise ValueError(f"a hash blob holds 18 or 34 uint64 values, not {len(values)}")
        phashes, dhashes = values[0:8], values[8:16]
        trim = (values[18:26], values[26:34]) if len(values) == 34 else (phashes, dhashes)
        _frozen(phashes, dhashes, *trim)
        return cls(phashes, dhashes, trim[0], trim[1], int(values[16]), int(values[17]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageHashes):
            return NotImplemented
        return (
            (self.center_phash, self.center_dhash, self.trim_box)
            == (other.center_phash, other.center_dhash, other.trim_box)
        ) and all(np.array_equal(getattr(self, name), getattr(other, name)) for name in _VARIANT_FIELDS)

    __hash__ = None  # type: ignore[assignment]


def _frozen(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.flags.writeable = False


def _pack_rows(bits: np.ndarray) -> np.ndarray:
    """(n, 64) bools, first column the top bit -> (n,) uint64."""
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def _low_dct(thumb: np.ndarray) -> np.ndarray:
    return np.asarray(_DCT_ROWS @ thumb @ _DCT_ROWS.T)


def dihedral_phashes(thumb: np.ndarray) -> np.ndarray:
    """The 8 pHashes (uint64, DIHEDRAL order) of the transforms of a 32x32 greyscale thumbnail (float)."""
    low = _low_dct(thumb)
    t = low.T
    blocks = np.stack(
        (
            low,
            low * _SIGN_COLS,  # mirror: columns reversed
            low * _SIGN_ROWS,  # flip: rows reversed
            low * _SIGN_ROWS * _SIGN_COLS,  # 180°: both
            t,  # transpose
            t * _SIGN_ROWS,  # 90° counter-clockwise: transpose, then rows reversed
            t * _SIGN_COLS,  # 270°: transpose, then columns reversed
            t * _SIGN_ROWS * _SIGN_COLS,  # transverse
        )
    ).reshape(8, _K * _K)
    return _pack_rows(blocks > np.median(blocks, axis=1, keepdims=True))


def _phash(thumb: np.ndarray) -> int:
    """The pHash of the thumbnail as it is (dihedral_phashes(thumb)[0], without the other seven)."""
    low = _low_dct(thumb).reshape(1, -1)
    return int(_pack_rows(low > np.median(low))[0])


def _box_matrix(out: int, size: int) -> np.ndarray:
    """(out, size) area-averaging weights from `size` samples to `out`, unnormalised: whole numbers (every
    row sums to `size`), so grids of the integer thumbnail are exact and ties stay ties under any transform.
    Symmetric under reversal, so the grid of a flipped thumbnail is exactly the flipped grid."""
    edges = np.arange(out + 1) * size  # output cell edges, in units of 1/out pixel
    pixel = np.arange(size + 1) * out  # pixel edges, same units
    overlap = np.minimum(edges[1:, None], pixel[None, 1:]) - np.maximum(edges[:-1, None], pixel[None, :-1])
    return np.asarray(np.clip(overlap, 0, None), dtype=np.float64)


_BOX8 = _box_matrix(_K, _N)
_BOX9 = _box_matrix(_K + 1, _N)


def dihedral_dhashes(thumb: np.ndarray) -> np.ndarray:
    """The 8 dHashes (uint64, DIHEDRAL order) of the transforms of a 32x32 thumbnail: each transform's grid of
    8 rows x 9 columns, a bit set where a cell is brighter than the cell on its left."""
    wide = _BOX8 @ thumb @ _BOX9.T  # 8 rows x 9 columns
    tall = (_BOX9 @ thumb @ _BOX8.T).T  # the transposed thumbnail's 8 x 9 grid
    grids = np.stack(
        (wide, wide[:, ::-1], wide[::-1], wide[::-1, ::-1], tall, tall[::-1], tall[:, ::-1], tall[::-1, ::-1])
    )
    return _pack_rows((grids[:, :, 1:] > grids[:, :, :-1]).reshape(8, _K * _K))


def _dhash(thumb: np.ndarray) -> int:
    """dihedral_dhashes(thumb)[0], without the other seven."""
    wide = _BOX8 @ thumb @ _BOX9.T
    return int(_pack_rows((wide[:, 1:] > wide[:, :-1]).reshape(1, -1))[0])


def _line_stats(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `block`: its median grey level and whether (almost) all its pixels are within tolerance."""
    median = np.median(block, axis=1)
    share = (np.abs(block - median[:, None]) <= _TRIM_TOLERANCE).mean(axis=1)
    return median, share >= _TRIM_STRICT_SHARE


def _border_run(block: np.ndarray, median: np.ndarray, uniform: np.ndarray) -> int:
    """How many rows from the top of `block` are border.

    Uniform rows are border. So is a thin band of other rows (title text, window buttons) between uniform rows
    when the uniform rows on both sides have the same colour (text on a title bar), or when each of the band's
    rows is at least partly of one plain colour (its own median, or the colour of the uniform row above or
    below it: a title bar too thin at this size to show plain rows around its text).
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
        if abs(median[end] - median[i - 1]) > _TRIM_TOLERANCE:
            band = block[i:end]
            colours = np.stack((np.full(end - i, median[i - 1]), np.full(end - i, median[end]), median[i:end]), 1)
            share = (np.abs(band[:, None, :] - colours[:, :, None]) <= _TRIM_TOLERANCE).mean(axis=2).max(axis=1)
            if share.min() < _TRIM_BAND_SHARE:
                return i
        i = end
    return rows


def _run_lengths(block: np.ndarray) -> tuple[int, int]:
    """Border rows at the top and at the bottom of `block`."""
    if not _line_stats(block[[0, -1]])[1].any():
        return 0, 0  # the common case, a photo: neither edge line is uniform
    median, uniform = _line_stats(block)
    lead = _border_run(block, median, uniform)
    if lead >= len(uniform):
        return lead, 0
    trail = _border_run(block[lead:][::-1], median[lead:][::-1], uniform[lead:][::-1])
    return lead, trail


def _work_copy(grey: Image.Image, side: int = _WORK_SIDE) -> Image.Image:
    """`grey` box-reduced by an integer factor to at most `side` px (a JPEG draft usually is already)."""
    factor = -(-max(grey.size) // side)
    return grey.reduce(factor) if factor > 1 else grey


def _trim(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box (left, top, right, bottom) of `pixels` left after peeling border lines; None: nothing to trim,
    or trimming would leave less than _TRIM_MIN_KEEP of a side (a blank image)."""
    h, w = pixels.shape
    top, bottom, left, right = 0, h, 0, w
    for _ in range(_TRIM_ROUNDS):
        before = (top, bottom, left, right)
        lead, trail = _run_lengths(pixels[top:bottom, left:right])
        top, bottom = top + lead, max(top + lead, bottom - trail)
        if bottom - top < _TRIM_MIN_KEEP * h:
            return None
        lead, trail = _run_lengths(pixels[top:bottom, left:right].T)
        left, right = left + lead, max(left + lead, right - trail)
        if right - left < _TRIM_MIN_KEEP * w:
            return None
        if (top, bottom, left, right) == before:
            break
    return None if (top, bottom, left, right) == (0, h, 0, w) else (left, top, right, bottom)


def _scale_box(box: tuple[int, int, int, int], small: Image.Image, grey: Image.Image) -> tuple[int, int, int, int]:
    sx, sy = grey.width / small.width, grey.height / small.height
    left, top, right, bottom = box
    return round(left * sx), round(top * sy), min(grey.width, round(right * sx)), min(grey.height, round(bottom * sy))


def trim_box(grey: Image.Image, work_side: int = _WORK_SIDE) -> tuple[int, int, int, int]:
    """The box (left, top, right, bottom) of `grey` left after peeling off uniform border rows and columns
    and title bars: the photo inside a screenshot. The whole image when there is nothing to trim.

    Found on a copy of at most `work_side` px, so to within a pixel of that copy (hashing needs no more;
    verifying pixels asks for a finer box)."""
    small = _work_copy(grey, work_side)
    box = _trim(np.asarray(small, dtype=np.int16))
    return (0, 0, grey.width, grey.height) if box is None else _scale_box(box, small, grey)


def is_framed(box: tuple[int, int, int, int] | None, size: tuple[int, int]) -> bool:
    """Does a trim box cut three or four sides of an image of `size`: content inside margins or a window (a
    screenshot, a product on a page)? One or two trimmed sides are usually content: a plain sky, a wall."""
    if box is None:
        return False
    left, top, right, bottom = box
    width, height = size
    margin_x, margin_y = 0.01 * width, 0.01 * height
    return sum((left > margin_x, top > margin_y, width - right > margin_x, height - bottom > margin_y)) >= 3


def _thumbnail(image: Image.Image, box: tuple[int, int, int, int] | None, resample: Image.Resampling) -> np.ndarray:
    region = image if box is None else image.crop(box)
    return np.asarray(region.resize((_N, _N), resample), dtype=np.float64)


def image_hashes(image: Image.Image) -> ImageHashes:
    """All hashes of `image` (any mode; for a JPEG, the draft-decoded image ingest already has)."""
    grey = image.convert("L")
    # The whole image exactly as storage.hashes.perceptual hashes it (LANCZOS from full size): phash_variants[0] is
    # the stored pHash bit for bit. The other views come from a copy of at most _WORK_SIDE px, which is what
    # a JPEG draft gives anyway and keeps large PNG screenshots cheap.
    thumb = _thumbnail(grey, None, Image.Resampling.LANCZOS)
    phashes, dhashes = dihedral_phashes(thumb), dihedral_dhashes(thumb)
    small = _work_copy(grey)
    box = _trim(np.asarray(small, dtype=np.int16))
    if box is None:
        trim_p, trim_d = phashes, dhashes
        full_box = (0, 0, grey.width, grey.height)
    else:
        trimmed = _thumbnail(small, box, Image.Resampling.LANCZOS)
        trim_p, trim_d = dihedral_phashes(trimmed), dihedral_dhashes(trimmed)
        full_box = _scale_box(box, small, grey)
    # The centre view is compared with other images' whole-image hashes; BILINEAR is cheaper than LANCZOS and
    # measured as good for it.
    cx, cy = round(small.width * CENTER_CUT), round(small.height * CENTER_CUT)
    centre = _thumbnail(small, (cx, cy, small.width - cx, small.height - cy), Image.Resampling.BILINEAR)
    _frozen(phashes, dhashes, trim_p, trim_d)
    return ImageHashes(
        phash_variants=phashes,
        dhash_variants=dhashes,
        trim_variants=trim_p,
        trim_dhash_variants=trim_d,
        center_phash=_phash(centre),
        center_dhash=_dhash(centre),
        trim_box=full_box,
    )
