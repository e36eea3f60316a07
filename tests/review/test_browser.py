"""The review app in a real browser (Debian's Chromium driven by Playwright) against uvicorn on 127.0.0.1:0.

One walk through the keyboard workflow, checking the catalog after every step: relabel with digit keys, add a
label, undo, reject, select and accept, the detail view, bulk-accept a filtered view and undo it, and two tabs
staying consistent. It also saves the README's screenshot of the grid (docs/review-grid.png).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from curate.cli import app as curate_app
from curate.review.server import running
from harvest.scrape.render import CHROMIUM, CHROMIUM_ARGS
from storage.catalog import get_image
from storage.catalog.duplicates import load_decisions
from storage.workspace import Workspace
from tests.review.conftest import LABELS, Catalogue, Pairs

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "review-grid.png"
SCREENSHOT_LIMIT = 300_000

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not installed at {CHROMIUM}")


def curate_labels(root: Path) -> dict[str, int]:
    """`curate labels --json`, the acceptance check: what the catalog says after a key press."""
    with contextlib.chdir(root.parent):
        result = CliRunner().invoke(curate_app, ["labels", "--json", "-w", str(root)], env={"GLEANER_WORKSPACE": None})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["labels"]


class Model:
    """What the catalog should hold: labels and review states we expect, and the counts `curate labels` gives."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.labels: dict[str, str | None] = dict(zip(catalogue.shas, LABELS, strict=True))
        self.review = dict.fromkeys(catalogue.shas, "unreviewed")
        self.duplicates = {catalogue.shas[1], catalogue.shas[4]}
        self.known = {"cat", "dog"}

    def counts(self) -> dict[str, int]:
        counted = dict.fromkeys(sorted(self.known), 0)
        for sha, label in self.labels.items():
            if label and sha not in self.duplicates and self.review[sha] != "rejected":
                counted[label] += 1
        return counted

    def check(self, ws: Workspace, root: Path) -> None:
        with ws.catalog.read() as conn:
            for sha in self.labels:
                row = get_image(conn, sha)
                assert row is not None
                assert (row["label"], row["review"]) == (self.labels[sha], self.review[sha]), sha[:12]
        assert curate_labels(root) == self.counts()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


def settled(page: Any) -> None:
    """Every optimistic change has its server confirmation (the page counts requests in flight).
    Selectors, not wait_for_function: the app's CSP forbids eval, and the test keeps the CSP on."""
    page.wait_for_selector("body[data-inflight='0']")


def ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready='1']")


def card(page: Any, index: int) -> Any:
    return page.locator(".grid .card").nth(index)


def save_screenshot(page: Any, path: Path) -> None:
    """A 256-colour PNG keeps the README's image small."""
    shot = Image.open(io.BytesIO(page.screenshot()))
    path.parent.mkdir(parents=True, exist_ok=True)
    shot.convert("RGB").quantize(colors=256).save(path, optimize=True)


