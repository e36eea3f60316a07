"""Transform-aware hashes: pHash compatibility, dihedral variants, trimming of screenshot frames, matching."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from storage.hashes.compare import (
    DEFAULT_THRESHOLD,
    HashArrays,
    distance,
    distance_matrix,
    matching_pairs,
)
from storage.hashes.compute import DIHEDRAL, ImageHashes, dihedral_dhashes, dihedral_phashes, image_hashes, trim_box
from storage.hashes.perceptual import HASH_INPUT_SIZE, hamming, phash


def match(a: ImageHashes, b: ImageHashes) -> bool:
    return distance(a, b) <= DEFAULT_THRESHOLD


def variant_distance(variants: np.ndarray, other: int) -> int:
    """Smallest Hamming distance between `other` and any of the dihedral variants."""
    return int(np.bitwise_count(np.asarray(variants, dtype=np.uint64) ^ np.uint64(other)).min())


# numpy versions of the DIHEDRAL transforms, on a (rows, columns) array
NUMPY_DIHEDRAL = (
    lambda a: a,
    np.fliplr,
    np.flipud,
    lambda a: np.rot90(a, 2),
    lambda a: a.T,
    np.rot90,  # counter-clockwise, like Pillow's ROTATE_90
    lambda a: np.rot90(a, -1),
    lambda a: np.rot90(a, 2).T,
)


def decoded(path: Path) -> Image.Image:
    """The image as ingest hashes it: a JPEG draft-decoded to about 64 px (storage.imaging)."""
    image = Image.open(path)
    image.draft("L" if image.mode == "L" else "RGB", (2 * HASH_INPUT_SIZE, 2 * HASH_INPUT_SIZE))
    image.load()
    return image


def png_roundtrip(image: Image.Image) -> Image.Image:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return Image.open(io.BytesIO(out.getvalue()))


def screenshot(photo: Image.Image, *, side: int, top: int, bar: int = 30) -> tuple[Image.Image, tuple[int, ...]]:
    """`photo` in an app window: grey frame, title bar with a title and three buttons, white margins.
    Returns the screenshot and the photo's box in it."""
    frame = 2
    width, height = photo.width + 2 * (side + frame), photo.height + 2 * (top + frame) + bar
    canvas = Image.new("RGB", (width, height), (170, 170, 170))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((frame, frame, width - frame - 1, frame + bar - 1), fill=(228, 228, 228))
    draw.rectangle((frame, frame + bar, width - frame - 1, height - frame - 1), fill=(250, 250, 250))
    font = ImageFont.load_default(size=13)
    draw.text((frame + 12, frame + bar // 2), "holiday-photo.jpg — Viewer", fill=(20, 20, 20), font=font, anchor="lm")
    for i, colour in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
        cx, cy = width - frame - 18 - 20 * i, frame + bar // 2
        draw.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), fill=colour)
    left, upper = frame + side, frame + bar + top
    canvas.paste(photo, (left, upper))
    return png_roundtrip(canvas), (left, upper, left + photo.width, upper + photo.height)


@pytest.fixture(scope="module")
def photos(photo_files: list[Path]) -> list[Image.Image]:
    return [decoded(path) for path in photo_files[:8]]


def test_phash_is_storage_perceptual_phash(photo_files: list[Path]) -> None:
    for path in photo_files[:24]:
        for image in (decoded(path), Image.open(path)):
            hashes = image_hashes(image)
            assert hashes.phash == phash(image) == int(hashes.phash_variants[0])
    rgb = Image.open(photo_files[0]).convert("RGB")
    for mode in ("RGBA", "P", "L", "1", "CMYK", "LA", "I"):
        image = rgb.convert(mode)
        assert image_hashes(image).phash == phash(image), mode


