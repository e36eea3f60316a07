"""Hostile local files (issue 16): a path that is checked to be a regular file and then opened must not be
swapped for something that hangs the open (a FIFO) — the open itself decides, on its descriptor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.imaging import Rejected
from storage.ingest import read_file
from tests.harvest.test_import import assert_summary, harvest, ok_json
from tests.hostile import make_fifo, swapping_link, valid_png

pytestmark = pytest.mark.timeout(180)  # before the fix these hung for ever in fifo_open


def test_a_fifo_and_a_link_to_one_are_refused(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "pipe.jpg")
    link = tmp_path / "link.jpg"
    os.symlink(fifo, link)
    for path in (fifo, link):
        with pytest.raises(Rejected, match="not a regular file"):
            read_file(str(path), 1 << 20)


def test_a_link_swapped_to_a_fifo_never_hangs_the_read(tmp_path: Path) -> None:
    """Between the regular-file check and the open, another process points the link at a FIFO."""
    image = tmp_path / "real.png"
    image.write_bytes(valid_png())
    outcomes = {"read": 0, "refused": 0}
    with swapping_link(tmp_path / "swapped.png", image) as link:
        for _ in range(3000):
            try:
                assert read_file(str(link), 1 << 20) == image.read_bytes()
                outcomes["read"] += 1
            except Rejected as exc:
                assert "not a regular file" in str(exc) or "unreadable" in str(exc), exc
                outcomes["refused"] += 1
    assert outcomes["read"] > 0 and outcomes["refused"] > 0, outcomes  # both sides of the swap were seen


def test_import_of_links_swapped_to_a_fifo_finishes(tmp_path: Path, ws: Path) -> None:
    """`harvest import` of a folder of links to a path that keeps turning into a FIFO: every item ends, as an
    image or as one rejected item, and the run completes (before: both workers blocked in fifo_open)."""
    image = tmp_path / "real.png"
    image.write_bytes(valid_png())
    folder = tmp_path / "in"
    folder.mkdir()
    make_fifo(folder / "plain-fifo.jpg")
    with swapping_link(tmp_path / "swapped.png", image) as target:
        for n in range(200):
            os.symlink(target, folder / f"img-{n:03}.png")
        document = ok_json(harvest("import", folder, "--json", "--workers", "2", cwd=ws))
    assert document["added"] <= 1 and document["failed"] == 0, document
    assert document["added"] + document["duplicates"] + document["rejected"] == 201, document
    reasons = {p["item"]: p["reason"] for p in document["problems"]}
    assert "not a regular file" in reasons[str(folder / "plain-fifo.jpg")], reasons
    assert all("not a regular file" in r or "unreadable" in r for r in reasons.values()), reasons
    assert_summary(document)
