"""HTML → image candidates and links. Pure: bytes or text in, `PageExtract` out; no network, no catalog.

One candidate per `img` element (its best source: the largest `srcset`/`data-srcset` candidate, with the
`picture/source` siblings considered, else a lazy attribute, else `src`), because taking both `src` and
the largest `srcset` entry would store near-duplicates of the same picture. Without `--select`, `og:image`
and `a href` links that point straight to image files are taken too. Hostile markup must never raise:
lxml recovers from broken HTML, oversized URLs are dropped, and the number of images and links taken
from one page is capped. Pages are parsed in bounded memory (harvest.scrape.prune: only the elements that
extraction and selectors can use reach BeautifulSoup; at most PAGE_MAX_BYTES of a page are parsed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import soupsieve
from bs4 import BeautifulSoup, Tag

from harvest.fetch.content import PAGE_MAX_BYTES
from harvest.scrape.prune import prune_html
from storage.errors import GleanerError

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAZY_ATTRIBUTES",
    "MAX_IMAGES_PER_PAGE",
    "MAX_LINKS_PER_PAGE",
    "MAX_URL_LENGTH",
    "ImageCandidate",
    "PageExtract",
    "SrcsetCandidate",
    "compile_selector",
    "extract_page",
    "is_image_url",
    "normalize_url",
    "parse_html",
    "parse_srcset",
]

LAZY_ATTRIBUTES = ("data-src", "data-lazy-src", "data-original")
LAZY_SRCSET_ATTRIBUTES = ("data-srcset", "data-lazy-srcset")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".avif"})
OG_IMAGE_KEYS = ("og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src")
MAX_IMAGES_PER_PAGE = 2_000
MAX_LINKS_PER_PAGE = 5_000
MAX_URL_LENGTH = 4_096
MAX_ALT_LENGTH = 1_000
_WHITESPACE = re.compile(r"[\t\n\f\r ]+")


@dataclass(frozen=True)
class ImageCandidate:
    """An image URL found on a page, with what the page says about it (for provenance and labels)."""

    url: str
    alt: str | None = None
    via: str = "img"  # img | srcset | lazy | picture | og:image | link | response


@dataclass(frozen=True)
class SrcsetCandidate:
    url: str
    width: int | None = None  # the `w` descriptor
    density: float | None = None  # the `x` descriptor (1.0 when none is given)


@dataclass
class PageExtract:
    """What one page offers: images to fetch, links to follow, and the page's own facts."""

    page_url: str
    base_url: str
    images: list[ImageCandidate] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    title: str | None = None
    truncated: bool = False  # more images or links than the per-page caps
    selected: int | None = None  # elements --select matched here (None: no --select)
    followed: int | None = None  # elements --follow matched here (None: no --follow, or links not wanted)


def compile_selector(css: str | None, option: str) -> Any:
    """Compile a user's CSS selector once, so that a typo is one clear error before any fetching."""
    if not css:
        return None
    try:
        return soupsieve.compile(css)
    except Exception as exc:  # SelectorSyntaxError, or anything soupsieve refuses
        raise GleanerError(f"{option}: invalid CSS selector {css!r}: {str(exc).splitlines()[0]}") from None


def parse_html(html: bytes | str, encoding: str | None = None) -> BeautifulSoup:
    """Parse with lxml (recovering from broken markup), pruned to what extraction can use (bounded memory for
    any markup); an empty document for anything unparseable.

    `encoding` is the charset from the HTTP header, which outranks a `<meta charset>` in the page. A page
    over PAGE_MAX_BYTES (a rendered one: fetched ones are refused past it) is parsed up to there.
    """
    try:
        return BeautifulSoup(prune_html(html[:PAGE_MAX_BYTES], encoding).html, "lxml")
    except Exception:  # lxml refuses a few pathological inputs outright; treat them as empty pages
        return BeautifulSoup("", "lxml")


def normalize_url(raw: Any, base: str) -> str | None:
    """An absolute http(s) URL without fragment, or None for data:, javascript:, oversized or broken values.

    Leading/trailing whitespace is stripped and embedded tabs/newlines removed, as browsers do.
    """
    if not isinstance(raw, str):
        return None
    value = raw.strip(" \t\n\r\f")
    if not value or len(value) > MAX_URL_LENGTH:
        return None
    value = value.replace("\t", "").replace("\n", "").replace("\r", "")
    try:
        joined, _fragment = urldefrag(urljoin(base, value))
        parts = urlsplit(joined)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        netloc = parts.netloc
        if any(ch.isspace() for ch in netloc):
            return None
        _port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return None
    at = netloc.rfind("@")
    netloc = netloc[: at + 1] + netloc[at + 1 :].lower()  # host names are case-insensitive; userinfo is not
    path = parts.path or "/"
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