def test_variants_are_the_hashes_of_the_transformed_thumbnail(photos: list[Image.Image]) -> None:
    """The algebra, exactly: variant k from one DCT equals hashing the transformed 32x32 thumbnail."""
    for image in photos:
        size = (HASH_INPUT_SIZE, HASH_INPUT_SIZE)
        thumb = np.asarray(image.convert("L").resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
        phashes, dhashes = dihedral_phashes(thumb), dihedral_dhashes(thumb)
        for k, transform in enumerate(NUMPY_DIHEDRAL):
            moved = np.ascontiguousarray(transform(thumb))
            assert dihedral_phashes(moved)[0] == phashes[k], DIHEDRAL[k][0]
            assert dihedral_dhashes(moved)[0] == dhashes[k], DIHEDRAL[k][0]


def test_variants_match_actually_transformed_photos(photos: list[Image.Image]) -> None:
    """On real photos, variant k is (nearly) the hash of the photo transposed by Pillow: flips exactly;
    transposes within 2 bits (Pillow resizes rows, then columns, so rounding differs slightly)."""
    for image in photos:
        hashes = image_hashes(image)
        for k, (name, transpose) in enumerate(DIHEDRAL):
            moved = image_hashes(image if transpose is None else image.transpose(transpose))
            limit = 0 if k < 4 else 2
            assert hamming(int(hashes.phash_variants[k]), moved.phash) <= limit, name
            assert hamming(int(hashes.dhash_variants[k]), moved.dhash) <= limit, name


def test_trimming_recovers_the_photo_in_a_screenshot(photo_files: list[Path]) -> None:
    for path, (side, top) in zip(photo_files[:4], ((40, 24), (12, 60), (70, 10), (25, 25)), strict=True):
        photo = Image.open(path).convert("RGB")
        shot, box = screenshot(photo, side=side, top=top)
        found = trim_box(shot.convert("L"))
        slack = -(-max(shot.size) // 160) + 1  # trimming works on a copy reduced to at most 160 px
        assert all(abs(a - b) <= slack for a, b in zip(found, box, strict=True)), (found, box)
        shot_hashes, photo_hashes = image_hashes(shot), image_hashes(decoded(path))
        assert shot_hashes.trimmed
        assert hamming(shot_hashes.phash_trim, photo_hashes.phash) <= 8
        assert hamming(shot_hashes.phash, photo_hashes.phash) > 12  # what plain pHash sees
        assert match(shot_hashes, photo_hashes)


def test_unframed_photo_is_not_trimmed(photos: list[Image.Image]) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (90, 120), dtype=np.uint8))
    # photos[7] really has a 2 px border, which is trimmed.
    for image in [*photos[:7], noise]:
        hashes = image_hashes(image)
        assert hashes.trim_box == (0, 0, *image.size)
        assert not hashes.trimmed
        assert hashes.phash_trim == hashes.phash
        assert np.array_equal(hashes.trim_dhash_variants, hashes.dhash_variants)


def test_blank_and_tiny_images_are_not_trimmed() -> None:
    for image in (Image.new("RGB", (300, 200), (255, 255, 255)), Image.new("L", (8, 8), 0), Image.new("L", (1, 1))):
        hashes = image_hashes(image)
        assert hashes.trim_box == (0, 0, *image.size)
        assert not hashes.trimmed


def test_mirrored_copy_matches_and_unrelated_photo_does_not(photo_files: list[Path]) -> None:
    original = decoded(photo_files[0])
    mirrored = original.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    a, b = image_hashes(original), image_hashes(mirrored)
    assert hamming(a.phash, b.phash) > 16  # plain pHash misses it
    assert variant_distance(a.phash_variants, b.phash) == 0
    assert match(a, b)
    for path in photo_files[1:6]:
        other = image_hashes(decoded(path))
        assert variant_distance(a.phash_variants, other.phash) > 10
        assert not match(a, other)
        assert distance(a, other) > DEFAULT_THRESHOLD


def test_turned_greyscale_and_cropped_copies_match(photo_files: list[Path]) -> None:
    photo = Image.open(photo_files[2]).convert("RGB")
    w, h = photo.size
    base = image_hashes(decoded(photo_files[2]))
    copies = (
        photo.transpose(Image.Transpose.ROTATE_90),
        photo.transpose(Image.Transpose.ROTATE_180).convert("L"),
        photo.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
        photo.resize((w // 2, h // 2)),
    )
    for copy in copies:
        assert match(base, image_hashes(png_roundtrip(copy)))


def test_blob_roundtrip(photo_files: list[Path]) -> None:
    hashes = [image_hashes(decoded(path)) for path in photo_files[:32]]
    shot, _ = screenshot(Image.open(photo_files[0]).convert("RGB"), side=30, top=30)
    hashes.append(image_hashes(shot))
    for original in hashes:
        blob = original.to_blob()
        assert len(blob) == (272 if original.trimmed else 144)
        back = ImageHashes.from_blob(blob)
        assert back.trim_box is None
        assert back == ImageHashes(**{**original.__dict__, "trim_box": None})
        assert (back.phash, back.dhash, back.phash_trim) == (original.phash, original.dhash, original.phash_trim)
    assert hashes[-1].trimmed
    with pytest.raises(ValueError):
        ImageHashes.from_blob(b"\0" * 24)


def test_distance_matrix_agrees_with_distance(photo_files: list[Path]) -> None:
    images = [decoded(path) for path in photo_files[:5]]
    images += [images[0].transpose(Image.Transpose.ROTATE_270), images[1].convert("L")]
    hashes = [image_hashes(image) for image in images]
    arrays = HashArrays.from_hashes(hashes)
    matrix = distance_matrix(arrays, np.arange(len(hashes)))
    for i, a in enumerate(hashes):
        for j, b in enumerate(hashes):
            assert matrix[i, j] == distance(a, b)
    assert matrix[0, 5] <= DEFAULT_THRESHOLD and matrix[1, 6] <= DEFAULT_THRESHOLD
    upper = [(int(i), int(j)) for i, j in zip(*np.triu_indices(len(hashes), 1), strict=True)]
    threshold = sorted(int(matrix[i, j]) for i, j in upper)[6]  # a threshold that some pairs pass
    expected = {(i, j, int(matrix[i, j])) for i, j in upper if matrix[i, j] <= threshold}
    assert set(matching_pairs(arrays, threshold, chunk=3)) == expected
