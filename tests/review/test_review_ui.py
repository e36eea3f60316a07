"""The review UI's usability promises, in a real browser (Debian's Chromium driven by Playwright).

Digit keys that stay put (creation order, `0` the tenth, a typed-prefix picker for the rest, a key map that
stays on screen), keeping the reviewer's place (back to the card left, the next image after labelling in the
detail view, undo focusing what it undid), mouse buttons for every action and a whole-view dialog that says
what it will change, and small images drawn with sharp pixels. Each test checks the catalog, not only the page.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from curate.review.server import running
from harvest.scrape.render import CHROMIUM, CHROMIUM_ARGS
from storage.catalog import add_label, get_image
from storage.ingest import IngestItem, Ingestor, source_for_path
from storage.workspace import Workspace
from tests.review.conftest import Catalogue

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not installed at {CHROMIUM}")

# Fashion-MNIST's classes, created after the fixture's cat and dog: twelve labels, so keys run out.
FASHION = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


class App:
    """One server on port 0 and one page logged in with its token; `errors` collects the page's script errors."""

    def __init__(self, browser: Any, ws: Workspace, url: str, viewport: tuple[int, int]) -> None:
        self.ws = ws
        self.base = url.split("?")[0].rstrip("/")
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url)
        self.ready()

    def ready(self) -> None:
        self.page.wait_for_selector("body[data-ready='1']")

    def settled(self) -> None:
        self.page.wait_for_selector("body[data-inflight='0']")

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.ready()

    def cards(self) -> list[str]:
        cards = self.page.locator(".grid .card")
        return [cards.nth(i).get_attribute("data-sha") for i in range(cards.count())]

    def focused(self) -> str | None:
        return self.page.locator(".card.focus").get_attribute("data-sha")

    def press_and_load(self, key: str) -> None:
        with self.page.expect_navigation():
            self.page.keyboard.press(key)
        self.ready()

    def state(self, sha: str) -> tuple[str | None, str]:
        with self.ws.catalog.read() as conn:
            row = get_image(conn, sha)
        assert row is not None
        return row["label"], row["review"]


@pytest.fixture
def app(catalogue: Catalogue, browser: Any, request: pytest.FixtureRequest) -> Iterator[App]:
    ws = catalogue.open()
    viewport = getattr(request, "param", (1180, 700))
    with running(ws, port=0) as server:
        opened = App(browser, ws, server.url, viewport)
        yield opened
        assert opened.errors == []
        opened.context.close()
    ws.close()


def legend_keys(page: Any) -> list[tuple[str, str]]:
    items = page.locator("#legend li")
    return [
        (items.nth(i).locator("kbd").inner_text(), items.nth(i).get_attribute("data-label"))
        for i in range(items.count())
    ]


@pytest.mark.parametrize("app", [(1180, 420)], indirect=True)
def test_digit_keys_follow_creation_order(app: App) -> None:
    """Keys follow creation order and stay put when a label is added; `0` is the tenth label, `l` with a typed
    prefix reaches the others; the key map stays on screen when the page scrolls."""
    with app.ws.catalog.write() as conn:
        for name in FASHION:
            add_label(conn, name, actor="test")
    page = app.page
    app.go("/")
    keyed = ["cat", "dog", *FASHION[:8]]  # cat and dog came first, with the fixture's images
    expected = [(str((i + 1) % 10), name) for i, name in enumerate(keyed)] + [("", "bag"), ("", "ankle boot")]
    assert legend_keys(page) == expected
    shas = app.cards()

    # `0` gives the tenth label, sneaker (not "remove the label")
    page.keyboard.press("0")
    app.settled()
    assert app.state(shas[0])[0] == "sneaker"

    # a new label goes to the end: no key moves ("aardvark" would be first alphabetically)
    page.fill("#add-label input", "aardvark")
    page.keyboard.press("Enter")
    app.settled()
    page.wait_for_selector("#legend li[data-label='aardvark']")
    assert legend_keys(page) == [*expected, ("", "aardvark")]
    page.keyboard.press("4")  # trouser, as before
    app.settled()
    assert app.state(shas[1])[0] == "trouser"

    # `l` and a typed prefix: the first label that starts with it, applied with Enter
    page.keyboard.press("l")
    page.keyboard.type("ba")
    expect(page.locator("#picker-list li.active")).to_have_attribute("data-label", "bag")
    page.keyboard.press("Enter")
    app.settled()
    assert app.state(shas[2])[0] == "bag"
    page.keyboard.press("l")
    page.keyboard.type("ANK")  # case does not matter
    page.keyboard.press("Enter")
    app.settled()
    assert app.state(shas[3])[0] == "ankle boot"
    # the arrow keys move through the matches ("s": sandal, shirt, sneaker in creation order)
    page.keyboard.press("l")
    page.keyboard.type("s")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#picker-list li.active")).to_have_attribute("data-label", "shirt")
    page.keyboard.press("Enter")
    app.settled()
    assert app.state(shas[4])[0] == "shirt"

    # the key map is on screen wherever the page is scrolled, in the grid and in the detail view
    page.mouse.wheel(0, 5000)
    page.wait_for_timeout(200)
    expect(page.locator("#keymap")).to_be_in_viewport()
    expect(page.locator("#keymap [data-key='0']")).to_have_text("0sneaker")
    page.keyboard.press("Enter")
    app.ready()
    page.mouse.wheel(0, 5000)
    page.wait_for_timeout(200)
    expect(page.locator("#keymap [data-key='1']")).to_be_in_viewport()
    expect(page.locator("#keymap [data-key='1']")).to_have_text("1cat")


