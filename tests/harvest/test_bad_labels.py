"""One bad label never ends a run (issue 15 item 1, issue 16 item 4): labels from pages, URL-list rows and folder
names are normalised per item (trim, collapse white space, drop permalink glyphs, "/" and "\\" become "-"), and a
label that cannot be made valid rejects that item only, as one problem entry. Through the real commands."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from storage.catalog import image_sources, iter_images
from storage.workspace import open_workspace
from tests.harvest.test_import import curate, harvest, ok_json
from tests.support.site import Response, Site


def labels(ws: Path) -> dict[str, int]:
    return dict(ok_json(curate("labels", "--json", "-w", ws, cwd=ws.parent))["labels"])


def test_scrape_labels_from_alt_and_h1_are_normalised(site: Site, ws: Path) -> None:
    names = site.photo_names[240:243]
    page = (
        "<html><body><h1>Block views on\n  images/arrays <a class='headerlink' href='#x'>¶</a></h1>"
        f"<img alt='  cats/dogs ¶ ' src='/img/{names[0]}'>"
        f"<img alt='back\\slash' src='/img/{names[1]}'>"
        f"<img alt='{'x' * 220}' src='/img/{names[2]}'></body></html>"
    )
    site.route("/t/badlabels", lambda _request: Response.html(page))
    seed = site.url("/t/badlabels")
    by_alt = harvest("scrape", seed, "--allow-private", "--label-from", "alt", "--json", "-w", ws, cwd=ws.parent)
    report = ok_json(by_alt)
    assert report["added"] == 2 and report["rejected"] == 1, report
    (problem,) = report["problems"]
    assert problem["item"].endswith(names[2]) and "label" in problem["reason"], problem
    assert labels(ws) == {"cats-dogs": 1, "back-slash": 1}
    again = ok_json(
        harvest("scrape", seed, "--allow-private", "--label-from", "alt", "--json", "-w", ws, cwd=ws.parent)
    )
    assert again["added"] == 0, again  # the rerun finishes too


def test_scrape_label_from_css_h1_with_a_slash(site: Site, tmp_path: Path, ws: Path) -> None:
    name = site.photo_names[244]
    page = f"<html><body><h1>Block views on images/arrays ¶</h1><img src='/img/{name}'></body></html>"
    site.route("/t/h1slash", lambda _request: Response.html(page))
    args = ("scrape", site.url("/t/h1slash"), "--allow-private", "--label-from", "css:h1", "--json", "-w", ws)
    assert ok_json(harvest(*args, cwd=ws.parent))["added"] == 1
    assert labels(ws) == {"Block views on images-arrays": 1}


def test_url_list_rows_with_bad_labels_reject_only_that_row(site: Site, tmp_path: Path, ws: Path) -> None:
    names = site.photo_names[245:248]
    listing = tmp_path / "list.csv"
    with listing.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "label"])
        writer.writerow([site.url(f"/img/{names[0]}"), "cats/dogs"])
        writer.writerow([site.url(f"/img/{names[1]}"), "tab\there"])
        writer.writerow([site.url(f"/img/{names[2]}"), "y" * 220])
    args = ("urls", listing, "--allow-private", "--json", "-w", ws)
    report = ok_json(harvest(*args, cwd=ws.parent))
    assert report["added"] == 2 and report["rejected"] == 1, report
    (problem,) = report["problems"]
    assert "label" in problem["reason"], problem
    assert labels(ws) == {"cats-dogs": 1, "tab here": 1}
    assert ok_json(harvest(*args, cwd=ws.parent))["added"] == 0  # a rerun does not die either


def test_folder_names_with_bad_labels_reject_only_that_item(photo_files: list[Path], tmp_path: Path, ws: Path) -> None:
    root = tmp_path / "photos"
    for photo, folder in zip(photo_files[10:13], ("good", "back\\slash", "z" * 220), strict=True):
        (root / folder).mkdir(parents=True)
        shutil.copy(photo, root / folder / "a.jpg")
    report = ok_json(harvest("import", root, "--labels-from-folders", "--json", "-w", ws, cwd=ws.parent))
    assert report["added"] == 2 and report["rejected"] == 1, report
    (problem,) = report["problems"]
    assert "z" * 220 in problem["item"] and "label" in problem["reason"], problem
    assert labels(ws) == {"good": 1, "back-slash": 1}
    fsck = ok_json(curate("fsck", "--json", "-w", ws, cwd=ws.parent))
    assert fsck["ok"] is True, fsck  # the rejected item left no orphan object


def test_a_non_utf8_file_name_is_recorded_escaped(photo_files: list[Path], tmp_path: Path, ws: Path) -> None:
    """Issue 16 item 3: a name holding the byte 0xFF is recorded losslessly escaped; the run goes on."""
    root = tmp_path / "mixed"
    root.mkdir()
    shutil.copy(photo_files[20], root / "ok1.jpg")
    shutil.copy(photo_files[21], root / "ok2.jpg")
    odd = os.fsencode(root) + b"/bad\xffname.jpg"
    with open(odd, "wb") as handle:
        handle.write(photo_files[22].read_bytes())
    report = ok_json(harvest("import", root, "--json", "-w", ws, cwd=ws.parent))
    assert report["added"] == 3 and report["problems"] == [], report
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        uris = {source["uri"] for image in iter_images(conn) for source in image_sources(conn, image["sha256"])}
    assert str(root.resolve() / "bad\\xffname.jpg") in uris, uris
    fsck = ok_json(curate("fsck", "--json", "-w", ws, cwd=ws.parent))
    assert fsck["ok"] is True, fsck
    again = ok_json(harvest("import", root, "--json", "-w", ws, cwd=ws.parent))
    assert again["duplicates"] == 3, again


def test_provenance_paths_are_absolute_and_normalised(photo_files: list[Path], tmp_path: Path, ws: Path) -> None:
    """Issue 15 item 9: `photos/../pics/food/a.jpg` is recorded as the absolute path without `..`."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "pics" / "food").mkdir(parents=True)
    shutil.copy(photo_files[23], tmp_path / "pics" / "food" / "a.jpg")
    report = ok_json(harvest("import", "photos/../pics/food/a.jpg", "--json", "-w", ws, cwd=tmp_path))
    assert report["added"] == 1, report
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        uris = {source["uri"] for image in iter_images(conn) for source in image_sources(conn, image["sha256"])}
    assert uris == {str(tmp_path / "pics" / "food" / "a.jpg")}, uris


