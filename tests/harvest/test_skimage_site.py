"""A real site: the scikit-image documentation (Debian python-skimage-doc) served on 127.0.0.1 and crawled.

The example gallery is the kind of page people scrape: an index of thumbnails linking to one page per
example, each with its figures (PNG). The crawl follows the gallery links of one section (`--depth 1`),
takes the figures (`--select`) and labels them by the section folder in the URL (`--label-from url:`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin

import pytest

from storage.catalog import iter_images
from storage.workspace import init_workspace, open_workspace
from tests.harvest.test_import import assert_summary, curate, harvest, ok_json

DOCS = Path("/usr/share/doc/python-skimage-doc/html")
SECTION = "#edges-and-lines"
FOLLOW = f"{SECTION} .sphx-glr-thumbcontainer a.reference"
FIGURES = "img.sphx-glr-single-img, img.sphx-glr-multi-img"
_FIGURE = re.compile(r'<img[^>]*src="([^"]+)"[^>]*class\s*=\s*"sphx-glr-(?:single|multi)-img"')

pytestmark = pytest.mark.skipif(
    not (DOCS / "auto_examples" / "index.html").is_file(),
    reason=f"scikit-image documentation not installed at {DOCS} (apt-get install python-skimage-doc)",
)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def docs_url() -> Iterator[str]:
    """http.server on port 0; symlinks into /usr/share/javascript are followed like any file."""
    handler = functools.partial(_QuietHandler, directory=str(DOCS))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def gallery_pages() -> set[str]:
    """The example pages the --follow selector designates on the gallery index (relative to auto_examples/)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup((DOCS / "auto_examples" / "index.html").read_bytes(), "lxml")
    return {a["href"].split("#", 1)[0] for a in soup.select(FOLLOW)}


def expected_figures(pages: set[str]) -> dict[str, str]:
    """sha256 -> file of every figure on those pages, found with a regex straight from the files."""
    found: dict[str, str] = {}
    for page in sorted(pages):
        path = DOCS / "auto_examples" / page
        for src in _FIGURE.findall(path.read_text(encoding="utf-8", errors="replace")):
            target = Path(urljoin(str(path), src))
            if target.is_file():
                found[hashlib.sha256(target.read_bytes()).hexdigest()] = str(target)
    return found


def test_crawl_the_example_gallery(tmp_path: Path, docs_url: str) -> None:
    pages = gallery_pages()
    expected = expected_figures(pages)
    assert len(pages) >= 5 and len(expected) >= 10, "the gallery section should have pages with figures"
    root = tmp_path / "ws"
    init_workspace(root)[0].close()
    seed = docs_url + "auto_examples/index.html"
    document = ok_json(
        harvest(
            "scrape", seed, "--depth", "1", "--follow", FOLLOW, "--select", FIGURES,
            "--label-from", r"url:auto_examples/([a-z_]+)/", "--allow-private", "--json", "-w", root, cwd=tmp_path,
        )
    )  # fmt: skip
    assert_summary(document, rejected=0, failed=0)
    # Every figure is stored; the catalog may flag near-identical plots as duplicates of one another.
    assert document["added"] + document["duplicates"] == len(expected)
    assert document["pages"] == {"fetched": 1 + len(pages), "failed": 0, "pending": 0}
    with open_workspace(root) as workspace, workspace.catalog.read() as conn:
        images = list(iter_images(conn))
    assert {row["sha256"] for row in images} == set(expected)
    assert {row["format"] for row in images} == {"PNG"}
    assert {row["label"] for row in images} == {"edges"}
    assert ok_json(curate("fsck", "--json", "-w", root, cwd=tmp_path))["ok"] is True
