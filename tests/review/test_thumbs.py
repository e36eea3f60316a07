"""Thumbnails and browser-safe originals: pure functions over image bytes, and the bounded decoding pool."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from curate.review.thumbs import THUMB_SIDE, Thumbnails, browser_image, make_thumbnail, thumb_key
from storage.keys import image_key
from storage.stores.local import LocalStore
from tests.hostile import tiny_bomb_webp


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


def test_thumbnails_are_made_in_a_bounded_pool(tmp_path: Path) -> None:
    """Issue 16, item 8: every request decoded at once (three large WebPs took the server from 1.9 to 4.1 GB);
    a stored bomb is refused by the decode budget (a 415 in the app), not decoded."""
    store = LocalStore(tmp_path / "store")
    shas = []
    for i in range(8):  # noisy 1000x1000 PNGs: each decode takes long enough to overlap with the others
        buffer = io.BytesIO()
        Image.effect_noise((1000, 1000), 40 + i).convert("RGB").save(buffer, "PNG", compress_level=1)
        data = buffer.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        store.put(image_key(sha, "png"), data)
        shas.append(sha)
    thumbs = Thumbnails(store, decoders=2)
    try:
        with ThreadPoolExecutor(8) as requests:
            made = list(requests.map(lambda sha: thumbs.get(sha, "png"), shas))
        assert all(Image.open(io.BytesIO(data)).size == (THUMB_SIDE, THUMB_SIDE) for data in made)
        assert thumbs.peak_decodes == 2  # eight requests at once, two decodes at a time
        bomb = tiny_bomb_webp()
        sha = hashlib.sha256(bomb).hexdigest()
        store.put(image_key(sha, "webp"), bomb)
        with pytest.raises(ValueError, match="times their size"):
            thumbs.get(sha, "webp")
    finally:
        thumbs.close()
