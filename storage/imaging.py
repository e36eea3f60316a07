"""Validate image bytes and extract their facts. Pure: bytes in, ImageFacts (or Rejected) out.

Validation decodes every byte of the image data with Pillow. For JPEG the decoder runs in draft mode
(DCT scaling to the hash size), which still entropy-decodes the whole file, so truncation and corrupt
data are caught at a fraction of the cost of a full-size decode. Before any of it, the image must fit the decode
budget (storage.images.check_budget with `max_pixels`, every frame the check decodes counted): a bomb is refused
by its header, not found out by decoding it. The hashes are of the image as a viewer shows it
(storage.images.open_image: EXIF orientation applied); width and height are the stored file's.
"""

from __future__ import annotations

import hashlib
import io
import warnings

from PIL import Image, UnidentifiedImageError

from storage.catalog.records import ImageFacts
from storage.hashes.compute import HASH_VERSION, image_hashes, is_framed
from storage.hashes.perceptual import HASH_INPUT_SIZE
from storage.images.open import DEFAULT_MAX_PIXELS, check_budget, frames_decoded, open_image, upright_size
from storage.pngcheck import png_data_complete

__all__ = ["ALLOWED_FORMATS", "Rejected", "analyze"]

# Pillow format name -> object key extension. Raster formats a classifier pipeline can read.
ALLOWED_FORMATS: dict[str, str] = {
    "JPEG": "jpg",
    "MPO": "jpg",  # multi-picture JPEG from cameras; the first frame is a plain JPEG
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tiff",
    "PPM": "ppm",
}
_NETPBM_EXT = {b"P1": "pbm", b"P4": "pbm", b"P2": "pgm", b"P5": "pgm", b"P3": "ppm", b"P6": "ppm"}
MAX_FRAMES_CHECKED = 200


class Rejected(Exception):
    """The bytes are not an acceptable image; the message is the reason shown to the user."""


def _sniff_non_raster(head: bytes) -> str | None:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG is a vector format, not a raster image"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML document, not an image"
    if text.startswith(b"%pdf"):
        return "PDF document, not an image"
    if text.startswith((b"<", b"{", b"[")):
        return "markup or JSON text, not an image"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text file, not an image"


def analyze(data: bytes, *, min_side: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFacts:
    """Decode and validate `data`; raise Rejected with a reason, else return its facts."""
    if not data:
        raise Rejected("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            return _facts(image, data, min_side=min_side, max_pixels=max_pixels)
    except Rejected:
        raise
    except UnidentifiedImageError:
        raise Rejected(_sniff_non_raster(data[:1024]) or "not a recognised raster image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Rejected(f"decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        raise Rejected(f"corrupt or truncated image: {exc}") from None


def _facts(image: Image.Image, data: bytes, *, min_side: int, max_pixels: int) -> ImageFacts:
    fmt = image.format or ""
    if fmt not in ALLOWED_FORMATS:
        raise Rejected(f"{fmt or 'unknown'} images are not accepted (allowed: {', '.join(sorted(ALLOWED_FORMATS))})")
    width, height = image.size
    check_budget(image, data, max_pixels=max_pixels, frames=frames_decoded(image, MAX_FRAMES_CHECKED))
    if min(width, height) < min_side:
        raise Rejected(f"too small: {width}x{height}, minimum side is {min_side} px")
    mode = image.mode
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        # Decode the last frame too: a truncated animation still has an intact first frame.
        image.seek(min(frames, MAX_FRAMES_CHECKED) - 1)
        image.load()
        image.seek(0)
    shown = upright_size(image)
    image = open_image(image, size=2 * HASH_INPUT_SIZE)  # JPEG draft to the hash size, loaded, upright
    if fmt == "PNG" and png_data_complete(data) is False:
        raise Rejected("corrupt or truncated image: PNG data holds fewer rows than its header declares")
    hashes = image_hashes(image)  # hashes.phash is storage.hashes.perceptual.phash(image), bit for bit
    ext = _NETPBM_EXT.get(data[:2], "ppm") if fmt == "PPM" else ALLOWED_FORMATS[fmt]
    return ImageFacts(
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        ext=ext,
        size_bytes=len(data),
        width=width,
        height=height,
        mode=mode,
        phash=hashes.phash,
        dhash=hashes.dhash,
        phash_trim=hashes.phash_trim,
        hash_variants=hashes.to_blob(),
        hash_version=HASH_VERSION,
        content_pixels=_content_pixels(hashes.trim_box, image.size, shown),
    )


def _content_pixels(box: tuple[int, int, int, int] | None, hashed: tuple[int, int], full: tuple[int, int]) -> int:
    """The pixels inside a frame (storage.hashes.compute.is_framed: margins on three or four sides), scaled from
    the (draft-decoded, upright) hashed image to the image's own upright size; all of them when the image is not
    framed."""
    if not is_framed(box, hashed):
        return full[0] * full[1]
    assert box is not None
    left, top, right, bottom = box
    return round((right - left) * (bottom - top) * (full[0] / hashed[0]) * (full[1] / hashed[1]))
