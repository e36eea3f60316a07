"""storage.images.open_image, the one rule for decoding: upright (EXIF orientation), drafted, alpha on white.

Every consumer (ingest hashing, `curate dedupe`'s rehash, `curate check`, review thumbnails, reports, training)
must see a sideways-stored photo the way a viewer shows it. The files are real JPEGs and PNGs made by Pillow with
an EXIF Orientation tag.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from curate.check import measure_object
from curate.report_html import thumbnail_data_uri
from curate.review.thumbs import make_thumbnail
from storage.hashes.compute import image_hashes
from storage.images import ORIENTATION_TAG, open_image, orientation, upright_size
from storage.imaging import analyze
from storage.stores.local import LocalStore
from train.data import decode_image


def marked(width: int = 120, height: int = 60) -> Image.Image:
    """Blue with a red block in the top-left corner: where the block ends up tells the orientation."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 3, height // 3))
    return image


def saved(image: Image.Image, fmt: str, orientation_value: int | None = None) -> bytes:
    buffer = io.BytesIO()
    if orientation_value is None:
        image.save(buffer, fmt)
    else:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation_value
        image.save(buffer, fmt, exif=exif)
    return buffer.getvalue()


def sideways(fmt: str = "JPEG") -> bytes:
    """The upright `marked()` image stored turned 90° anticlockwise, with Orientation 6 ("turn 90° clockwise
    to display"), as a phone camera writes it."""
    return saved(marked().transpose(Image.Transpose.ROTATE_90), fmt, 6)


def is_red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 200 and pixel[2] < 60


def test_exif_orientation_is_applied_like_a_viewer() -> None:
    data = sideways()
    raw = Image.open(io.BytesIO(data))
    assert raw.size == (60, 120) and orientation(raw) == 6 and upright_size(raw) == (120, 60)
    image = open_image(data, mode="RGB")
    assert image.size == (120, 60)
    assert is_red(image.getpixel((5, 5))) and not is_red(image.getpixel((114, 54)))
    assert orientation(image) == 1  # the tag is consumed: nothing turns it twice
    for value, size in ((1, (60, 120)), (3, (60, 120)), (8, (120, 60))):
        assert open_image(saved(marked().transpose(Image.Transpose.ROTATE_90), "JPEG", value)).size == size


def test_jpeg_draft_keeps_at_least_the_asked_size() -> None:
    data = saved(marked(1600, 1200), "JPEG")
    drafted = open_image(data, size=200)
    assert min(drafted.size) >= 200 and drafted.size[0] < 1600
    assert open_image(data).size == (1600, 1200)
    assert open_image(saved(marked(1600, 1200), "PNG"), size=200).size == (1600, 1200)  # no draft for PNG


def test_transparency_goes_onto_white_when_a_plain_mode_is_asked() -> None:
    hidden_black = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    assert open_image(saved(hidden_black, "PNG"), mode="RGB").getpixel((3, 3)) == (255, 255, 255)
    assert open_image(saved(hidden_black, "PNG"), mode="L").getpixel((3, 3)) == 255
    assert open_image(saved(hidden_black, "PNG")).mode == "RGBA"  # no mode asked: alpha kept (hashing's input)
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 0] * 256)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    assert open_image(buffer.getvalue(), mode="RGB").getpixel((3, 3)) == (255, 255, 255)


def test_sixteen_bit_greys_are_scaled_not_clipped() -> None:
    deep = Image.fromarray(np.full((10, 10), 1000, np.uint16)).convert("I;16")
    deep.putpixel((0, 0), 4000)
    image = open_image(saved(deep, "PNG"), mode="L")
    assert image.getpixel((0, 0)) == 255 and 60 <= image.getpixel((5, 5)) <= 66


def test_ingest_hashes_what_the_viewer_shows() -> None:
    """A sideways PNG with Orientation 6 hashes exactly like the upright PNG (lossless: same pixels)."""
    upright_png = saved(marked(), "PNG")
    turned_png = sideways("PNG")
    upright_facts, turned_facts = analyze(upright_png), analyze(turned_png)
    assert (turned_facts.phash, turned_facts.dhash, turned_facts.phash_trim) == (
        upright_facts.phash,
        upright_facts.dhash,
        upright_facts.phash_trim,
    )
    assert turned_facts.hash_variants == upright_facts.hash_variants
    assert (turned_facts.width, turned_facts.height) == (60, 120)  # the stored file's own size
    assert turned_facts.phash == image_hashes(open_image(upright_png)).phash


def test_every_consumer_sees_the_photo_upright(tmp_path: Path) -> None:
    data = sideways()
    thumb = Image.open(io.BytesIO(make_thumbnail(data)))
    assert thumb.size[0] > thumb.size[1] and is_red(thumb.getpixel((3, 3)))
    report = thumbnail_data_uri(data)
    inlined = Image.open(io.BytesIO(base64.b64decode(report.split(",", 1)[1])))
    assert inlined.size[0] > inlined.size[1] and is_red(inlined.getpixel((3, 3)))
    array = decode_image(data, 60, 3)  # training: shorter side to 60, centre square of the upright image
    assert array.shape == (3, 60, 60)
    upright_array = decode_image(saved(marked(), "JPEG"), 60, 3)
    assert np.abs(array.astype(int) - upright_array.astype(int)).mean() < 8
    store = LocalStore(tmp_path)
    store.put("images/aa/x.jpg", data)
    turned = measure_object(store, ("x", "images/aa/x.jpg", 60, 120))
    straight_key = "images/aa/y.jpg"
    store.put(straight_key, saved(marked(), "JPEG"))
    straight = measure_object(store, ("y", straight_key, 60, 120))
    assert abs(turned.entropy - straight.entropy) < 0.2
