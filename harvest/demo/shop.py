"""A local shop site built from real Fashion-MNIST images, for the demo and the loop test.

It looks like what people scrape: category pages with pagination (`li.next a` and `<link rel="next">`),
product pages with the label in `h1`, `srcset` and lazy-loaded (`data-src`) images, and a robots.txt that
disallows one section. One class is scarce on the first pages a user would scrape and plentiful deeper, so a
first model is weak on it and a targets-driven job has something to find. Everything is deterministic from
the seed, and an evaluation split (from Fashion-MNIST's test file) is never served, so models trained before
and after the targeted collection are measured on the very same images.
"""

from __future__ import annotations

import html
import io
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from harvest.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx

__all__ = ["Product", "Shop", "ShopLayout"]

_PIXEL = "data:image/gif;base64,R0lGODlhAQABAAAAACw="


@dataclass(frozen=True)
class ShopLayout:
    """How many products the shop shows where; `first_depth` is the scrape depth that keeps `scarce` scarce."""

    classes: tuple[str, ...] = ("t-shirt", "trouser", "coat", "sandal", "bag")
    scarce: str = "coat"
    per_page: int = 20
    pages: int = 5  # pages of each category but the scarce one
    thin_pages: int = 3  # the scarce category's first pages ...
    per_thin_page: int = 3  # ... hold this few products each
    deep_pages: int = 6  # then this many full pages follow
    outlet: int = 20  # products in /outlet/ (robots.txt disallows it)
    evaluation_per_class: int = 100
    seed: int = 0

    @property
    def first_depth(self) -> int:
        """Link hops from the home page that reach the products of the thin pages only (home → page → product)."""
        return self.thin_pages + 1

    @classmethod
    def budget(cls, name: str) -> ShopLayout:
        """`small` (the loop test) or `full` (`harvest demo`)."""
        if name == "small":
            return cls(
                classes=("t-shirt", "trouser", "coat", "bag"),
                per_page=12,
                pages=4,
                per_thin_page=1,
                deep_pages=4,
                outlet=8,
                evaluation_per_class=60,
            )
        if name == "full":
            return cls()
        raise ValueError(f"unknown budget {name!r} (small or full)")


@dataclass(frozen=True)
class Product:
    id: int
    label: str
    lazy: bool


@dataclass
class _Catalogue:
    products: dict[int, Product] = field(default_factory=dict)
    pixels: dict[int, np.ndarray] = field(default_factory=dict)
    category_pages: dict[str, list[list[int]]] = field(default_factory=dict)
    outlet: list[int] = field(default_factory=list)


def _distinct_indices(images: np.ndarray, labels: np.ndarray, class_index: int, rng: np.random.Generator) -> list[int]:
    """Indices of one class in a seeded order, exact pixel duplicates dropped (one object per product)."""
    seen: set[bytes] = set()
    out = []
    for index in rng.permutation(np.flatnonzero(labels == class_index)):
        key = images[index].tobytes()
        if key not in seen:
            seen.add(key)
            out.append(int(index))
    return out


def _build(layout: ShopLayout, data_dir: Path) -> tuple[_Catalogue, dict[str, list[np.ndarray]]]:
    rng = np.random.default_rng(layout.seed)
    images = read_idx(data_dir / "train-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / "train-labels-idx1-ubyte.gz")
    catalogue = _Catalogue()
    next_id = 1000

    def add(label: str, pixels: np.ndarray) -> int:
        nonlocal next_id
        next_id += int(rng.integers(1, 9))  # ids with gaps, in no label's order
        catalogue.products[next_id] = Product(next_id, label, lazy=bool(rng.integers(0, 2)))
        catalogue.pixels[next_id] = pixels
        return next_id

    for label in layout.classes:
        pool = iter(_distinct_indices(images, labels, FASHION_MNIST_CLASSES.index(label), rng))
        if label == layout.scarce:
            sizes = [layout.per_thin_page] * layout.thin_pages + [layout.per_page] * layout.deep_pages
        else:
            sizes = [layout.per_page] * layout.pages
        catalogue.category_pages[label] = [[add(label, images[next(pool)]) for _ in range(n)] for n in sizes]
        if label == layout.scarce:
            catalogue.outlet = [add(label, images[next(pool)]) for _ in range(layout.outlet)]
    test_images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz")
    evaluation = {}
    for label in layout.classes:
        picked = _distinct_indices(test_images, test_labels, FASHION_MNIST_CLASSES.index(label), rng)
        evaluation[label] = [test_images[i] for i in picked[: layout.evaluation_per_class]]
    return catalogue, evaluation


def _png(pixels: np.ndarray, side: int | None = None) -> bytes:
    image = Image.fromarray(np.ascontiguousarray(pixels), mode="L")
    if side is not None:
        image = image.resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _page(title: str, body: str, head: str = "") -> bytes:
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{head}</head>"
        f"<body><nav><a href='/'>Home</a></nav>{body}</body></html>"
    )
    return text.encode()


