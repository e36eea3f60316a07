"""`--render` with the real system Chromium: infinite scroll, the guard on browser requests, bad pages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harvest.fetch.client import Fetcher
from harvest.fetch.policy import FetchPolicy
from harvest.scrape.render import CHROMIUM, Renderer, url_check
from storage.catalog import iter_images
from storage.workspace import open_workspace
from tests.harvest.test_import import assert_summary, harvest, ok_json
from tests.harvest.test_scrape import run
from tests.support.pages import Shop
from tests.support.site import Response, Site

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"
    ),
    pytest.mark.usefixtures("fresh_counts"),
]


def stored(ws: Path) -> set[str]:
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        return {row["sha256"] for row in iter_images(conn)}


def shas(site: Site, names: list[str]) -> set[str]:
    return {hashlib.sha256(site.photo(name)).hexdigest() for name in names}


def test_infinite_scroll_gives_all_images_only_when_rendered(site: Site, shop: Shop, ws: Path) -> None:
    static = run(ws, site.url("/shop/feed"), label_from="css:h1.category")
    assert_summary(static, added=len(shop.feed_initial), failed=0)
    assert stored(ws) == shas(site, shop.feed_initial)
    assert site.hits["/shop/feed.json"] == 0

    rendered = ok_json(
        harvest(
            "scrape", site.url("/shop/feed"), "--render", "--scroll", "10", "--label-from", "css:h1.category",
            "--allow-private", "--json", "-w", ws, cwd=ws.parent,
        )
    )  # fmt: skip
    assert_summary(rendered, added=len(shop.feed_all) - len(shop.feed_initial), duplicates=len(shop.feed_initial))
    assert rendered["problems"] == []
    assert stored(ws) == shas(site, shop.feed_all)
    assert len(shop.feed_all) > len(shop.feed_initial)
    assert site.hits["/shop/feed.json"] >= 4  # the images came through the page's own JavaScript


def test_renderer_applies_the_guard_and_survives_bad_pages(site: Site) -> None:
    private = site.photo_names[50]
    public = site.photo_names[51]
    site.route(
        "/t/render/guarded",
        lambda _r: Response.html(f"<html><body><img src='/private/{private}'><img src='/img/{public}'></body></html>"),
    )
    site.route("/t/render/slow", lambda _r: Response.html("<html><body><img src='/fault/slow?delay=0.5'></body>"))
    site.route(
        "/t/render/spin",
        lambda _r: Response.html("<html><body><script>setTimeout(() => { for (;;) {} }, 50)</script></body></html>"),
    )
    with Fetcher(FetchPolicy(allow_private=True)) as fetcher:
        renderer = Renderer(check_url=url_check(fetcher, True), timeout=3, scroll_rounds=2, settle=0.3)
        try:
            page = renderer.render(site.url("/t/render/guarded"))
            assert page.ok, page.error
            assert site.hits[f"/private/{private}"] == 0  # robots.txt applies to the browser's requests too
            assert any(url.endswith(f"/private/{private}") for url, _ in renderer.blocked)
            assert site.url(f"/img/{public}") in page.image_urls

            missing = renderer.render(site.url("/t/render/absent"))
            assert (missing.error_kind, missing.status) == ("http_4xx", 404)
            slow = renderer.render(site.url("/t/render/slow"))
            assert slow.error_kind == "timeout"
            spin = renderer.render(site.url("/t/render/spin"))  # a script that never yields
            assert spin.error_kind == "timeout"

            again = renderer.render(site.url("/t/render/guarded"))  # the same browser goes on
            assert again.ok, again.error
        finally:
            renderer.close()

        # The last resort: a page past its deadline abandons the browser; the next page gets a new one.
        hasty = Renderer(check_url=url_check(fetcher, True), timeout=5, scroll_rounds=0, deadline=1.0)
        try:
            late = hasty.render(site.url("/t/render/slow"))
            assert late.error_kind == "timeout" and "did not settle" in (late.error or "")
            hasty.deadline = 60.0
            fresh = hasty.render(site.url("/t/render/guarded"))
            assert fresh.ok, fresh.error
        finally:
            hasty.close()

    served = site.hits["/t/render/guarded"]
    with Fetcher(FetchPolicy()) as strict:
        refused = Renderer(check_url=url_check(strict, True))
        try:
            page = refused.render(site.url("/t/render/guarded"))
        finally:
            refused.close()
    assert page.error_kind == "ssrf"
    assert site.hits["/t/render/guarded"] == served  # the refused navigation never reached the server
