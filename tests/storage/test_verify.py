"""Pixel verification of candidate pairs (storage/hashes/verify.py) on real pictures: what may and may not pass."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from storage.hashes.compare import best_match
from storage.hashes.compute import ImageHashes
from storage.hashes.verify import Verdict, decode_for_verify, verify_pair
from storage.imaging import analyze
from tests.support.dedupe_sets import (
    FASHION_MNIST,
    TUNING_PRODUCTS_START,
    _fashion_images,
    add_noise,
    product_photo,
    tuning_photos,
)
from tests.support.plots import FAMILIES, SIZES, _render


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _verdict(a: bytes, b: bytes) -> Verdict:
    hashes_a, hashes_b = (ImageHashes.from_blob(analyze(data).hash_variants or b"") for data in (a, b))
    match = best_match(hashes_a, hashes_b)
    return verify_pair(decode_for_verify(a), decode_for_verify(b), match)


def test_one_plot_drawn_at_two_figure_sizes_is_two_images() -> None:
    """Squeezed to 64 x 64 the 4:3 and the 8:3 drawing of one curve look alike; no copy stretches its picture."""
    wide, square = (_render(FAMILIES["frequency"], seed=0, member=0, size=size) for size in ((8.0, 3.0), (6.4, 4.8)))
    verdict = _verdict(_png(wide), _png(square))
    assert not verdict.verified
    assert "proportions" in verdict.reason
    half = wide.resize((wide.width // 2, wide.height // 2), Image.Resampling.LANCZOS)
    assert _verdict(_png(wide), _png(half)).verified  # its own resize keeps the proportions


def test_a_quarter_turn_keeps_proportions_once_turned() -> None:
    photos = tuning_photos()
    if not photos:
        pytest.skip("the COCO photos of ../shared/data are not here")
    photo = next(p for p in photos if abs(Image.open(p).width / Image.open(p).height - 1) > 0.2)
    original = Path(photo).read_bytes()
    with Image.open(photo) as opened:
        turned = opened.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    verdict = _verdict(original, _png(turned))
    assert verdict.verified, verdict.reason


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_two_draws_of_a_noisy_curve_are_two_figures_and_a_jpeg_of_one_is_its_copy() -> None:
    """At 64 px two noisy sine plots are one curve; the finer comparison of drawings sees the other wiggles."""
    first, second = (_render(FAMILIES["lines"], seed=seed, member=0, size=(6.4, 4.8)) for seed in (0, 2))
    verdict = _verdict(_png(first), _png(second))
    assert not verdict.verified
    assert "differs at" in verdict.reason  # the shading at 32 px or the detail at 256 px
    assert _verdict(_png(first), _jpeg(first, 30)).verified
    half = first.resize((first.width // 2, first.height // 2), Image.Resampling.LANCZOS)
    assert _verdict(_png(first), _png(half)).verified


@pytest.mark.parametrize(("family", "size"), [("contours", 0), ("histogram", 1), ("thresholds", 0)])
def test_copies_of_a_figure_whose_trim_box_moves_are_its_copies(family: str, size: int) -> None:
    """A figure on white is framed (margins on every side), so the contents inside its trim box must agree too;
    the box is found on each image alone and moves in a copy (thin axes fade in a 50% resize, JPEG ringing
    breaks up a plain band). One box cut from both images compares like with like; another plot of the family,
    in the same axes, stays another image."""
    figure, other = (
        _render(FAMILIES[family], seed=1000 * size + k, member=6 * size + k, size=SIZES[size]) for k in (0, 1)
    )
    half = figure.resize((figure.width // 2, figure.height // 2), Image.Resampling.LANCZOS)
    for copy in (_png(half), _jpeg(figure, 30)):
        verdict = _verdict(_png(figure), copy)
        assert verdict.verified, verdict.reason
    assert not _verdict(_png(figure), _png(other)).verified


def test_two_folder_icons_with_other_emblems_are_two_images() -> None:
    """Icons on transparent margins verify on their trimmed views; the emblem shows only at the finer scale."""
    folders = Path("/usr/share/icons/gnome/256x256/places")
    if not (folders / "folder-music.png").exists():
        pytest.skip("gnome-icon-theme is not installed (scripts/setup.sh installs it)")
    pictures, music = ((folders / f"folder-{name}.png").read_bytes() for name in ("pictures", "music"))
    verdict = _verdict(pictures, music)
    assert not verdict.verified and "detail differs" in verdict.reason
    with Image.open(io.BytesIO(pictures)) as opened:
        on_white = Image.alpha_composite(Image.new("RGBA", opened.size, "white"), opened.convert("RGBA"))
    assert _verdict(pictures, _jpeg(on_white.convert("RGB"), 90)).verified  # the icon as a page shows it


def test_two_shirts_of_one_cut_are_two_products_and_their_copies_are_copies() -> None:
    """Two plain shirts (Fashion-MNIST test items 5107 and 5271, of the tuning half) agree block by block at every
    scale; their shading, compared after one brightness fit for the whole view, tells them apart."""
    if not FASHION_MNIST.exists():
        pytest.skip("dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    items = _fashion_images(400, TUNING_PRODUCTS_START)
    first, second = (product_photo(items[index - TUNING_PRODUCTS_START], seed=index) for index in (5107, 5271))
    verdict = _verdict(_jpeg(first, 92), _jpeg(second, 92))
    assert not verdict.verified
    assert "shading differs" in verdict.reason
    half = first.resize((first.width // 2, first.height // 2), Image.Resampling.LANCZOS)
    assert _verdict(_jpeg(first, 92), _jpeg(first, 30)).verified
    assert _verdict(_jpeg(first, 92), _jpeg(half, 92)).verified


def test_two_pale_garments_of_other_colours_are_two_products_and_a_grey_copy_is_a_copy() -> None:
    """A pale purple and a pale green top (Fashion-MNIST test items 204 and 191, as the held-out products set
    draws them) agree in grey; their chroma varies little, but too much for greyscale, so the colour check
    applies and tells them apart. A greyscale copy has no chroma at all and still matches its colour original."""
    if not FASHION_MNIST.exists():
        pytest.skip("dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    items = _fashion_images(205)
    purple, green = (product_photo(items[index], seed=index) for index in (204, 191))
    verdict = _verdict(_jpeg(purple, 92), _jpeg(green, 92))
    assert not verdict.verified and "colours differ" in verdict.reason, verdict.reason
    assert _verdict(_jpeg(purple, 92), _jpeg(purple.convert("L"), 92)).verified
    assert _verdict(_jpeg(purple, 92), _jpeg(purple.convert("L").convert("RGB"), 92)).verified
    assert _verdict(_jpeg(purple, 92), _jpeg(purple, 30)).verified


def test_a_noisy_copy_matched_on_the_centre_view_is_judged_on_the_whole_images() -> None:
    """A noisy copy of a product photo (Fashion-MNIST test item 270 as the held-out products set draws it) matches
    the centre view of its original by hash: the noise hides the whole image's hash. Compared that way the two
    are 5 % apart in scale, agree at 64 px and not finer; the whole images agree better and decide."""
    if not FASHION_MNIST.exists():
        pytest.skip("dataset-fashion-mnist is not installed (scripts/setup.sh installs it)")
    item = product_photo(_fashion_images(271)[270], seed=270)
    original, noisy = _jpeg(item, 92), _jpeg(add_noise(item, seed=270), 92)
    hashes = [ImageHashes.from_blob(analyze(data).hash_variants or b"") for data in (original, noisy)]
    assert "centre" in (best_match(*hashes).view_a, best_match(*hashes).view_b)
    verdict = _verdict(original, noisy)
    assert verdict.verified, verdict.reason
