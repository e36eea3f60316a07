"""A site that generates endless unique links cannot keep `harvest scrape --follow` crawling for ever (issue 16
item 19): with --follow and no --depth the crawl stops at a default depth, every run at a page budget, and the
summary says which limit cut it short. Against a real loopback site."""

from __future__ import annotations

from pathlib import Path

import pytest

import harvest.scrape.crawler as crawler
from tests.harvest.test_import import harvest, ok_json
from tests.harvest.test_scrape import run
from tests.support.site import Request, Response, Site


@pytest.fixture
def endless(site: Site) -> Site:
    """/endless/N links to /endless/N+1 and /endless/N+1000000: a calendar or search page that never ends."""

    def page(request: Request) -> Response:
        number = int(request.path.rsplit("/", 1)[1])
        links = "".join(f"<a class='more' href='/endless/{number + step}'>more</a>" for step in (1, 1_000_000))
        return Response.html(f"<html><body><h1>Page {number}</h1>{links}</body></html>")

    site.route("/endless/", page)
    return site


def test_follow_without_depth_stops_at_the_default_depth_and_says_so(
    endless: Site, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crawler, "FOLLOW_DEPTH", 3)  # the real default (50) works the same, with more pages
    document = run(ws, endless.url("/endless/0"), follow="a.more", label="page")
    # depth d holds the d+1 pages N = a + 1,000,000 b with a + b = d: 1 + 2 + 3 + 4 pages for depths 0..3
    assert document["pages"]["fetched"] == 1 + 2 + 3 + 4
    assert any("were not followed" in warning and "default depth" in warning for warning in document["warnings"])
    assert document["complete"]  # nothing beyond the depth was queued


def test_the_page_budget_stops_a_run_says_so_and_a_rerun_continues(endless: Site, ws: Path) -> None:
    args = ("scrape", endless.url("/endless/0"), "--allow-private", "--label", "page", "--follow", "a.more")
    before = dict(endless.hits)  # the site may have served this route to an earlier test
    first = ok_json(harvest(*args, "--max-pages", "5", "--json", "-w", ws, cwd=ws.parent))
    assert first["pages"]["fetched"] == 5 and first["limited"] and not first["complete"]
    assert any("stopped after 5 pages" in warning for warning in first["warnings"])
    shown = harvest(*args, "--max-pages", "5", "-w", ws, cwd=ws.parent)
    assert shown.code == 0 and "stopped after 5 pages" in shown.stderr and "Traceback" not in shown.stderr
    assert "--max-images" not in shown.stderr
    fetched = sorted(p for p, n in endless.hits.items() if p.startswith("/endless/") and n > before.get(p, 0))
    assert len(fetched) == 10, (fetched, [endless.hits[p] for p in fetched])  # the rerun went on
