"""Decoding (greys, alpha, palettes, 16-bit, JPEG draft), batching order, sampling and augmentations."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from storage.errors import GleanerError
from train.augment import BatchAugment, parse_augment
from train.data import ObjectReader, channels_for_modes, decode_image
from train.loaders import TensorBatches


def encode(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_grey_and_rgb_come_out_with_the_asked_channels() -> None:
    grey = Image.fromarray(np.full((20, 30), 77, np.uint8), "L")
    assert decode_image(encode(grey), 16, 1).shape == (1, 16, 16)
    rgb = decode_image(encode(grey), 16, 3)
    assert rgb.shape == (3, 16, 16) and (rgb == 77).all()
    assert channels_for_modes(["L", "L"]) == 1
    assert channels_for_modes(["L", "RGB"]) == 3
    assert channels_for_modes([]) == 3


def test_transparent_pixels_become_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert (decode_image(encode(rgba), 10, 3) == 255).all()
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert (decode_image(encode(palette, transparency=0), 10, 1) == 255).all()


def test_sixteen_bit_greys_are_scaled_not_clipped() -> None:
    array = np.linspace(0, 60000, 64, dtype=np.uint16).reshape(8, 8)
    out = decode_image(encode(Image.fromarray(array)), 8, 1)  # mode I;16
    assert out.max() == 255 and out.min() == 0 and len(np.unique(out)) > 30


def test_aspect_is_kept_by_a_centre_crop() -> None:
    array = np.zeros((20, 60), np.uint8)
    array[:, 20:40] = 255  # a white centre third
    out = decode_image(encode(Image.fromarray(array, "L")), 20, 1)
    assert out.shape == (1, 20, 20) and out.mean() > 250


def test_jpeg_is_decoded_in_draft_mode_to_about_the_size() -> None:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 1200, 3), dtype=np.uint8), "RGB")
    data = encode(photo, "JPEG", quality=90)
    seen: list[tuple[int, int]] = []
    original = Image.Image.resize

    def spy(self: Image.Image, size: tuple[int, int], *args: object, **kwargs: object) -> Image.Image:
        seen.append(self.size)
        return original(self, size, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image.Image, "resize", spy)
        out = decode_image(data, 64, 3)
    assert out.shape == (3, 64, 64)
    assert seen and seen[0][0] <= 1200 // 8 + 1  # DCT-scaled by 8 before the resize, not the full 1200 px


class FakeRemote:
    url = "s3://fake/prefix"
    remote = True

    def __init__(self) -> None:
        self.reads = 0

    def get(self, key: str) -> bytes:
        self.reads += 1
        if key == "missing":
            raise KeyError(key)
        return b"bytes of " + key.encode()


def test_remote_objects_are_cached_locally(tmp_path: Path) -> None:
    store = FakeRemote()
    reader = ObjectReader(store, tmp_path)  # type: ignore[arg-type]
    assert reader.read("a/b.png") == b"bytes of a/b.png"
    assert reader.read("a/b.png") == b"bytes of a/b.png"
    assert store.reads == 1
    with pytest.raises(GleanerError, match="missing from the store"):
        reader.read("missing")


def test_batches_are_seeded_per_epoch_and_balanced_sampling_evens_classes() -> None:
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    targets = torch.tensor([0] * 90 + [1] * 10)
    batches = TensorBatches(images, targets, 32, shuffle=True, seed=3)
    batches.set_epoch(1)
    first = torch.cat([x.flatten() for x, _ in batches])
    again = TensorBatches(images, targets, 32, shuffle=True, seed=3)
    again.set_epoch(1)
    assert torch.equal(first, torch.cat([x.flatten() for x, _ in again]))
    assert sorted(first.tolist()) == list(range(100)) and len(batches) == 4
    batches.set_epoch(2)
    assert not torch.equal(first, torch.cat([x.flatten() for x, _ in batches]))
    balanced = TensorBatches(images, targets, 100, shuffle=True, balanced=True, seed=0)
    counts = Counter(torch.cat([y for _, y in balanced]).tolist())
    assert 35 <= counts[1] <= 65  # about half, though the class has 10% of the images


def test_augmentations_by_name() -> None:
    assert parse_augment("flip, rotate,zoom") == ("flip", "rotate", "zoom")
    assert parse_augment(None) == ()
    with pytest.raises(GleanerError, match="unknown augmentation 'blur'"):
        parse_augment("flip,blur")
    batch = torch.rand(8, 3, 16, 16)
    augment = BatchAugment(parse_augment("flip,rotate,zoom,translate,color,noise"), auto_augment=True)
    out = augment(batch, torch.Generator().manual_seed(0))
    again = BatchAugment(parse_augment("flip,rotate,zoom,translate,color,noise"), auto_augment=True)
    torch.manual_seed(0)
    first = augment(batch, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    second = again(batch, torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(first, second)  # same seeds, same augmentation
    flipped = BatchAugment(["flip"])(batch, torch.Generator().manual_seed(0))
    mirrored = [torch.allclose(f, b.flip(-1), atol=1e-5) for f, b in zip(flipped, batch, strict=True)]
    same = [torch.allclose(f, b, atol=1e-5) for f, b in zip(flipped, batch, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True)) and any(mirrored) and any(same)
    assert not BatchAugment([])


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("L", 3), ("RGB", 1), ("RGB", 3)])
def test_fast_png_path_matches_pillow(mode: str, channels: int) -> None:
    shape = (12, 12) if mode == "L" else (12, 12, 3)
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8), mode))
    with Image.open(io.BytesIO(data)) as img:
        expected = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    expected = expected[None] if expected.ndim == 2 else expected.transpose(2, 0, 1)
    assert np.array_equal(decode_image(data, 12, channels), expected)
