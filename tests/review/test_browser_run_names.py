"""The review sidebar names a training run by its folder (`train run --out`), never "run 5" (issue 15 item 14),
checked in a real browser (Debian's Chromium driven by Playwright) against uvicorn on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from curate.review.server import running
from harvest.scrape.render import CHROMIUM, CHROMIUM_ARGS
from storage.catalog.schema import runs
from tests.review.conftest import Catalogue

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not installed at {CHROMIUM}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


def test_the_sidebar_names_the_run_by_its_folder(catalogue: Catalogue, browser: Any) -> None:
    folder = str(catalogue.root / "runs" / "resnet-cats")
    ws = catalogue.open()
    with ws.catalog.write() as conn:  # what `train run` records: the run's folder
        conn.execute(update(runs).values(config={"model": "resnet18", "run_dir": folder}))
    with running(ws, port=0) as server:
        base = server.url.split("?")[0].rstrip("/")
        page = browser.new_context(viewport={"width": 1180, "height": 700}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        for view in ("", "?view=misclassified"):
            page.goto(base + "/" + view)
            page.wait_for_selector("body[data-ready='1']")
            sidebar = page.locator("aside").inner_text()
            assert folder in sidebar, sidebar
            assert "run 1" not in sidebar, sidebar
        titles = [page.locator(".card .pred").nth(i).get_attribute("title") or "" for i in range(2)]
        assert all(folder in title for title in titles), titles
        assert not errors, errors
