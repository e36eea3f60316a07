"""`harvest scrape` end to end against the fixture shop on a real loopback server (tests/support/pages.py).

The acceptance runs (category pages, SSRF refusal, kill-and-resume) go through the console entry point as a
user would; the others call the library in-process with a fetch policy without rate limit or retries, so
that they stay quick.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harvest.fetch.client import Fetcher
from harvest.fetch.policy import FetchPolicy
from harvest.scrape.crawler import ScrapeOptions, scrape
from storage.catalog import image_sources, iter_images, label_counts
from storage.errors import GleanerError
from storage.workspace import open_workspace
from tests.harvest.test_import import assert_summary, curate, harvest, ok_json
from tests.support.pages import Shop
from tests.support.site import Request, Response, Site

CATEGORY = ("--label-from", "css:h1.category", "--follow", "li.next a")
pytestmark = pytest.mark.usefixtures("fresh_counts")  # request counts from each test only


def cli_scrape(ws: Path, *args: str | Path) -> Any:
    return ok_json(harvest("scrape", *args, "--json", "-w", ws, cwd=ws.parent))


def run(ws: Path, *seeds: str, **options: Any) -> dict[str, Any]:
    """The library in-process: no rate limit, no retries, ingest in this process."""
    policy = FetchPolicy(allow_private=True, per_host_rate=0, retries=0)
    with open_workspace(ws) as workspace, Fetcher(policy) as fetcher:
        settings = ScrapeOptions(seeds=seeds, allow_private=True, ingest_workers=1, **options)
        return scrape(workspace, settings, fetcher=fetcher).to_json()


def catalog_labels(ws: Path) -> dict[str, int]:
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        return dict(label_counts(conn, include_empty=False))


def catalog_shas(ws: Path) -> dict[str, dict[str, Any]]:
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        return {row["sha256"]: row for row in iter_images(conn)}


def sha_of(site: Site, name: str) -> str:
    return hashlib.sha256(site.photo(name)).hexdigest()


def labels(ws: Path) -> dict[str, int]:
    return dict(ok_json(curate("labels", "--json", "-w", ws, cwd=ws.parent))["labels"])


def fsck_ok(ws: Path) -> None:
    report = ok_json(curate("fsck", "--json", "-w", ws, cwd=ws.parent))
    assert report["ok"] is True, report


def test_category_pages_with_follow_and_label_from(site: Site, shop: Shop, ws: Path) -> None:
    seeds = [site.url(path) for path in shop.seeds]
    document = cli_scrape(ws, *seeds, *CATEGORY, "--allow-private")
    # 15 photos; the same photo under a second URL is a duplicate, the tracking pixel is rejected and the
    # /private/ link is refused by robots.txt without a request.
    assert_summary(document, added=shop.expected_count, duplicates=1, rejected=1, failed=1)
    reasons = {p["item"].removeprefix(site.base_url): p["reason"] for p in document["problems"]}
    assert reasons[shop.private[0]].startswith("robots:")
    assert "too small" in reasons["/fault/pixel.gif"]
    assert document["pages"] == {"fetched": 4, "failed": 0, "pending": 0}
    assert document["complete"] is True

    assert labels(ws) == {label: len(names) for label, names in shop.expected.items()}
    stored = catalog_shas(ws)
    for label, names in shop.expected.items():
        for name in names:
            assert stored[sha_of(site, name)]["label"] == label, name
    assert len(stored) == shop.expected_count
    for path in shop.private + shop.never_fetched:
        assert site.hits[path] == 0, path  # robots.txt obeyed; only the largest srcset candidate fetched
    assert all(hit.user_agent and "Gleaner" in hit.user_agent for hit in site.log)

    # Provenance: image URL, page URL, alt text, HTTP status and fetch time.
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        (source,) = image_sources(conn, sha_of(site, shop.expected["Shoes"][1]))
    assert source["kind"] == "scrape"
    assert source["uri"] == site.url(f"/img/{shop.expected['Shoes'][1]}")
    assert source["page_url"] == site.url("/shop/shoes?page=1")
    assert source["alt_text"] == "Shoe one"
    assert source["http_status"] == 200 and source["fetched_at"] is not None
    assert source["extra"]["via"] == "srcset"

    images_before = _img_hits(site)
    again = cli_scrape(ws, *seeds, *CATEGORY, "--allow-private")
    assert_summary(again, added=0, duplicates=0, rejected=0, failed=0)
    assert again["complete"] is True
    assert _img_hits(site) == images_before  # nothing fetched again
    fsck_ok(ws)


def test_loopback_is_refused_without_allow_private(site: Site, shop: Shop, ws: Path) -> None:
    seeds = [site.url(path) for path in shop.seeds]
    refused = harvest("scrape", *seeds, *CATEGORY, "--json", "-w", ws, cwd=ws.parent)
    assert refused.code != 0  # nothing it was asked could be done (issue 15 item 5)
    document = json.loads(refused.stdout)
    assert "nothing collected" in document["error"]
    assert_summary(document, added=0, duplicates=0, rejected=0, failed=2)
    assert {p["kind"] for p in document["problems"]} == {"page"}
    assert all(p["reason"].startswith("ssrf:") and "--allow-private" in p["reason"] for p in document["problems"])
    assert not any(path.startswith("/shop/") for path in site.hits)
    # The same scrape with --allow-private lifts the refusal: the refused seeds are fetched now.
    assert run(ws, *seeds, label_from="css:h1.category", follow="li.next a")["added"] == shop.expected_count

    human = harvest("scrape", site.url("/shop/all?page=1"), "-w", ws, cwd=ws.parent)
    assert human.code != 0 and "Traceback" not in human.stderr
    assert "error: nothing collected" in human.stderr and "ssrf" in human.stderr


def test_max_images_then_resume(site: Site, shop: Shop, ws: Path) -> None:
    options: dict[str, Any] = {"label_from": "css:h1.category", "follow": "li.next a"}
    first = run(ws, site.url("/shop/all?page=1"), max_images=7, **options)
    assert_summary(first, added=7, failed=0)
    assert first["limited"] is True and first["complete"] is False
    rest = run(ws, site.url("/shop/all?page=1"), concurrency=3, **options)
    assert_summary(rest, added=len(shop.all_expected) - 7, duplicates=0, failed=0)
    assert rest["complete"] is True and rest["limited"] is False
    assert catalog_labels(ws) == {"Everything": len(shop.all_expected)}


def test_select_depth_and_label_from_url_and_alt(site: Site, shop: Shop, ws: Path) -> None:
    products = run(ws, site.url("/shop/bags"), select="div.product img", label_from=r"url:/shop/(\w+)")
    assert_summary(products, added=4)
    assert catalog_labels(ws) == {"bags": 4}
    # --depth 1 without --follow follows every in-scope link of the seed (here the pager and the nav).
    alt = run(ws, site.url("/shop/shoes?page=3"), depth=1, label_from="alt", label="unlabelled")
    assert alt["pages"]["fetched"] == 4  # page 3, its prev link (page 2), nav: shoes page 1 and bags
    assert alt["pages"]["failed"] == 1  # the nav link to "/" is a 404
    found = catalog_labels(ws)
    assert found["Shoe eight"] == 1 and found["Shoe one"] == 1 and found["bags"] == 4
    assert found["unlabelled"] == 1  # og:image has no alt text: the --label fallback


def test_retry_failed_requeues_only_failures(site: Site, ws: Path) -> None:
    names = site.photo_names[200:204]
    body = "".join(
        [
            f"<img src='/fault/switch/retry-a?img={names[0]}'>",
            f"<img src='/fault/switch/retry-b?img={names[1]}'>",
            "<img src='/img/no-such-photo.jpg'>",
            *(f"<img src='/img/{name}'>" for name in names[2:]),
        ]
    )
    site.flags.update({"retry-a": False, "retry-b": False})  # the site is shared: start from a known state
    site.route("/t/retry", lambda _request: Response.html(f"<html><body>{body}</body></html>"))
    seed = site.url("/t/retry")
    first = run(ws, seed, max_images=4, concurrency=4)
    # Two 500s (recorded as failed, worth retrying), a 404 (final), one photo, one left pending.
    assert_summary(first, added=1, failed=3)
    assert first["frontier"] == {"pending": 1, "done": 2, "failed": 2, "skipped": 1}

    site.flags.update({"retry-a": True, "retry-b": True})
    retried = run(ws, seed, retry_failed=True)
    assert_summary(retried, added=2, failed=0)
    assert retried["requeued"] == 2
    assert retried["images"]["pending"] == 1  # --retry-failed leaves other pending work alone
    assert site.hits["/img/no-such-photo.jpg"] == 1  # a 404 is final

    rest = run(ws, seed)
    assert_summary(rest, added=1, failed=0)
    assert rest["complete"] is True
    assert len(catalog_shas(ws)) == 4


def test_alt_text_of_images_queued_by_an_earlier_run_is_kept(site: Site, ws: Path) -> None:
    """An image the first run listed but could not fetch keeps its page's alt text when a later run gets it."""
    name = site.photo_names[210]
    site.flags["alt-later"] = False
    page = f"<html><body><img alt='a red fox at dusk' src='/fault/switch/alt-later?img={name}'></body></html>"
    site.route("/t/alt", lambda _request: Response.html(page))
    seed = site.url("/t/alt")
    first = run(ws, seed)
    assert_summary(first, added=0, failed=1)

    site.flags["alt-later"] = True
    again = run(ws, seed)  # a new crawler: what it knows of the image comes from the frontier
    assert_summary(again, added=1, failed=0)
    assert site.hits["/t/alt"] == 1  # the page was not fetched again
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        (source,) = image_sources(conn, sha_of(site, name))
    assert source["alt_text"] == "a red fox at dusk"
    assert source["page_url"] == seed


