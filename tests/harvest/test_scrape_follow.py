"""Scrape options that match nothing say so, `<link rel="next">` pagination is followed, and the progress bar
keeps pages and images apart (issue 15 item 8). Against a real loopback site with pages of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvest.scrape.extract import compile_selector, extract_page
from storage.workspace import init_workspace
from tests.harvest.test_import import harvest, ok_json
from tests.harvest.test_scrape import run
from tests.support.site import Request, Response, Site

PAGES = 3


@pytest.fixture
def linked(site: Site) -> Site:
    """/linknext/N: one photo per page, the next page named only by `<link rel="next">` in the head."""

    def page(request: Request) -> Response:
        number = int(request.path.rsplit("/", 1)[1])
        head = f"<link rel='next' href='/linknext/{number + 1}'>" if number < PAGES else ""
        head += "<link rel='stylesheet' href='/linknext/style.css'>"
        photo = site.photo_names[100 + number]
        return Response.html(f"<html><head>{head}</head><body><h1>Page {number}</h1><img src='/img/{photo}'></body>")

    site.route("/linknext/", page)
    return site


def test_link_rel_next_is_followed_by_the_selector_and_by_default(linked: Site, ws: Path) -> None:
    by_selector = run(ws, linked.url("/linknext/1"), follow="link[rel=next]", label="shirt")
    assert by_selector["pages"]["fetched"] == PAGES and by_selector["added"] == PAGES
    assert by_selector["warnings"] == []
    assert linked.hits["/linknext/style.css"] == 0  # a stylesheet is not a page

    html = "<html><head><link rel='next' href='p2'><link rel='icon' href='i.png'></head><body></body></html>"
    assert extract_page(html, "http://shop.test/p1").links == ["http://shop.test/p2"]  # without --follow too


def test_selectors_that_match_nothing_warn_on_stderr_and_in_json(linked: Site, ws: Path, tmp_path: Path) -> None:
    seed = linked.url("/linknext/1")
    args = ("scrape", seed, "--allow-private", "--label", "shirt", "--select", "img.product", "--follow", "a.next")
    document = ok_json(harvest(*args, "--json", "-w", ws, cwd=ws.parent))
    assert document["warnings"] == [
        "--select 'img.product' matched nothing on the 1 page fetched",
        "--follow 'a.next' matched nothing on the 1 page fetched",
    ]
    other = tmp_path / "other"
    init_workspace(other)[0].close()
    shown = harvest(*args, "-w", other, cwd=tmp_path)  # a fresh workspace: a rerun would fetch nothing
    assert shown.code == 0
    assert "warning: --select 'img.product' matched nothing" in shown.stderr and "Traceback" not in shown.stderr


def test_a_selector_that_matches_somewhere_does_not_warn(linked: Site, ws: Path) -> None:
    document = run(ws, linked.url("/linknext/1"), select="h1, img", follow="link[rel=next]", label="shirt")
    assert document["warnings"] == [] and document["added"] == PAGES
    matched = extract_page("<p><img src='a.jpg'></p>", "http://x.test/", select=compile_selector("img", "--select"))
    assert (matched.selected, matched.followed) == (1, None)


def test_the_progress_bar_shows_pages_and_images_apart(linked: Site, ws: Path) -> None:
    args = ("scrape", linked.url("/linknext/1"), "--allow-private", "--label", "shirt", "--follow", "link[rel=next]")
    result = harvest(*args, "-w", ws, cwd=ws.parent, env={"COLUMNS": "200", "FORCE_COLOR": "0", "TERM": "dumb"})
    assert result.code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any(line.lstrip().startswith("pages") and f"{PAGES}/{PAGES}" in line for line in lines), result.stderr
    assert any(line.lstrip().startswith("images") and f"{PAGES}/{PAGES}" in line for line in lines), result.stderr
