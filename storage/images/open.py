"""`open_image`: the one way Gleaner decodes image bytes — for hashing, quality checks, review thumbnails,
reports and training — so that all of them see the same pixels.

The rule, chosen once: an image is what a viewer shows.
- **EXIF orientation is applied everywhere.** A phone photo stored sideways with Orientation 6 is hashed,
  measured, shown and trained on upright. (Before, only review thumbnails turned it, so a reviewer saw an upright
  photo while hashing and training saw it on its side.)
- **Transparency is composited onto white**, as a page shows it, instead of exposing whatever colour the
  transparent pixels hide (often black) — but only when a mode without alpha is asked for.
- **JPEGs decode in draft mode** (DCT scaling by 1/2, 1/4 or 1/8) when a target size is given: the result is
  never smaller than that size on either side, and much cheaper to decode than the full image.
- **Nothing is decoded beyond the decode budget** (`check_budget`), which replaces Pillow's fixed
  89,478,485-pixel limit (switched off here) with the workspace's own `[ingest] max_pixels`: at most that many
  pixels a frame; at most DECODE_BUDGET_FACTOR bytes per allowed pixel decoded for one item, all the frames a
  check decodes counted (a 9000-px GIF canvas of 300 frames is 97 GB); no more than MAX_EXPANSION decoded bytes
  per file byte once an image decodes to more than EXPANSION_FLOOR (a 38-byte WebP that decodes to 324 MB);
  and at most MAX_JPEG_SCANS scans in a JPEG (each progressive scan is a full pass over the image: 2,000 of
  them took 12 s to decode).
"""

from __future__ import annotations

import io
import re
from typing import Final

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "DECODE_BUDGET_FACTOR",
    "DEFAULT_MAX_PIXELS",
    "EXPANSION_FLOOR",
    "MAX_EXPANSION",
    "MAX_JPEG_SCANS",
    "ORIENTATION_TAG",
    "DecodeBudgetExceeded",
    "check_budget",
    "decoded_bytes",
    "flatten_alpha",
    "frames_decoded",
    "jpeg_scans",
    "open_image",
    "orientation",
    "upright",
    "upright_size",
]

DEFAULT_MAX_PIXELS: Final = 178_956_970  # [ingest] max_pixels' default (Pillow's hard limit, 2x its warning)
DECODE_BUDGET_FACTOR: Final = 8  # bytes decoded per allowed pixel: one RGBA frame at the limit fits twice
MAX_EXPANSION: Final = 4096  # decoded bytes per file byte; deflate (PNG, TIFF) cannot pass about 1,400
EXPANSION_FLOOR: Final = 64 << 20  # the expansion check applies above this many decoded bytes
MAX_JPEG_SCANS: Final = 100  # encoders write 1 (baseline) to about 10-20 (progressive, mozjpeg) scans
_SEQUENTIAL_FRAMES: Final = frozenset({"GIF", "PNG", "WEBP"})  # seeking to frame k decodes frames 0..k
_ONE_BYTE_MODES: Final = frozenset({"1", "L", "P"})
_MARKER: Final = re.compile(rb"\xff+(?=[^\x00\xff])")  # a marker after entropy-coded data (0xFF00 is a byte)

Image.MAX_IMAGE_PIXELS = None  # check_budget applies the workspace's limit instead of Pillow's fixed one


class DecodeBudgetExceeded(Image.DecompressionBombError, ValueError):
    """The image would cost more to decode than the decode budget allows (a decompression bomb)."""


def _bytes_per_pixel(mode: str) -> int:
    """Bytes a pixel takes in Pillow's memory: 1 for 1-bit, grey and palette images, 2 for 16-bit greys, else 4
    (Pillow keeps RGB in four bytes too)."""
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode.startswith("I;16") else 4


def decoded_bytes(image: Image.Image, frames: int = 1) -> int:
    """The bytes decoding `frames` frames of `image` produces (frames after the first are RGB/RGBA canvases)."""
    width, height = image.size
    first = width * height * _bytes_per_pixel(image.mode)
    return first + width * height * 4 * max(0, frames - 1)


def jpeg_scans(data: bytes | memoryview, *, stop_after: int | None = None) -> int:
    """The number of scans (SOS segments) in JPEG data, all its pictures counted (an MPO holds several);
    counting stops early past `stop_after`. Truncated or damaged data counts what it has."""
    view = bytes(data)
    count, pos, end = 0, 2, len(view)
    while pos + 1 < end:
        if view[pos] != 0xFF:
            found = _MARKER.search(view, pos)
            if found is None:
                break
            pos = found.end()
            continue
        while pos < end and view[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = view[pos]
        pos += 1
        if marker in (0xD8, 0xD9, 0x01) or 0xD0 <= marker <= 0xD7:  # SOI, EOI, TEM, RSTn: no length
            continue
        if pos + 2 > end:
            break
        length = int.from_bytes(view[pos : pos + 2], "big")
        if marker == 0xDA:
            count += 1
            if stop_after is not None and count > stop_after:
                return count
            found = _MARKER.search(view, pos + length)  # the scan's entropy-coded data runs to the next marker
            if found is None:
                break
            pos = found.start()
            continue
        pos += length
    return count


def _megabytes(value: int) -> str:
    return f"{value / 1e6:,.0f} MB" if value >= 10_000_000 else f"{value / 1e6:,.1f} MB"


def check_budget(
    image: Image.Image,
    data: bytes | memoryview | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    frames: int = 1,
) -> None:
    """Raise DecodeBudgetExceeded unless decoding `frames` frames of `image` (opened, not yet loaded) fits the
    decode budget; `data`, the file's bytes, adds the expansion and JPEG scan checks."""
    width, height = image.size
    if width * height > max_pixels:
        raise DecodeBudgetExceeded(f"{width}x{height} is {width * height:,} pixels, over the {max_pixels:,} limit")
    cost, budget = decoded_bytes(image, frames), DECODE_BUDGET_FACTOR * max_pixels
    if cost > budget:
        raise DecodeBudgetExceeded(
            f"{frames} frames of {width}x{height} decode to {_megabytes(cost)}, over the {_megabytes(budget)} "
            f"budget for one image ({DECODE_BUDGET_FACTOR} bytes per pixel of max_pixels)"
        )
    if data is None:
        return
    size = len(data)
    if image.mode == "1":  # 1-bit images (fax TIFFs, bilevel PNGs) are held as a byte a pixel: count their bits
        cost //= 8
    if cost > EXPANSION_FLOOR and cost > size * MAX_EXPANSION:
        raise DecodeBudgetExceeded(
            f"{size:,} bytes decode to {_megabytes(cost)} ({cost // max(size, 1):,} times their size; at most "
            f"{MAX_EXPANSION:,} above {_megabytes(EXPANSION_FLOOR)})"
        )
    if image.format in _DRAFT_FORMATS and image.info.get("progressive"):  # sequential JPEGs stop at their scans
        # 0xFF 0xDA never occurs inside entropy-coded data (a 0xFF there is stuffed or a restart marker), so the
        # count of that pair bounds the scans from above at C speed; only a file over the cap is walked exactly
        # (an EXIF thumbnail's own scans also hold the pair).
        scans = bytes(data).count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            scans = jpeg_scans(data, stop_after=MAX_JPEG_SCANS)
        if scans > MAX_JPEG_SCANS:
            raise DecodeBudgetExceeded(f"a JPEG with over {MAX_JPEG_SCANS} scans (progressive passes)")


def frames_decoded(image: Image.Image, checked: int) -> int:
    """How many frames decoding the first and the last of up to `checked` frames costs: all of those before
    the last for formats that decode frames in sequence (GIF, APNG, animated WebP), else two."""
    frames = int(getattr(image, "n_frames", 1) or 1)
    if frames <= 1:
        return 1
    return min(frames, checked) if image.format in _SEQUENTIAL_FRAMES else 2


ORIENTATION_TAG: Final = 0x0112  # EXIF Orientation: 1 upright, 2-8 mirrored and/or turned
_DRAFT_FORMATS: Final = frozenset({"JPEG", "MPO"})
_ALPHA_MODES: Final = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_TURNED: Final = frozenset({5, 6, 7, 8})  # orientations that swap width and height
_DEEP_MODES: Final = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_EIGHT_BIT_MODES: Final = frozenset({"L", "RGB", "RGBA", "LA", "1", "P"})


def orientation(image: Image.Image) -> int:
    """The image's EXIF orientation (1 when it has none or an invalid one)."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block must not make a decodable image unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(image: Image.Image) -> Image.Image:
    """`image` as a viewer shows it: EXIF orientation applied (the image itself when it needs no turn)."""
    if orientation(image) == 1:
        return image
    turned = ImageOps.exif_transpose(image)
    return turned if turned is not None else image


def upright_size(image: Image.Image) -> tuple[int, int]:
    """The size a viewer shows, without decoding: width and height swap for turned orientations."""
    width, height = image.size
    return (height, width) if orientation(image) in _TURNED else (width, height)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def flatten_alpha(image: Image.Image) -> Image.Image:
    """RGB on white for images with transparency (palette transparency too); others unchanged."""
    if not _has_alpha(image):
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _eight_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit greys scaled to 8 bits by their maximum (Pillow's own conversion clips them to white)."""
    array = np.asarray(image, dtype=np.float64)
    top = float(array.max()) if array.size else 0.0
    return Image.fromarray(np.clip(array * (255.0 / (top or 1.0)), 0, 255).astype(np.uint8), "L")


def open_image(
    data: bytes | Image.Image,
    *,
    size: int | None = None,
    mode: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode `data` upright, loaded, and (with `mode`) converted.

    - `size`: a JPEG is drafted so that both sides stay at least `size` px (other formats decode in full);
    - `mode`: the mode wanted ("L", "RGB", ...); a mode without alpha gets transparency composited onto white,
      and an 8-bit mode gets 16- or 32-bit greys scaled by their maximum. None keeps the decoded mode (alpha
      included), as hashing and ingest's facts want it.

    Bytes are checked against the decode budget (`check_budget`, with `max_pixels`) before anything is decoded:
    DecodeBudgetExceeded, a DecompressionBombError and a ValueError, says why not. An already-open Image is
    accepted (ingest has one from validation, checked by `storage.imaging.analyze`): drafting applies only
    while it is not loaded yet. Errors from Pillow propagate: callers decide what an unreadable image means.
    """
    image: Image.Image
    if isinstance(data, bytes | bytearray | memoryview):
        image = Image.open(io.BytesIO(data))
        check_budget(image, data, max_pixels=max_pixels)
    else:
        image = data
    if size is not None and image.format in _DRAFT_FORMATS:
        draft_mode = "L" if (mode == "L" or (mode is None and image.mode == "L")) else "RGB"
        image.draft(draft_mode, (size, size))
    image.load()
    image = upright(image)
    if mode is None or image.mode == mode:
        return image
    if "A" not in mode and mode != "P":
        image = flatten_alpha(image)
    if image.mode in _DEEP_MODES and mode in _EIGHT_BIT_MODES:
        image = _eight_bit(image)
    return image if image.mode == mode else image.convert(mode)