def test_user_errors_are_one_line(site: Site, ws: Path) -> None:
    for options, needle in (
        ({"select": "div["}, "--select: invalid CSS selector"),
        ({"follow": "a:nope(1)"}, "--follow: invalid CSS selector"),
        ({"label_from": "xpath://h1"}, "expected css:SELECTOR"),
        ({"label_from": "url:("}, "regular expression"),
    ):
        with pytest.raises(GleanerError, match=needle.replace("(", r"\(")):
            run(ws, site.url("/shop/bags"), **options)
    with pytest.raises(GleanerError, match=r"not an http\(s\) URL"):
        run(ws, "ftp://example.org/x")
    result = harvest("scrape", site.url("/shop/bags"), "--select", "div[", "--json", "-w", ws, cwd=ws.parent)
    assert result.code != 0 and "--select: invalid CSS selector" in json.loads(result.stdout)["error"]  # --json
    assert "Traceback" not in result.stderr and "--select: invalid CSS selector" in result.stderr, result.stderr
    assert not site.hits  # nothing was fetched


def _img_hits(site: Site) -> int:
    return sum(count for path, count in site.hits.items() if path.startswith("/img/"))


def _start(ws: Path, *args: str) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "harvest.cli", "scrape", *args, "--json", "-w", str(ws)],
        cwd=ws.parent,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the ingest workers with it
    )