def is_image_url(url: str) -> bool:
    """True when the URL's path ends with a raster image extension (links that point straight to images)."""
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    return dot != -1 and path[dot:] in IMAGE_EXTENSIONS


def parse_srcset(value: Any) -> list[SrcsetCandidate]:
    """Parse a `srcset` attribute per the HTML rules (URLs may contain commas; descriptors follow spaces)."""
    if not isinstance(value, str) or len(value) > 64 * MAX_URL_LENGTH:
        return []
    out: list[SrcsetCandidate] = []
    pos, end = 0, len(value)
    while pos < end:
        while pos < end and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        if pos >= end:
            break
        start = pos
        while pos < end and not value[pos].isspace():
            pos += 1
        url = value[start:pos]
        descriptors = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            dstart, depth = pos, 0
            while pos < end:
                ch = value[pos]
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth = max(0, depth - 1)
                elif ch == "," and depth == 0:
                    break
                pos += 1
            descriptors = value[dstart:pos]
            pos += 1
        if url:
            out.append(_candidate(url, descriptors))
    return out


def _candidate(url: str, descriptors: str) -> SrcsetCandidate:
    width: int | None = None
    density: float | None = None
    for token in descriptors.split():
        unit, number = token[-1:].lower(), token[:-1]
        try:
            if unit == "w":
                width = int(number)
            elif unit == "x":
                density = float(number)
        except ValueError:
            continue
    if width is None and density is None:
        density = 1.0
    return SrcsetCandidate(url, width, density)


def largest(candidates: Iterable[SrcsetCandidate]) -> SrcsetCandidate | None:
    """The biggest candidate: by `w` when any candidate has one (what a wide screen would pick), else by `x`."""
    items = list(candidates)
    widths = [c for c in items if c.width is not None]
    if widths:
        return max(widths, key=lambda c: c.width or 0)
    if items:
        return max(items, key=lambda c: c.density or 1.0)
    return None


def _attr(tag: Tag, name: str) -> str | None:
    value = tag.get(name)
    if isinstance(value, list):  # multi-valued attributes come back as lists
        value = " ".join(value)
    return value if isinstance(value, str) else None


def _alt_text(tag: Tag) -> str | None:
    alt = _attr(tag, "alt") or _attr(tag, "title")
    if not alt:
        return None
    text = _WHITESPACE.sub(" ", alt).strip()
    return text[:MAX_ALT_LENGTH] or None


def _srcset_of(tag: Tag) -> list[SrcsetCandidate]:
    found: list[SrcsetCandidate] = []
    for name in ("srcset", *LAZY_SRCSET_ATTRIBUTES):
        found.extend(parse_srcset(_attr(tag, name)))
    return found


def _enclosing_picture(img: Tag) -> Tag | None:
    """The `picture` an img belongs to; libxml2 does not know `source` is void and nests the img inside it."""
    parent = img.parent
    while isinstance(parent, Tag) and parent.name == "source":
        parent = parent.parent
    return parent if isinstance(parent, Tag) and parent.name == "picture" else None


def best_image_source(img: Tag) -> tuple[str | None, str]:
    """The URL (as written) one `img` element stands for, and which attribute gave it."""
    candidates = _srcset_of(img)
    via = "srcset"
    picture = _enclosing_picture(img)
    if picture is not None:
        sources = [c for source in picture.find_all("source") for c in _srcset_of(source)]
        if sources:
            candidates = sources + candidates
            via = "picture"
    chosen = largest(candidates)
    if chosen is not None:
        return chosen.url, via
    for name in LAZY_ATTRIBUTES:  # lazy loaders keep the real image here and a placeholder in `src`
        value = _attr(img, name)
        if value and value.strip():
            return value, "lazy"
    return _attr(img, "src"), "img"


def _select(soup: BeautifulSoup, selector: Any) -> Iterator[Tag]:
    try:
        yield from selector.select(soup)
    except RecursionError:  # absurdly deep nesting; lxml caps depth, soupsieve recurses
        return


