"""A 64-bit perceptual hash (pHash), bit-compatible with imagehash.phash, without scipy.

The 2-D DCT-II of a 32x32 greyscale thumbnail is two small matrix products; only the 8x8 lowest
frequencies are needed, so we multiply by the first 8 rows of the DCT matrix directly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["HASH_INPUT_SIZE", "hamming", "phash", "phash_hex"]

HASH_INPUT_SIZE = 32
_N = HASH_INPUT_SIZE
_K = 8
# scipy.fftpack.dct type II, unnormalised: y[k] = 2 * sum_n x[n] cos(pi * k * (2n + 1) / (2N))
_DCT_ROWS = 2.0 * np.cos(np.pi * np.arange(_K)[:, None] * (2 * np.arange(_N)[None, :] + 1) / (2 * _N))
_BIT_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def phash(image: Image.Image) -> int:
    """The pHash of an image as an unsigned 64-bit int (first DCT coefficient is the top bit)."""
    grey = image.convert("L").resize((_N, _N), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    low = _DCT_ROWS @ pixels @ _DCT_ROWS.T
    bits = (low > np.median(low)).ravel()
    return int(np.bitwise_or.reduce(_BIT_WEIGHTS[bits], initial=np.uint64(0)))


def phash_hex(value: int) -> str:
    return f"{value:016x}"


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