def test_keep_the_place(app: App) -> None:
    """Esc returns to the card left (also across a page boundary), labelling in the detail view moves to the
    next image, and undo focuses (or opens) the image it undid."""
    page = app.page
    shas = app.cards()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    app.press_and_load("Enter")
    assert page.url.startswith(f"{app.base}/image/{shas[5]}")
    app.press_and_load("Escape")
    assert page.url == app.base + "/"
    assert app.focused() == shas[5]

    # back to the grid after moving on in the detail view: the focus is on the image last seen
    app.press_and_load("Enter")
    app.press_and_load("n")
    assert page.url.startswith(f"{app.base}/image/{shas[6]}")
    page.click("#back")
    app.ready()
    assert app.focused() == shas[6]

    # labelling in the detail view: saved, then the next image
    app.press_and_load("Enter")
    before = app.state(shas[6])
    key, name = ("2", "dog") if before[0] == "cat" else ("1", "cat")
    app.press_and_load(key)
    assert app.state(shas[6])[0] == name
    assert page.url.startswith(f"{app.base}/image/{shas[7]}")
    app.press_and_load("x")  # accept and reject move on too
    assert app.state(shas[7])[1] == "rejected"
    assert page.url.startswith(f"{app.base}/image/{shas[8]}")

    # undo there goes back to the image it undid
    app.press_and_load("u")
    assert app.state(shas[7])[1] == "unreviewed"
    assert page.url.startswith(f"{app.base}/image/{shas[7]}")
    app.press_and_load("u")
    assert app.state(shas[6]) == before
    assert page.url.startswith(f"{app.base}/image/{shas[6]}")

    # undo in the grid focuses the image it undid
    app.press_and_load("Escape")
    assert app.focused() == shas[6]
    page.keyboard.press("x")
    app.settled()
    assert app.focused() == shas[7]
    for _ in range(2):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("u")
    app.settled()
    assert app.state(shas[6])[1] == "unreviewed"
    assert app.focused() == shas[6]

    # pages of 4: the next image of the last card is on the second page; Esc opens the page that holds it
    app.go("/?n=4")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    app.press_and_load("Enter")
    app.press_and_load("n")
    assert page.url.startswith(f"{app.base}/image/{shas[4]}")
    app.press_and_load("Escape")
    assert shas[4] in app.cards() and app.focused() == shas[4]
    assert page.locator("#prev-page").count() == 1