def test_three_sigkills_then_resume(site: Site, shop: Shop, ws: Path) -> None:
    args = (site.url("/shop/all?page=1"), *CATEGORY, "--allow-private", "--concurrency", "6")
    kills = 0
    total = len(shop.all_expected)
    for threshold in (total // 8, total // 2, 3 * total // 4):  # image requests served so far, over all runs
        process = _start(ws, *args)
        deadline = time.monotonic() + 60
        while _img_hits(site) < threshold and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)
    assert kills == 3, "every run should still have been working when it was killed"
    assert len(catalog_shas(ws)) < total

    final = cli_scrape(ws, *args)
    assert final["complete"] is True and final["failed"] == 0, final
    stored = catalog_shas(ws)
    assert set(stored) == {sha_of(site, name) for name in shop.all_expected}  # every image exactly once
    assert labels(ws) == {"Everything": total}
    fsck_ok(ws)
    before = _img_hits(site)
    assert run(ws, *args[:1], label_from="css:h1.category", follow="li.next a")["added"] == 0
    assert _img_hits(site) == before  # once done, a rerun fetches nothing


def test_hostile_and_faulty_pages_do_not_stop_the_crawl(site: Site, ws: Path) -> None:
    photo = site.photo_names[210]
    huge_attr = "x" * 300_000
    pages = {
        "/t/hostile/1": (
            f"<html><body><img src='/img/{photo}' alt='{huge_attr}'><img src='/fault/html-as-jpeg'>"
            "<img src='javascript:alert(1)'><img src='data:image/png;base64,AAAA'><<<img src=>"
            "<a href='/t/hostile/2'>next</a><a href='/fault/loop'>loop</a>"
            + "".join(f"<img src='/img/missing-{i}.jpg'>" for i in range(3))
        ),
        "/t/hostile/2": "\x00\xff<html><body><img src='/fault/noai'><a href='/t/hostile/1'>back</a>",
    }

    def handler(request: Request) -> Response:
        text = pages.get(request.path)
        return Response.html(text) if text is not None else Response.text("gone", 404)

    site.route("/t/hostile/", handler)
    document = run(ws, site.url("/t/hostile/1"), depth=3)
    assert_summary(document, added=1)
    kinds = {p["item"].removeprefix(site.base_url): p["reason"].split(":", 1)[0] for p in document["problems"]}
    assert kinds["/fault/html-as-jpeg"] == "content_type"
    assert kinds["/fault/noai"] == "noai"
    assert kinds["/fault/loop"] == "redirect_loop"
    assert kinds["/img/missing-0.jpg"] == "http_4xx"
    assert document["pages"]["fetched"] == 2


def test_shared_fetch_options_user_agent_and_per_host_concurrency(site: Site, ws: Path) -> None:
    """`harvest scrape` takes the same fetch options as `harvest urls`: the user agent reaches every request
    (robots.txt, pages, images) and one per-host budget holds across the page fetcher and the image workers."""
    names = site.photo_names[120:130]
    body = "".join(f"<img src='/fault/hold?ms=120&img={name}'>" for name in names)
    site.route("/t/shared-options", lambda _request: Response.html(f"<html><body>{body}</body></html>"))
    agent = "ShotCollector/3.1 (+mailto:me@example.org)"
    document = cli_scrape(
        ws, site.url("/t/shared-options"), "--allow-private", "--user-agent", agent, "--per-host-rate", "0",
        "--per-host-concurrency", "2", "--concurrency", "8",
    )  # fmt: skip
    assert len(names) == 10
    assert_summary(document, added=len(names), failed=0, rejected=0)
    assert site.hits["/fault/hold"] == len(names)
    assert site.peaks["hold"] == 2  # 8 fetches wanted the host at once; the shared budget let 2 in
    assert {hit.user_agent for hit in site.log} == {agent}
