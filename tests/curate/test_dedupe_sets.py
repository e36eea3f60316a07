"""The near-duplicate evaluation sets (tests/support/dedupe_sets.py) say what they claim: the tuning half never
leaks into a held-out set, screenshots share one frame, thumbnails are traced to their figure by pixels, the
figures site holds only distinct figures. (The sets' use, scoring dedupe, is bench/dedupe_eval.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import dedupe_sets as sets


def _need(name: str) -> None:
    reason = sets.missing_sources(name)
    if reason:
        pytest.skip(reason)


def test_no_held_out_photo_is_a_tuning_photo() -> None:
    _need("photos-held")
    tuning = {p.name for p in sets.tuning_photos()}
    held = sets.held_out_photos()
    assert len(tuning) == 128
    assert not tuning & {p.name for p in held}
    assert len(held) >= 128


def test_shared_frame_screenshots_have_one_identical_frame(tmp_path: Path) -> None:
    _need("shared-frame")
    photos = sets.held_out_photos(6)
    built = sets.shared_frame_screenshots(photos, tmp_path)
    groups = built.true_groups()
    assert len(groups) == 6
    assert all(len(files) == 2 for files in groups.values())
    shots = [np.asarray(Image.open(p)) for p in sorted(tmp_path.glob("*__screenshot.png"))]
    assert {s.shape for s in shots} == {(sets.WINDOW[1], sets.WINDOW[0], 3)}
    chrome = sets.TITLE_BAR + sets.TOOLBAR
    assert all(np.array_equal(s[:chrome], shots[0][:chrome]) for s in shots)  # the frame: identical
    assert not np.array_equal(shots[0][chrome:], shots[1][chrome:])  # what is inside it: not


def test_every_thumbnail_is_traced_to_a_figure_of_its_own_example() -> None:
    _need("figures")
    found = sets.thumbnail_sources()
    assert len(found) >= 100
    for thumb, source in found.items():
        example = re.match(r"^sphx_glr_(.+)_thumb\d*\.png$", thumb).group(1)  # type: ignore[union-attr]
        assert source is not None and source.startswith(f"sphx_glr_{example}_"), (thumb, source)


def test_figures_site_holds_distinct_figures_by_section(tmp_path: Path) -> None:
    _need("figures")
    site = sets.figures_site(tmp_path, per_section=3)
    assert site.pages[0] == "index.html" and len(site.pages) == len(site.expected) + 1
    digests = set()
    for section, files in site.expected.items():
        page = (tmp_path / section / "index.html").read_text()
        for name in files:
            assert f'src="{name}"' in page
            digests.add(sets._pixel_digest(tmp_path / section / name))
    assert len(digests) == site.images


def test_icon_groups_are_names_and_aliases_merge(tmp_path: Path) -> None:
    _need("icons")
    built = sets.build_icons(tmp_path, names=20)
    sizes = {}
    for item in built.items:
        sizes.setdefault(item.group, set()).add(int(item.name.rsplit("__", 1)[1].split(".")[0]))
    assert len(sizes) >= 18  # a few names are the same picture (go-next is go-previous-rtl)
    assert all(found == set(sets.ICON_SIZES) for found in sizes.values())


def test_icon_mirror_twins_are_left_out() -> None:
    _need("icons")
    names = sets._icon_names(sets.ICON_THEME, sets.ICON_SIZES, 1000)
    assert "actions/go-next" in names and "actions/go-next-rtl" not in names  # go-next mirrored, re-shaded
    assert {"emotes/face-smile", "emotes/face-sad"} <= set(names)  # alike, but neither turned nor mirrored


def test_symmetric_pieces_are_disjoint_halves_or_quadrants(tmp_path: Path) -> None:
    _need("symmetric")
    built = sets.build_symmetric(tmp_path, per_kind={"left-right": 2, "top-bottom": 2, "quadrants": 1})
    originals = [i for i in built.items if i.transform == "original"]
    photos = {i.name.split("__")[0] for i in originals}
    assert len(originals) == 2 * 2 + 2 * 2 + 4 * 2  # retina's quadrants are always there
    assert "retina" in photos
    assert {i.transform for i in built.items} == {"original", *sets.SYMMETRIC_COPIES}