def test_labels_from_folders_use_the_first_folder_under_the_root(
    photo_files: list[Path], tmp_path: Path, ws: Path
) -> None:
    """Issue 15 item 3: root/a/b/x.jpg is labelled `a` (ImageFolder); a class folder given as the root says so."""
    root = tmp_path / "pics"
    (root / "food" / "close-ups").mkdir(parents=True)
    shutil.copy(photo_files[30], root / "food" / "close-ups" / "x.jpg")
    shutil.copy(photo_files[31], root / "food" / "y.jpg")
    report = ok_json(harvest("import", root, "--labels-from-folders", "--json", "-w", ws, cwd=ws.parent))
    assert report["added"] == 2 and not report.get("warnings"), report
    assert labels(ws) == {"food": 2}

    shutil.copy(photo_files[32], root / "food" / "z.jpg")
    human = harvest("import", root / "food", "--labels-from-folders", "-w", ws, cwd=ws.parent)
    assert human.code == 0, human.stderr
    assert "no sub-folders" not in human.stderr  # close-ups/ is a sub-folder: its image is labelled close-ups
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(photo_files[33], flat / "w.jpg")
    warned = harvest("import", flat, "--labels-from-folders", "--json", "-w", ws, cwd=ws.parent)
    document = ok_json(warned)
    assert document["added"] == 1 and any("no sub-folders" in w for w in document["warnings"]), document
    assert "no sub-folders" in " ".join(warned.stderr.split()), warned.stderr