def test_mouse_buttons_and_the_whole_view_dialog(app: App) -> None:
    """Buttons on each card and in the detail view label, accept and reject; "label all…" is a dialog of its
    own that says how many images it will change before Apply."""
    page = app.page
    shas = app.cards()
    page.click(f".card[data-sha='{shas[3]}'] button[data-act='accept']")
    app.settled()
    assert app.state(shas[3])[1] == "accepted"
    page.click(f".card[data-sha='{shas[4]}'] button[data-act='reject']")
    app.settled()
    assert app.state(shas[4])[1] == "rejected"
    page.click(f".card[data-sha='{shas[5]}'] button[data-act='label']")
    expect(page.locator("#picker")).to_be_visible()
    expect(page.locator("#picker-form")).not_to_contain_class("bulk")
    expect(page.locator("#picker-title")).to_have_text("Label 1 image")
    page.keyboard.type("do")
    page.click("#picker-apply")
    app.settled()
    assert app.state(shas[5])[0] == "dog"

    # the key map's labels are buttons too
    page.click(f".card[data-sha='{shas[6]}'] .thumb", modifiers=["Control"])  # select it, not open it
    page.click("#keymap button[data-key='1']")
    app.settled()
    assert app.state(shas[6])[0] == "cat"

    # the detail view's buttons: accept, then the next image; label… opens the picker
    with page.expect_navigation():
        page.click(f".card[data-sha='{shas[7]}'] .thumb")
    app.ready()
    with page.expect_navigation():
        page.click("#detail-actions button[data-act='accept']")
    app.ready()
    assert app.state(shas[7])[1] == "accepted"
    assert page.url.startswith(f"{app.base}/image/{shas[8]}")
    page.click("#detail-actions button[data-act='label']")
    page.keyboard.type("cat")
    with page.expect_navigation():
        page.click("#picker-apply")
    app.ready()
    assert app.state(shas[8])[0] == "cat"

    # the whole view: a different dialog, with the count of images it will change for the label chosen
    app.go("/?label=cat")
    cats = app.cards()
    uncertain = [sha for sha in cats if app.state(sha)[1] != "accepted"]
    page.click("button[data-bulk='label']")
    dialog = page.locator("#picker-form")
    expect(dialog).to_contain_class("bulk")
    expect(page.locator("#picker-title")).to_have_text(f"Label all {len(cats)} images of this view (every page)")
    page.keyboard.type("cat")
    expect(page.locator("#picker-impact")).to_have_text(f"0 of {len(cats)} images will change")
    page.fill("#picker-input", "dog")
    expect(page.locator("#picker-impact")).to_have_text(f"{len(cats)} of {len(cats)} images will change")
    expect(page.locator("#picker-apply")).to_have_text(f"Apply to {len(cats)} images")
    page.keyboard.press("Escape")  # cancelled: nothing changes
    expect(page.locator("#picker")).to_be_hidden()
    assert all(app.state(sha)[0] == "cat" for sha in cats)

    # accept all asks in the same kind of dialog: how many will change, then Apply
    page.click("button[data-bulk='accept']")
    expect(page.locator("#picker-title")).to_have_text(f"Accept all {len(cats)} images of this view (every page)")
    expect(page.locator("#picker-impact")).to_have_text(f"{len(uncertain)} of {len(cats)} images will change")
    page.click("#picker-apply")
    app.settled()
    assert all(app.state(sha)[1] == "accepted" for sha in cats)

    page.click("button[data-bulk='label']")
    page.keyboard.type("dog")
    expect(page.locator("#picker-impact")).to_have_text(f"{len(cats)} of {len(cats)} images will change")
    page.click("#picker-apply")
    app.settled()
    assert all(app.state(sha)[0] == "dog" for sha in cats)


def _pixel_art(root: Path) -> Path:
    """A 28 px black-and-white checkerboard of single pixels: any smoothing shows as grey."""
    image = Image.new("L", (28, 28))
    image.putdata([255 * ((x + y) % 2) for y in range(28) for x in range(28)])
    path = root / "tiny.png"
    image.save(path)
    return path


def _grey_share(png: bytes) -> float:
    """The share of grey pixels in the middle of a screenshot (the image is centred in its box)."""
    shot = Image.open(io.BytesIO(png)).convert("L")
    width, height = shot.size
    side = min(width, height) // 2
    box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    counts = shot.crop(box).histogram()
    return sum(counts[41:215]) / sum(counts)


def test_small_images_are_drawn_with_sharp_pixels(app: App, tmp_path: Path) -> None:
    """A 28 px image in the detail view (and its thumbnail on the grid) is scaled up pixel by pixel; a photo
    larger than its box keeps smooth scaling."""
    path = _pixel_art(tmp_path)
    outcome = Ingestor.for_workspace(app.ws, actor="test").ingest(
        IngestItem(source=source_for_path(path), path=str(path))
    )
    assert outcome.status == "added" and outcome.sha256
    page = app.page
    app.go(f"/image/{outcome.sha256}")
    picture = page.locator(".card.big img")
    expect(picture).to_contain_class("pixelated")
    page.wait_for_load_state("networkidle")
    assert picture.bounding_box()["height"] > 200
    assert _grey_share(picture.screenshot()) < 0.05

    app.go("/")
    thumb = page.locator(f".card[data-sha='{outcome.sha256}'] img")
    thumb.scroll_into_view_if_needed()
    expect(thumb).to_contain_class("pixelated")
    photo = page.locator(".grid .card img").first
    expect(photo).not_to_contain_class("pixelated")
