"""A fixture shop on the test site (tests/support/site.py): category pages built from real photos.

    shop = register_shop(site)
    shop.seeds                  # ["/shop/shoes?page=1", "/shop/bags"]
    shop.expected               # {"Shoes": [photo names], "Bags": [...]}: what a correct scrape stores

The pages exercise every way a page offers an image: plain `src`, `srcset` with `w` and `x` descriptors
(only the largest candidate may be fetched: the others are listed in `shop.never_fetched`), lazy attributes
(`data-src`, `data-lazy-src`, `data-original`, `data-srcset`), `picture/source`, `og:image`, links that point
straight to images, `<base href>`, a `data:` placeholder, a 1x1 tracking pixel, the same photo under two
URLs, and a link into /private/ that robots.txt forbids. `/shop/feed` is an infinite-scroll page: 4 photos
in the HTML and 16 more that only JavaScript adds, a batch per scroll to the bottom. `/shop/all?page=N`
is a longer paginated category (for kill-and-resume tests).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

from tests.support.site import Request, Response, Site

__all__ = ["ALL_PAGES", "FEED_BATCH", "FEED_BATCHES", "PLACEHOLDER", "Shop", "register_shop"]

PLACEHOLDER = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
FEED_BATCH = 4
FEED_BATCHES = 4  # batches JavaScript adds after the 4 photos in the HTML
ALL_PAGES = 5


@dataclass
class Shop:
    """Paths and the photo names a correct scrape must (and must not) fetch."""

    seeds: list[str]
    expected: dict[str, list[str]]  # label -> photo names (each stored exactly once)
    never_fetched: list[str]  # request paths a correct scraper never asks for
    private: list[str]  # /private/ paths linked from the pages (robots.txt forbids them)
    feed_initial: list[str] = field(default_factory=list)  # photos in the feed's HTML
    feed_all: list[str] = field(default_factory=list)  # ... plus those JavaScript adds on scroll
    all_pages: int = 0
    all_expected: list[str] = field(default_factory=list)  # /shop/all?page=1..all_pages

    @property
    def expected_count(self) -> int:
        return sum(len(names) for names in self.expected.values())


def _page(title: str, body: str, *, head: str = "", category: str | None = None) -> Response:
    heading = f'<h1 class="category">\n  {html.escape(category)}\n</h1>' if category else ""
    return Response.html(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>{head}</head>
<body><nav><a href="/shop/shoes?page=1">Shoes</a> <a href="/shop/bags">Bags</a> <a href="/">Home</a></nav>
{heading}
<main>{body}</main></body></html>"""
    )


def _pager(path: str, page: int, last: int) -> str:
    items = []
    if page > 1:
        items.append(f'<li class="prev"><a href="{path}?page={page - 1}">Previous</a></li>')
    if page < last:
        items.append(f'<li class="next"><a href="{path}?page={page + 1}">Next &raquo;</a></li>')
    return f'<ul class="pager">{"".join(items)}</ul>'


