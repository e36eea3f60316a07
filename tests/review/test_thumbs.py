"""Thumbnails and browser-safe originals: pure functions over image bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from curate.review.thumbs import THUMB_SIDE, browser_image, make_thumbnail, thumb_key


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_thumbnail_is_a_small_upright_jpeg_on_white() -> None:
    transparent = Image.new("RGBA", (960, 480), (0, 0, 0, 0))
    thumb = Image.open(io.BytesIO(make_thumbnail(encoded(transparent, "PNG"))))
    assert thumb.format == "JPEG" and thumb.size == (THUMB_SIDE, THUMB_SIDE // 2)
    assert min(thumb.getpixel((10, 10))) > 240  # transparency became white, not black
    rotated = Image.new("RGB", (400, 200), "red")
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    rotated.save(buffer, "JPEG", exif=exif)
    assert Image.open(io.BytesIO(make_thumbnail(buffer.getvalue()))).size == (160, THUMB_SIDE)


def test_originals_browsers_cannot_show_become_png() -> None:
    tiff = encoded(Image.new("RGB", (50, 40), "blue"), "TIFF")
    data, media_type = browser_image(tiff, "tiff")
    assert media_type == "image/png" and Image.open(io.BytesIO(data)).size == (50, 40)
    jpeg = encoded(Image.new("RGB", (50, 40), "blue"), "JPEG")
    assert browser_image(jpeg, "jpg") == (jpeg, "image/jpeg")


def test_thumb_keys_come_from_digests_only() -> None:
    sha = "ab" + "0" * 62
    assert thumb_key(sha) == f"thumbs/ab/{sha}.jpg"
    for bad in ("../../etc/passwd", "AB" + "0" * 62, "ab"):
        with pytest.raises(ValueError):
            thumb_key(bad)
