"""robots.txt with wildcard-heavy rules is matched in linear time (issue 16 item 2): a rule with 12 `*`
against a 40-character path took 263 s in one call with the regular-expression matcher. Through `harvest urls`
against a site of its own on 127.0.0.1 whose robots.txt is hostile."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvest.fetch.robots import parse_robots
from tests.harvest.test_import import Result, harvest, ok_json
from tests.support.site import Request, Response, Site

HOSTILE = "User-agent: *\nCrawl-delay: 0.25\nDisallow: /" + "*a" * 12 + "b\nAllow: /\n"
PATH_40 = "/img/x?q=" + "a" * 31


@pytest.fixture
def hostile_site(photos_dir: Path) -> Iterator[Site]:
    with Site(photos_dir) as running:
        running.route("/robots.txt", lambda _request: Response.text(HOSTILE))
        yield running


def test_wildcard_heavy_rules_are_linear_and_crawl_delay_is_read() -> None:
    rules = parse_robots(HOSTILE, "GleanerBot")
    started = time.monotonic()
    assert rules.allowed(PATH_40) and not rules.allowed(PATH_40 + "b")
    assert time.monotonic() - started < 0.5
    assert rules.crawl_delay == 0.25


def test_harvest_urls_under_a_hostile_robots_txt_finishes(hostile_site: Site, tmp_path: Path, ws: Path) -> None:
    name = hostile_site.photo_names[0]
    listing = tmp_path / "list.txt"
    listing.write_text(hostile_site.url(f"/img/{name}?q=" + "a" * 40) + "\n")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harvest.cli", "urls", str(listing), "--allow-private", "--json", "-w", str(ws)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    report = ok_json(Result(done.returncode, done.stdout, done.stderr))
    assert report["added"] == 1, report
    assert time.monotonic() - started < 30


def test_crawl_delay_spaces_requests_to_the_host(photos_dir: Path, tmp_path: Path, ws: Path) -> None:
    """`Crawl-delay: 0.4` is honoured across the download workers (capped at MAX_CRAWL_DELAY)."""
    times: list[float] = []
    with Site(photos_dir) as site:
        site.route("/robots.txt", lambda _request: Response.text("User-agent: *\nCrawl-delay: 0.4\n"))

        def image(request: Request) -> Response:
            times.append(time.monotonic())
            return Response.image(site.photo(request.path.rsplit("/", 1)[-1]))

        site.route("/cd/", image)
        listing = tmp_path / "list.txt"
        listing.write_text("".join(site.url(f"/cd/{name}") + "\n" for name in site.photo_names[:4]))
        args = ("urls", listing, "--allow-private", "--per-host-rate", "0", "--concurrency", "8", "--json")
        report = ok_json(harvest(*args, "-w", ws, cwd=tmp_path))
    assert report["added"] == 4, report
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) == 4 and min(gaps) >= 0.35, gaps