def test_review_with_the_keyboard(catalogue: Catalogue, browser: Any, tmp_path: Path) -> None:
    ws = catalogue.open()
    model = Model(catalogue)
    with running(ws, port=0) as server:
        base = server.url.split("?")[0].rstrip("/")
        context = browser.new_context(viewport={"width": 1180, "height": 700})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: dialog.accept())

        # Without the token: 401. With it: a session cookie, and the token leaves the address bar.
        assert page.goto(base + "/").status == 401
        page.goto(server.url)
        ready(page)
        assert page.url == base + "/"
        cookie = context.cookies()[0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        shas = [card(page, i).get_attribute("data-sha") for i in range(10)]
        assert sorted(shas) == sorted(catalogue.shas)

        # Focus starts on the first image; `2` gives it the second label of the legend (cat, dog).
        assert "focus" in (card(page, 0).get_attribute("class") or "")
        page.keyboard.press("2")
        settled(page)
        model.labels[shas[0]] = "dog"
        model.check(ws, catalogue.root)
        assert card(page, 0).locator(".lab").inner_text() == "dog"
        assert "focus" in (card(page, 1).get_attribute("class") or "")  # and the focus moves on

        # A new label from the legend; keys follow creation order, so "bird" comes last, on `3`.
        page.fill("#add-label input", "bird")
        page.keyboard.press("Enter")
        settled(page)
        page.wait_for_selector("#legend li[data-label='bird']")
        assert page.locator("#legend li").last.inner_text().split()[:2] == ["3", "bird"]
        page.keyboard.press("3")
        settled(page)
        model.known.add("bird")
        previous = model.labels[shas[1]]
        model.labels[shas[1]] = "bird"
        model.check(ws, catalogue.root)

        # `u` undoes it (in the catalog too, as new history).
        page.keyboard.press("u")
        settled(page)
        model.labels[shas[1]] = previous
        model.check(ws, catalogue.root)
        assert card(page, 1).locator(".lab").inner_text() == (previous or "unlabelled")

        assert "focus" in (card(page, 1).get_attribute("class") or "")  # undo focused the image it undid

        # `x` rejects the focused image (the third, one to the right).
        page.keyboard.press("ArrowRight")
        page.keyboard.press("x")
        settled(page)
        model.review[shas[2]] = "rejected"
        model.check(ws, catalogue.root)

        # `space` selects, shift+arrow extends the selection, `a` accepts both.
        page.keyboard.press(" ")
        page.keyboard.press("Shift+ArrowRight")
        assert page.locator(".card.selected").count() == 2
        page.keyboard.press("a")
        settled(page)
        model.review[shas[3]] = model.review[shas[4]] = "accepted"
        model.check(ws, catalogue.root)
        page.wait_for_load_state("networkidle")  # every lazy thumbnail in view has loaded
        page.wait_for_selector("#toast[hidden]", state="attached")
        save_screenshot(page, SCREENSHOT)
        assert SCREENSHOT.stat().st_size < SCREENSHOT_LIMIT

        # The detail view: keys work there too (then the next image), and the label history shows the change.
        page.keyboard.press("Escape")
        assert page.locator(".card.selected").count() == 0
        page.keyboard.press("Enter")
        ready(page)
        assert page.url.startswith(f"{base}/image/{shas[4]}")
        with page.expect_navigation():
            page.keyboard.press("1")  # cat, dog, bird: cat
        ready(page)
        assert page.url.startswith(f"{base}/image/{shas[5]}")
        model.labels[shas[4]] = "cat"
        model.check(ws, catalogue.root)
        with page.expect_navigation():
            page.keyboard.press("p")
        ready(page)
        expect(page.locator("#label-history tr:nth-child(2) td:nth-child(4)")).to_have_text("cat")
        page.wait_for_load_state("networkidle")
        save_screenshot(page, tmp_path / "review-detail.png")
        page.keyboard.press("Escape")
        ready(page)
        assert page.url == base + "/"

        # Bulk-accept a filtered view (label cat, every page), then undo it.
        page.click("#legend li[data-label='cat'] a")
        ready(page)
        assert page.url == base + "/?label=cat"
        cats = [sha for sha, label in model.labels.items() if label == "cat"]
        assert page.locator(".grid .card").count() == len(cats)
        before = {sha: model.review[sha] for sha in cats}
        page.keyboard.press("Shift+A")  # the whole-view dialog says how many change, then Apply
        changing = sum(1 for sha in cats if model.review[sha] != "accepted")
        expect(page.locator("#picker-impact")).to_have_text(f"{changing} of {len(cats)} images will change")
        page.click("#picker-apply")
        settled(page)
        for sha in cats:
            model.review[sha] = "accepted"
        model.check(ws, catalogue.root)
        page.keyboard.press("u")
        settled(page)
        model.review.update(before)
        model.check(ws, catalogue.root)

        # Two tabs stay consistent: a change in one shows up in the other.
        other = context.new_page()
        other.goto(base + "/")
        ready(other)
        page.goto(base + "/")
        ready(page)
        page.keyboard.press("3")  # bird, on the first image
        settled(page)
        model.labels[shas[0]] = "bird"
        model.check(ws, catalogue.root)
        expect(other.locator(f".card[data-sha='{shas[0]}'] .lab")).to_have_text("bird", timeout=10_000)
        assert errors == []
        context.close()
    ws.close()


CANDIDATES_SCREENSHOT = SCREENSHOT.parent / "review-candidates.png"


def duplicate_of(ws: Workspace, sha: str) -> str | None:
    with ws.catalog.read() as conn:
        row = get_image(conn, sha)
    assert row is not None
    return row["duplicate_of"]


def press_and_reload(page: Any, key: str) -> None:
    """A near-duplicate decision reloads the page once the server has it (pairs leave, groups change)."""
    with page.expect_navigation():
        page.keyboard.press(key)
    ready(page)


def test_decide_near_duplicates_with_the_keyboard(pairs: Pairs, browser: Any) -> None:
    """Real candidates (photos and edited copies ingest could not verify): d, k, s and u in the Candidates view,
    then k and the split button in the Duplicates view, checking the catalog after each. Saves
    docs/review-candidates.png."""
    ws = pairs.open()
    (cat, dog, plain), (cat_copy, dog_copy, plain_copy) = pairs.originals, pairs.copies
    with running(ws, port=0) as server:
        base = server.url.split("?")[0].rstrip("/")
        context = browser.new_context(viewport={"width": 1180, "height": 940})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url)
        ready(page)
        page.click("nav.views a[data-view='candidates']")
        ready(page)
        assert page.url == base + "/?view=candidates"
        pair_rows = page.locator(".pairs .pair")
        assert pair_rows.count() == 3
        # closest first: the dog pair (distance 8), the cat pair, the unlabelled one; the better keeper on the left
        shown = [(pair_rows.nth(i).get_attribute("data-a"), pair_rows.nth(i).get_attribute("data-b")) for i in range(3)]
        assert shown == [(dog, dog_copy), (cat, cat_copy), (plain, plain_copy)]
        assert "focus" in (page.locator(".pairs .card").first.get_attribute("class") or "")
        page.wait_for_load_state("networkidle")
        save_screenshot(page, CANDIDATES_SCREENSHOT)
        assert CANDIDATES_SCREENSHOT.stat().st_size < SCREENSHOT_LIMIT

        # `d`: the pair are duplicates, the left one kept; the pair leaves the view.
        press_and_reload(page, "d")
        assert duplicate_of(ws, dog_copy) == dog
        assert pair_rows.count() == 2
        assert page.locator(".card.focus").get_attribute("data-sha") == cat  # the focus moved to the next pair

        # `→` then `k`: keep the copy on the right, the photo is set aside as its copy.
        page.keyboard.press("ArrowRight")
        press_and_reload(page, "k")
        assert duplicate_of(ws, cat) == cat_copy and duplicate_of(ws, cat_copy) is None
        with ws.catalog.read() as conn:
            assert cat_copy in load_decisions(conn).keepers
        assert pair_rows.count() == 1

        # `u` takes it back: the pair waits again, in the catalog and on the page.
        press_and_reload(page, "u")
        assert duplicate_of(ws, cat) is None
        with ws.catalog.read() as conn:
            assert cat_copy not in load_decisions(conn).keepers
        assert pair_rows.count() == 2

        # `s` on the focused pair (the unlabelled one, where the focus was): not duplicates.
        assert page.locator(".card.focus").get_attribute("data-sha") == plain_copy
        press_and_reload(page, "s")
        with ws.catalog.read() as conn:
            assert load_decisions(conn).separated(plain, plain_copy)
        assert [pair_rows.nth(i).get_attribute("data-a") for i in range(pair_rows.count())] == [cat]

        # The Duplicates view: `k` on the copy makes it the keeper; the split button takes the other one out.
        page.click("nav.views a[data-view='duplicates']")
        ready(page)
        cards = page.locator(".grid .card")
        assert [cards.nth(i).get_attribute("data-sha") for i in range(cards.count())] == [dog, dog_copy]
        page.keyboard.press("ArrowRight")
        press_and_reload(page, "k")
        assert duplicate_of(ws, dog) == dog_copy and duplicate_of(ws, dog_copy) is None
        assert [cards.nth(i).get_attribute("data-sha") for i in range(cards.count())] == [dog_copy, dog]
        with page.expect_navigation():
            page.click(f".card[data-sha='{dog}'] button[data-dedupe='split']")
        ready(page)
        assert duplicate_of(ws, dog) is None
        with ws.catalog.read() as conn:
            assert load_decisions(conn).separated(dog, dog_copy)
        assert cards.count() == 0

        # The detail view lists the image's decisions.
        page.goto(f"{base}/image/{dog}")
        ready(page)
        rows = page.locator("#dedupe-history tr")
        assert rows.count() == 1 + 2  # the header; "duplicates" (replaced), then "not duplicates" (in force)
        assert "duplicates" in rows.nth(1).inner_text() and "revoked" in rows.nth(1).inner_text()
        assert "not duplicates" in rows.nth(2).inner_text() and "yes" in rows.nth(2).inner_text()
        assert errors == []
        context.close()
    ws.close()