def _og_images(soup: BeautifulSoup) -> Iterator[tuple[str, str | None]]:
    """`og:image` (and Twitter card) URLs with their `og:image:alt`, if the page gives one."""
    found: list[str] = []
    alt: str | None = None
    for meta in soup.find_all("meta"):
        key = (_attr(meta, "property") or _attr(meta, "name") or "").strip().lower()
        content = _attr(meta, "content")
        if not content:
            continue
        if key in OG_IMAGE_KEYS:
            found.append(content)
        elif key in ("og:image:alt", "twitter:image:alt") and alt is None:
            alt = _WHITESPACE.sub(" ", content).strip()[:MAX_ALT_LENGTH] or None
    for url in found:
        yield url, alt


def _base_url(soup: BeautifulSoup, page_url: str) -> str:
    base = soup.find("base", href=True)
    if isinstance(base, Tag):
        resolved = normalize_url(_attr(base, "href"), page_url)
        if resolved:
            return resolved
    return page_url


def _link_targets(tags: Iterable[Tag]) -> Iterator[Tag]:
    """The links a selector designates: matched `a`/`area`/`link` elements (`link[rel=next]` is how many sites
    paginate), or the links inside other matches."""
    for tag in tags:
        if tag.name in ("a", "area", "link") and tag.has_attr("href"):
            yield tag
        else:
            yield from tag.find_all(["a", "area"], href=True)


def extract_page(
    html: bytes | str | BeautifulSoup,
    page_url: str,
    *,
    select: Any = None,
    follow: Any = None,
    collect_links: bool = True,
    max_images: int = MAX_IMAGES_PER_PAGE,
    max_links: int = MAX_LINKS_PER_PAGE,
) -> PageExtract:
    """Images and links of one page, URLs absolute (resolved against `<base href>` and the page URL).

    `select`/`follow` are compiled selectors (see `compile_selector`). With `select`, only the matched
    `img` elements are taken (no `og:image`, no image links). Without `follow`, every `a href` that is
    not an image is a link, and so is `<link rel="next">`; `collect_links=False` skips links entirely (depth 0
    without --follow). `selected`/`followed` count what the selectors matched, for the crawl's warnings.
    """
    soup = html if isinstance(html, BeautifulSoup) else parse_html(html)
    base = _base_url(soup, page_url)
    result = PageExtract(page_url=page_url, base_url=base)
    title = soup.title.string if soup.title and soup.title.string else None
    result.title = _WHITESPACE.sub(" ", title).strip()[:MAX_ALT_LENGTH] if title else None
    seen: set[str] = set()

    def add(raw: str | None, alt: str | None, via: str) -> None:
        url = normalize_url(raw, base)
        if url is None or url in seen:
            return
        if len(result.images) >= max_images:
            result.truncated = True
            return
        seen.add(url)
        result.images.append(ImageCandidate(url, alt, via))

    images = list(_select(soup, select)) if select is not None else soup.find_all("img")
    result.selected = len(images) if select is not None else None
    for img in images:
        if img.name != "img":
            for inner in img.find_all("img"):  # a selector that matches containers means the images inside
                raw, via = best_image_source(inner)
                add(raw, _alt_text(inner), via)
            continue
        raw, via = best_image_source(img)
        add(raw, _alt_text(img), via)
        if result.truncated:
            break
    if select is None:
        for content, alt in _og_images(soup):
            add(content, alt, "og:image")
        for anchor in soup.find_all("a", href=True):
            url = normalize_url(_attr(anchor, "href"), base)
            if url and is_image_url(url):
                found = anchor.find("img")
                text = _alt_text(found) if isinstance(found, Tag) else None
                text = text or _WHITESPACE.sub(" ", anchor.get_text(" ")).strip()[:MAX_ALT_LENGTH] or None
                add(url, text, "link")
    if collect_links:
        if follow is not None:
            matched = list(_select(soup, follow))
            result.followed = len(matched)
            anchors: Iterable[Tag] = _link_targets(matched)
        else:  # every link, and the next page a `<link rel="next">` names
            anchors = soup.find_all(["a", "area"], href=True) + soup.find_all("link", rel="next", href=True)
        linked: set[str] = set()
        for anchor in anchors:
            url = normalize_url(_attr(anchor, "href"), base)
            if url is None or url in linked or url == page_url or is_image_url(url):
                continue
            if len(result.links) >= max_links:
                result.truncated = True
                break
            linked.add(url)
            result.links.append(url)
    return result