def register_shop(site: Site) -> Shop:
    """Register the shop's routes on `site` and return what a scrape of it should find."""
    names = site.photo_names
    if len(names) < 81:
        raise LookupError("the shop needs at least 81 photos")
    shoes = names[0:11]
    small = names[11:15]  # smaller srcset candidates and fallbacks: never fetched
    bags = names[16:20]
    feed = names[20 : 20 + FEED_BATCH * (FEED_BATCHES + 1)]
    private = names[40]
    every = names[41:81]  # /shop/all: 5 pages of 8
    img = "/img/"

    shoe_pages = {
        1: f"""
<img src="{img}{shoes[0]}" alt="Shoe zero">
<img src="{img}{small[0]}" srcset="{img}{small[0]} 200w, {img}{shoes[1]} 800w" sizes="50vw" alt="Shoe one">
<img class="lazy" src="{PLACEHOLDER}" data-src="{img}{shoes[2]}" alt="Shoe two">
<picture><source srcset="{img}{shoes[3]} 1x" type="image/jpeg"><img src="{img}{small[1]}" alt="Shoe three"></picture>
<p><a href="{img}{shoes[4]}">Full size photo</a> <a href="/private/{private}">Members only</a></p>
<img src="/fault/pixel.gif" width="1" height="1" alt="">
""",
        2: f"""
<img src="/img/spacer.gif" data-lazy-src="{img}{shoes[5]}" alt="Shoe five">
<img data-original="{img}{shoes[6]}" alt="Shoe six">
<img data-srcset="{img}{small[2]} 1x, {img}{shoes[7]} 2x" alt="Shoe seven">
<img src="{img}{shoes[0]}" alt="Shoe zero again">
<img src="{img}{shoes[0]}?v=2" alt="Shoe zero, another URL">
""",
        3: f"""
<img srcset="{img}{small[3]} 480w,
             {img}{shoes[8]} 1024w" alt="Shoe eight">
<img src="  {img}{shoes[9]}  " alt="Shoe nine">
""",
    }
    og = f'<meta property="og:image" content="{img}{shoes[10]}">'

    def shoes_page(request: Request) -> Response:
        page = int(request.arg("page", "1") or 1)
        if page not in shoe_pages:
            return Response.text("no such page", 404)
        body = shoe_pages[page] + _pager("/shop/shoes", page, len(shoe_pages))
        return _page(f"Shoes, page {page}", body, head=og if page == 1 else "", category="Shoes")

    def bags_page(_request: Request) -> Response:
        body = "".join(f'<div class="product"><img src="{name}" alt="Bag {i}"></div>' for i, name in enumerate(bags))
        body += '<a href="/shop/bags?page=2">more bags</a>'
        return _page("Bags", body, head='<base href="/img/">', category="Bags")

    def feed_page(_request: Request) -> Response:
        first = "".join(f'<img src="{img}{name}" alt="Feed {i}">' for i, name in enumerate(feed[:FEED_BATCH]))
        script = (
            """
<script>
let next = 1, busy = false;
const feed = document.getElementById('feed');
async function more() {
  if (busy || next > LAST) return;
  if (window.innerHeight + window.scrollY < document.documentElement.scrollHeight - 50) return;
  busy = true;
  const response = await fetch('/shop/feed.json?page=' + next);
  const names = await response.json();
  for (const name of names) {
    const image = document.createElement('img');
    image.src = '/img/' + name; image.alt = 'Feed item';
    feed.appendChild(image);
  }
  next += 1; busy = false;
}
window.addEventListener('scroll', more);
</script>"""
        ).replace("LAST", str(FEED_BATCHES))
        style = "<style>#feed img{display:block;width:300px;height:500px;margin:10px}</style>"
        return _page("Feed", f'<div id="feed">{first}</div>{script}', head=style, category="Feed")

    def feed_json(request: Request) -> Response:
        page = int(request.arg("page", "1") or 1)
        batch = feed[page * FEED_BATCH : (page + 1) * FEED_BATCH] if 1 <= page <= FEED_BATCHES else []
        return Response(200, json.dumps(batch).encode(), {"Content-Type": "application/json"})

    def all_page(request: Request) -> Response:
        page = int(request.arg("page", "1") or 1)
        if not 1 <= page <= ALL_PAGES:
            return Response.text("no such page", 404)
        chunk = every[(page - 1) * 8 : page * 8]
        body = "".join(f'<img src="{img}{name}" alt="Item {name}">' for name in chunk)
        return _page(f"Everything, page {page}", body + _pager("/shop/all", page, ALL_PAGES), category="Everything")

    site.route("/shop/shoes", shoes_page)
    site.route("/shop/bags", bags_page)
    site.route("/shop/feed", feed_page)
    site.route("/shop/feed.json", feed_json)
    site.route("/shop/all", all_page)
    return Shop(
        seeds=["/shop/shoes?page=1", "/shop/bags"],
        expected={"Shoes": list(shoes), "Bags": list(bags)},
        never_fetched=[f"{img}{name}" for name in small] + ["/img/spacer.gif", "/shop/bags?page=2"],
        private=[f"/private/{private}"],
        feed_initial=list(feed[:FEED_BATCH]),
        feed_all=list(feed),
        all_pages=ALL_PAGES,
        all_expected=list(every),
    )
