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
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
from PIL import Image, ImageOps

__all__ = ["ORIENTATION_TAG", "flatten_alpha", "open_image", "orientation", "upright", "upright_size"]

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
) -> Image.Image:
    """Decode `data` upright, loaded, and (with `mode`) converted.

    - `size`: a JPEG is drafted so that both sides stay at least `size` px (other formats decode in full);
    - `mode`: the mode wanted ("L", "RGB", ...); a mode without alpha gets transparency composited onto white,
      and an 8-bit mode gets 16- or 32-bit greys scaled by their maximum. None keeps the decoded mode (alpha
      included), as hashing and ingest's facts want it.

    An already-open Image is accepted (ingest has one from validation): drafting applies only while it is not
    loaded yet. Errors from Pillow propagate: callers decide what an unreadable image means to them.
    """
    image = Image.open(io.BytesIO(data)) if isinstance(data, bytes | bytearray | memoryview) else data
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