class Shop:
    """The shop on 127.0.0.1 (port 0: any free port); `start()`/`stop()`, or use it as a context manager."""

    def __init__(self, layout: ShopLayout | None = None, data_dir: Path = FASHION_MNIST_DIR) -> None:
        self.layout = layout or ShopLayout()
        self._catalogue, self._evaluation = _build(self.layout, data_dir)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by kind: page, image, robots, missing
        self.paths: Counter[str] = Counter()  # by path: what a crawler fetched, for tests to judge it

    # ---- what the shop holds -------------------------------------------------------------------------------
    @property
    def products(self) -> dict[int, Product]:
        return dict(self._catalogue.products)

    def category_pages(self, label: str) -> list[list[int]]:
        return [list(page) for page in self._catalogue.category_pages[label]]

    @property
    def outlet(self) -> list[int]:
        return list(self._catalogue.outlet)

    def write_evaluation(self, out: Path) -> dict[str, int]:
        """The held-out evaluation split as `out/<label>/<n>.png` (never served by the site); counts per label."""
        counts = {}
        for label, images in self._evaluation.items():
            folder = out / label
            folder.mkdir(parents=True, exist_ok=True)
            for n, pixels in enumerate(images):
                (folder / f"{n:04d}.png").write_bytes(_png(pixels))
            counts[label] = len(images)
        return counts

    # ---- serving -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the shop is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> Shop:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Shop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, kind: str, path: str) -> None:
        with self._lock:
            self.requests[kind] += 1
            self.paths[path] += 1

    def label_of(self, path: str) -> str | None:
        """The label of the product a `/p/ID` page or `/img/ID.png` image shows (None for other paths)."""
        match = re.fullmatch(r"/(?:p/(\d+)|img/(\d+)(?:-small)?\.png)", path)
        product = self._catalogue.products.get(int(match.group(1) or match.group(2))) if match else None
        return product.label if product else None

    def respond(self, path: str) -> tuple[int, str, bytes, str]:
        """(status, content type, body, request kind) for a path: the site's whole routing."""
        if path == "/robots.txt":
            return 200, "text/plain", b"User-agent: *\nDisallow: /outlet/\n", "robots"
        if path in ("/", "/index.html"):
            links = "".join(
                f"<li><a class='cat' href='/c/{label}/1'>{html.escape(label.title())}</a></li>"
                for label in self.layout.classes
            )
            body = f"<h1>Gleaner Shop</h1><ul class='categories'>{links}</ul><p><a href='/outlet/'>Outlet</a></p>"
            return 200, "text/html; charset=utf-8", _page("Gleaner Shop", body), "page"
        if match := re.fullmatch(r"/c/([a-z-]+)/(\d+)", path):
            return self._category(match.group(1), int(match.group(2)))
        if match := re.fullmatch(r"/p/(\d+)", path):
            return self._product(int(match.group(1)))
        if path == "/outlet/":
            items = "".join(f"<li><a class='product' href='/p/{pid}'>Outlet item {pid}</a></li>" for pid in self.outlet)
            return 200, "text/html; charset=utf-8", _page("Outlet", f"<h1>Outlet</h1><ul>{items}</ul>"), "page"
        if match := re.fullmatch(r"/img/(\d+)(-small)?\.png", path):
            pixels = self._catalogue.pixels.get(int(match.group(1)))
            if pixels is not None:
                return 200, "image/png", _png(pixels, 14 if match.group(2) else None), "image"
        return 404, "text/plain", b"not found\n", "missing"

    def _category(self, label: str, number: int) -> tuple[int, str, bytes, str]:
        pages = self._catalogue.category_pages.get(label)
        if pages is None or not 1 <= number <= len(pages):
            return 404, "text/plain", b"not found\n", "missing"
        items = "".join(
            f"<li><a class='product' href='/p/{pid}'>{html.escape(label.title())} no. {pid}</a></li>"
            for pid in pages[number - 1]
        )
        head = f"<link rel='next' href='/c/{label}/{number + 1}'>" if number < len(pages) else ""
        pager = (
            f"<ul class='pager'><li class='next'><a href='/c/{label}/{number + 1}'>next</a></li></ul>" if head else ""
        )
        body = f"<h1 class='category'>{html.escape(label)}</h1><ul class='products'>{items}</ul>{pager}"
        return 200, "text/html; charset=utf-8", _page(f"{label} page {number}", body, head), "page"

    def _product(self, pid: int) -> tuple[int, str, bytes, str]:
        product = self._catalogue.products.get(pid)
        if product is None:
            return 404, "text/plain", b"not found\n", "missing"
        alt = html.escape(f"{product.label} {pid}")
        if product.lazy:
            img = f"<img class='lazy' src='{_PIXEL}' data-src='/img/{pid}.png' alt='{alt}'>"
        else:
            img = f"<img src='/img/{pid}-small.png' srcset='/img/{pid}-small.png 14w, /img/{pid}.png 28w' alt='{alt}'>"
        body = f"<h1>{html.escape(product.label)}</h1><div class='gallery'>{img}</div><p>Product {pid}</p>"
        return 200, "text/html; charset=utf-8", _page(f"{product.label} {pid}", body), "page"


def _handler(shop: Shop) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            status, content_type, body, kind = shop.respond(path)
            shop.count(kind, path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler
