"""Near-duplicates on evidence only, on real images nobody tuned on (issue: "Near-duplicates you can trust").

- 50 screenshots of 50 different photos, all in one shared browser frame, give one group per photo found, each
  the photo with its own screenshot: the frame never carries a match;
- a scraped site of plots on white backgrounds (the scikit-image gallery) groups no two different figures and
  sets none aside at ingest;
- no returned group's member is farther from its keeper than the threshold;
- a pair marked "not duplicates" is never grouped again, by `curate dedupe` or by ingest.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from sqlalchemy import select

from storage.catalog.schema import images
from storage.workspace import init_workspace, open_workspace
from tests.harvest.test_import import curate, harvest, ok_json
from tests.support import dedupe_sets


def _workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    init_workspace(root)[0].close()
    return root


def _set_aside(root: Path) -> dict[str, str]:
    with open_workspace(root) as workspace, workspace.catalog.read() as conn:
        rows = conn.execute(select(images.c.sha256, images.c.duplicate_of).where(images.c.duplicate_of.isnot(None)))
        return dict(rows.all())


def test_screenshots_in_one_shared_frame_group_only_with_their_own_photo(tmp_path: Path) -> None:
    photos = dedupe_sets.held_out_photos(50)
    if len(photos) < 50:
        pytest.skip("needs the 256 photos of ../shared/data/photos")
    evaluation = dedupe_sets.shared_frame_screenshots(photos, tmp_path / "shots")
    root = _workspace(tmp_path)
    imported = ok_json(harvest("import", evaluation.folder, "--json", "-w", root, cwd=tmp_path))
    assert imported["added"] == 100 and imported["rejected"] == 0
    group_of = {str(evaluation.path(item)): item.group for item in evaluation.items}
    report = ok_json(curate("dedupe", "--json", "-w", root, cwd=tmp_path))
    groups = [{group_of[m["sources"][0]] for m in c["members"]} for c in report["clusters"]]
    assert all(len(found) == 1 for found in groups), [g for g in groups if len(g) > 1]  # nothing mixed
    # Each group is one photo with its own screenshot. Not yet all 50: on these held-out photos 48 are found (a
    # photo whose plain side merges with the white page trims differently; one is out of hash reach), so the
    # bar here is the screenshot goal with a margin, and a regression below it fails.
    assert all(len(c["members"]) == 2 for c in report["clusters"])
    assert len(report["clusters"]) >= 45
    assert max(m["distance"] for c in report["clusters"] for m in c["members"]) <= report["threshold"]
    # the pairs the pixels did not confirm are a section of the HTML report, each with both pictures
    page = Path(report["html"]).read_text()
    assert f"Candidates to review ({len(report['candidates'])})" in page
    assert page.count("<div class=pair>") == len(report["candidates"]) > 0
    # what ingest set aside on its own is right too: each a screenshot of the photo it points to
    sources = {m["sha256"]: group_of[m["sources"][0]] for c in report["clusters"] for m in c["members"]}
    assert all(sources[sha] == sources[keeper] for sha, keeper in _set_aside(root).items())


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def figures_url(tmp_path: Path) -> Iterator[tuple[str, dedupe_sets.FigureSite]]:
    if not dedupe_sets.SKIMAGE_DOC_IMAGES.is_dir():
        pytest.skip("scikit-image documentation not installed (apt-get install python-skimage-doc)")
    site = dedupe_sets.figures_site(tmp_path / "site", per_section=12)
    handler = functools.partial(_QuietHandler, directory=str(site.root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html", site
    finally:
        server.shutdown()
        server.server_close()


def test_a_scraped_site_of_plots_groups_no_two_different_figures(
    tmp_path: Path, figures_url: tuple[str, dedupe_sets.FigureSite]
) -> None:
    url, site = figures_url
    root = _workspace(tmp_path)
    scraped = ok_json(
        harvest(
            "scrape", url, "--follow", "a", "--depth", "1", "--label-from", r"url:/([a-z_]+)/index",
            "--allow-private", "--json", "-w", root, cwd=tmp_path,
        )
    )  # fmt: skip
    assert scraped["added"] == site.images and scraped["failed"] == 0
    assert scraped["near_duplicates"] == 0 and _set_aside(root) == {}  # every distinct figure stays
    report = ok_json(curate("dedupe", "--json", "-w", root, cwd=tmp_path))
    assert report["clusters"] == [], [[m["sources"] for m in c["members"]] for c in report["clusters"]]
    labels = ok_json(curate("labels", "--json", "-w", root, cwd=tmp_path))["labels"]
    assert sum(labels.values()) == site.images


def test_a_pair_marked_not_duplicates_is_never_grouped_again(tmp_path: Path, photo_files: list[Path]) -> None:
    base = Image.open(photo_files[3]).convert("RGB")
    (tmp_path / "in").mkdir()
    base.save(tmp_path / "in" / "photo.jpg", quality=92)
    ImageOps.mirror(base).save(tmp_path / "in" / "mirrored.jpg", quality=92)
    root = _workspace(tmp_path)
    imported = ok_json(harvest("import", tmp_path / "in", "--json", "-w", root, cwd=tmp_path))
    assert (imported["added"], imported["near_duplicates"]) == (2, 1)  # a verified mirror copy is set aside
    report = ok_json(curate("dedupe", "--json", "-w", root, cwd=tmp_path))
    (cluster,) = report["clusters"]
    a, b = (m["sha256"] for m in cluster["members"])
    decided = ok_json(curate("dedupe", "--not-duplicate", a[:10], b[:10], "--json", "-w", root, cwd=tmp_path))
    assert sorted(decided["not_duplicates"]) == sorted([a, b])
    assert _set_aside(root) == {}  # the person's word takes the copy back into the dataset at once
    again = ok_json(curate("dedupe", "--apply", "--json", "-w", root, cwd=tmp_path))
    assert again["clusters"] == [] and _set_aside(root) == {}
    # A rerun of ingest (the same files again, and a fresh copy of the pair) keeps them apart as well.
    ImageOps.mirror(base).save(tmp_path / "in" / "mirrored-again.png")
    rerun = ok_json(harvest("import", tmp_path / "in", "--json", "-w", root, cwd=tmp_path))
    assert rerun["duplicates"] == 2 and rerun["added"] == 1
    marks = _set_aside(root)
    assert all({sha, keeper} != {a, b} for sha, keeper in marks.items())
    assert a not in marks and b not in marks


def test_a_confirmed_pair_and_the_decision_history(tmp_path: Path, photo_files: list[Path]) -> None:
    base = Image.open(photo_files[4]).convert("RGB")
    (tmp_path / "in").mkdir()
    base.save(tmp_path / "in" / "photo.jpg", quality=92)
    ImageOps.mirror(base).save(tmp_path / "in" / "mirrored.jpg", quality=92)
    root = _workspace(tmp_path)
    ok_json(harvest("import", tmp_path / "in", "--json", "-w", root, cwd=tmp_path))
    (cluster,) = ok_json(curate("dedupe", "--json", "-w", root, cwd=tmp_path))["clusters"]
    keeper, copy = cluster["keeper"], next(m["sha256"] for m in cluster["members"] if m["sha256"] != cluster["keeper"])
    ok_json(curate("dedupe", "--not-duplicate", keeper, copy, "--json", "-w", root, cwd=tmp_path))
    assert _set_aside(root) == {}
    # the person changes their mind: confirming the pair replaces the "not duplicates" decision
    confirmed = ok_json(curate("dedupe", "--duplicate", keeper, copy, "--json", "-w", root, cwd=tmp_path))
    assert confirmed == {"duplicate": copy, "keeper": keeper}
    assert _set_aside(root) == {copy: keeper}
    again = ok_json(curate("dedupe", "--apply", "--json", "-w", root, cwd=tmp_path))
    assert [len(c["members"]) for c in again["clusters"]] == [2] and _set_aside(root) == {copy: keeper}
    history = ok_json(curate("dedupe", "--decisions", "--json", "-w", root, cwd=tmp_path))["decisions"]
    assert [(d["kind"], d["revoked_at"] is None) for d in history] == [("not_duplicate", False), ("duplicate", True)]
    assert all(d["actor"] for d in history)
