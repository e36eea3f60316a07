"""The demo shop (harvest/demo/shop.py) as a crawler sees it, and `harvest demo`'s refusals.

The shop is served on 127.0.0.1 and crawled by the real `harvest scrape`: what a first scrape at the layout's
`first_depth` collects is what makes the demo's class scarce, so that is checked here on the catalog.
"""

from __future__ import annotations

import dataclasses
import io
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harvest.demo.loop import FOLLOW
from harvest.demo.shop import Shop, ShopLayout
from harvest.idx import FASHION_MNIST_DIR
from storage.catalog import iter_images
from storage.workspace import init_workspace, open_workspace
from tests.harvest.test_import import harvest, ok_json

pytestmark = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)

LAYOUT = ShopLayout.budget("small")


@pytest.fixture(scope="module")
def shop() -> Iterator[Shop]:
    with Shop(LAYOUT) as running:
        yield running


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_same_seed_builds_the_same_shop() -> None:
    again = Shop(LAYOUT)
    other = Shop(dataclasses.replace(LAYOUT, seed=1))
    assert again.products == Shop(LAYOUT).products
    assert again.category_pages(LAYOUT.scarce) == Shop(LAYOUT).category_pages(LAYOUT.scarce)
    assert other.products != again.products


def test_pages_link_as_a_shop_does(shop: Shop) -> None:
    status, body = get(f"{shop.url}c/{LAYOUT.scarce}/1")
    page = body.decode()
    assert status == 200
    assert "<li class='next'><a href='/c/coat/2'>" in page and "<link rel='next' href='/c/coat/2'>" in page
    last = len(shop.category_pages(LAYOUT.scarce))
    assert "class='next'" not in get(f"{shop.url}c/{LAYOUT.scarce}/{last}")[1].decode()
    assert get(f"{shop.url}c/{LAYOUT.scarce}/{last + 1}")[0] == 404
    robots = get(f"{shop.url}robots.txt")[1].decode()
    assert "Disallow: /outlet/" in robots


def test_product_pages_carry_srcset_and_lazy_images(shop: Shop) -> None:
    products = list(shop.products.values())
    lazy = next(p for p in products if p.lazy)
    eager = next(p for p in products if not p.lazy)
    lazy_page = get(f"{shop.url}p/{lazy.id}")[1].decode()
    eager_page = get(f"{shop.url}p/{eager.id}")[1].decode()
    assert f"<h1>{lazy.label}</h1>" in lazy_page and f"data-src='/img/{lazy.id}.png'" in lazy_page
    assert f"/img/{eager.id}.png 28w" in eager_page
    full = Image.open(io.BytesIO(get(f"{shop.url}img/{eager.id}.png")[1]))
    small = Image.open(io.BytesIO(get(f"{shop.url}img/{eager.id}-small.png")[1]))
    assert (full.size, small.size) == ((28, 28), (14, 14))


def test_the_evaluation_split_is_never_served(shop: Shop, tmp_path: Path) -> None:
    counts = shop.write_evaluation(tmp_path)
    assert counts == dict.fromkeys(LAYOUT.classes, LAYOUT.evaluation_per_class)
    served = {np.asarray(Image.open(io.BytesIO(get(f"{shop.url}img/{pid}.png")[1]))).tobytes() for pid in shop.products}
    held_out = {np.asarray(Image.open(path)).tobytes() for path in tmp_path.rglob("*.png")}
    assert len(held_out) == sum(counts.values())
    assert not served & held_out


def test_a_first_scrape_finds_the_scarce_class_scarce(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    init_workspace(root)
    depth = str(LAYOUT.first_depth)
    with Shop(LAYOUT) as shop:  # its own shop: its request log is this crawl's alone
        document = ok_json(
            harvest(
                *("scrape", shop.url, "--follow", FOLLOW, "--label-from", "css:h1", "--depth", depth),
                *("--allow-private", "--per-host-rate", "0", "--json", "-w", root),
                cwd=tmp_path,
            )
        )
    with open_workspace(root) as workspace, workspace.catalog.read() as conn:
        labels = Counter(row["label"] for row in iter_images(conn))
    pages = LAYOUT.first_depth - 1
    expected = {label: pages * LAYOUT.per_page for label in LAYOUT.classes}
    expected[LAYOUT.scarce] = pages * LAYOUT.per_thin_page
    assert document["added"] + document["duplicates"] == sum(expected.values())
    assert labels == expected  # every image labelled from its page's h1, lazy and srcset ones alike
    assert not [path for path in shop.paths if path.startswith("/outlet/")]  # robots.txt obeyed
    assert not [path for path in shop.paths if path.endswith("-small.png")]  # the largest srcset candidate only
    assert max(shop.paths.values()) == 1  # every page and image fetched once (robots.txt aside)


def test_demo_refuses_a_folder_that_is_not_its_own(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = harvest("demo", "--out", tmp_path, "--json", cwd=tmp_path)
    assert result.code == 1
    assert "not empty" in result.json()["error"]
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    bad = harvest("demo", "--out", tmp_path / "new", "--budget", "huge", "--json", cwd=tmp_path)
    assert bad.code == 1 and "small or full" in bad.json()["error"]
