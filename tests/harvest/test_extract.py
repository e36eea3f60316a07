"""Pure extraction and label rules: HTML in, candidates out; hostile markup never raises."""

from __future__ import annotations

import time

import pytest

from harvest.scrape.extract import (
    MAX_IMAGES_PER_PAGE,
    compile_selector,
    extract_page,
    is_image_url,
    normalize_url,
    parse_srcset,
)
from harvest.scrape.labels import clean_label, parse_label_rule
from storage.errors import GleanerError

PAGE = "http://shop.example/cat/shoes/index.html?page=1"


def urls(html: str, **kwargs: object) -> list[str]:
    return [c.url for c in extract_page(html, PAGE, **kwargs).images]  # type: ignore[arg-type]


def test_srcset_parsing_and_largest_candidate() -> None:
    parsed = parse_srcset(" a.jpg 320w,b.jpg 640w , c.jpg 1280w")
    assert [(c.url, c.width) for c in parsed] == [("a.jpg", 320), ("b.jpg", 640), ("c.jpg", 1280)]
    commas = parse_srcset("https://cdn.example/w_100,h_100/x.jpg 1x, https://cdn.example/w_200,h_200/x.jpg 2x")
    assert [(c.url, c.density) for c in commas] == [
        ("https://cdn.example/w_100,h_100/x.jpg", 1.0),
        ("https://cdn.example/w_200,h_200/x.jpg", 2.0),
    ]
    assert [c.url for c in parse_srcset("only.jpg")] == ["only.jpg"]
    assert parse_srcset("") == [] and parse_srcset(None) == []
    html = '<img src="s.jpg" srcset="m.jpg 640w, xl.jpg 1600w, l.jpg 1024w"><img srcset="a.jpg, b.jpg 3x, c.jpg 2x">'
    assert urls(html) == ["http://shop.example/cat/shoes/xl.jpg", "http://shop.example/cat/shoes/b.jpg"]


def test_lazy_attributes_beat_placeholders() -> None:
    html = """
      <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="/p/1.jpg" alt=" first  photo ">
      <img src="/spacer.gif" data-lazy-src="/p/2.jpg">
      <img src="/blank.png" data-original="/p/3.jpg">
      <img data-srcset="/p/4-small.jpg 200w, /p/4-big.jpg 900w" src="/p/4-tiny.jpg">
      <img src="data:image/png;base64,AAAA">
    """
    found = extract_page(html, PAGE).images
    assert [c.url for c in found] == [
        "http://shop.example/p/1.jpg",
        "http://shop.example/p/2.jpg",
        "http://shop.example/p/3.jpg",
        "http://shop.example/p/4-big.jpg",
    ]
    assert found[0].alt == "first photo" and found[0].via == "lazy"


def test_picture_sources_og_image_and_image_links() -> None:
    html = """<html><head><title>Shoes</title>
      <meta property="og:image" content="https://img.example/og.jpg">
      <meta name="twitter:image" content="https://img.example/og.jpg">
      <meta property="og:image:alt" content="A pair of shoes"></head><body>
      <picture><source srcset="/p/pic-800.jpg 800w, /p/pic-1600.jpg 1600w" type="image/jpeg">
        <source srcset="/p/pic-1200.jpg 1200w"><img src="/p/pic-400.jpg" alt="pic"></picture>
      <a href="/full/big.JPG">full size</a> <a href="/full/page.html">not an image</a>
      <a href="/full/with.png?x=1"><img src="/thumb/with.png" alt="thumb"></a>
    </body></html>"""
    found = extract_page(html, PAGE).images
    by_url = {c.url: c for c in found}
    assert list(by_url) == [
        "http://shop.example/p/pic-1600.jpg",
        "http://shop.example/thumb/with.png",
        "https://img.example/og.jpg",
        "http://shop.example/full/big.JPG",
        "http://shop.example/full/with.png?x=1",
    ]
    assert by_url["http://shop.example/p/pic-1600.jpg"].via == "picture"
    assert by_url["https://img.example/og.jpg"].via == "og:image"
    assert by_url["https://img.example/og.jpg"].alt == "A pair of shoes"
    assert by_url["http://shop.example/full/big.JPG"].alt == "full size"
    assert by_url["http://shop.example/full/with.png?x=1"].alt == "thumb"


def test_base_href_and_url_normalization() -> None:
    html = '<base href="https://CDN.Example:8443/assets/"><img src="a.jpg#frag"><img src="//other.example/b.jpg">'
    assert urls(html) == ["https://cdn.example:8443/assets/a.jpg", "https://other.example/b.jpg"]
    assert normalize_url(" \n/x y.jpg\t", PAGE) == "http://shop.example/x y.jpg"
    for bad in (
        "javascript:alert(1)",
        "mailto:a@b",
        "ftp://x/y.jpg",
        "data:image/png;base64,AA",
        "",
        None,
        42,
        "http://[::1",
        "http://host:99999/x.jpg",
        "x" * 5000,
    ):
        assert normalize_url(bad, PAGE) is None, bad
    assert normalize_url("http://User:Pw@HOST.example/A.jpg", PAGE) == "http://User:Pw@host.example/A.jpg"
    assert is_image_url("http://h/a/b.JPEG?x=1") and not is_image_url("http://h/a.jpg/page")


def test_select_restricts_images_and_drops_page_level_sources() -> None:
    html = """<meta property="og:image" content="/og.jpg">
      <div class="product"><img src="/p/1.jpg"></div><div class="product"><img src="/p/2.jpg"></div>
      <div class="ad"><img src="/ad.jpg"></div><a href="/full.jpg">full</a>"""
    assert urls(html, select=compile_selector("div.product img", "--select")) == [
        "http://shop.example/p/1.jpg",
        "http://shop.example/p/2.jpg",
    ]
    assert urls(html, select=compile_selector("div.product", "--select")) == [  # containers: the images inside
        "http://shop.example/p/1.jpg",
        "http://shop.example/p/2.jpg",
    ]


def test_follow_selector_and_links() -> None:
    html = """<ul class="pager"><li class="prev"><a href="?page=0">prev</a></li>
      <li class="next"><a href="?page=2#top">next</a></li></ul>
      <a href="/about.html">about</a><a href="mailto:x@y">mail</a><a href="/pic.jpg">pic</a>
      <map><area href="/area.html"></map>"""
    follow = compile_selector("li.next a", "--follow")
    assert extract_page(html, PAGE, follow=follow).links == ["http://shop.example/cat/shoes/index.html?page=2"]
    assert extract_page(html, PAGE, follow=compile_selector("li.next", "--follow")).links == [
        "http://shop.example/cat/shoes/index.html?page=2"
    ]
    every = extract_page(html, PAGE).links
    assert every == [
        "http://shop.example/cat/shoes/index.html?page=0",
        "http://shop.example/cat/shoes/index.html?page=2",
        "http://shop.example/about.html",
        "http://shop.example/area.html",
    ]
    assert extract_page(html, PAGE, collect_links=False).links == []


def test_invalid_selectors_are_clear_errors() -> None:
    with pytest.raises(GleanerError, match="--select: invalid CSS selector"):
        compile_selector("div[", "--select")
    assert compile_selector(None, "--follow") is None


@pytest.mark.parametrize(
    "html",
    [
        "",
        "<<<>>><img src=<img src='/a.jpg'>",
        "<html><body><img src='/a.jpg'<img src=\"/b.jpg\"></body",
        "\x00\x01\x02<img src='/nul\x00.jpg'>",
        b"\xff\xfe<\x00i\x00m\x00g\x00",
        b"<meta charset='no-such-codec'><img src='/x.jpg'>",
        "<img srcset='" + ",".join(f"/s{i}.jpg {i}w" for i in range(20000)) + "'>",
        "<img src='/" + "a" * 2_000_000 + ".jpg'><img src='/ok.jpg'>",
        "<div>" * 5000 + "<img src='/deep.jpg'>" + "</div>" * 5000,
        "<img srcset='(((((,,,, 1x 2x 3w (' data-src=' '>",
        "<svg><image href='/svg.jpg'/></svg><math><img src='/m.jpg'></math>",
        "<base href='javascript:alert(1)'><img src='rel.jpg'>",
        "<meta property='og:image'><a href>x</a><img>",
    ],
)
def test_hostile_html_never_raises(html: str | bytes) -> None:
    page = extract_page(html, PAGE, select=None, follow=compile_selector("a", "--follow"))
    assert all(c.url.startswith(("http://", "https://")) and len(c.url) < 5000 for c in page.images)


def test_thousands_of_images_are_capped_quickly() -> None:
    html = "".join(f"<img src='/i/{i}.jpg' alt='{i}'>" for i in range(MAX_IMAGES_PER_PAGE + 3000))
    started = time.perf_counter()
    page = extract_page(html, PAGE)
    assert len(page.images) == MAX_IMAGES_PER_PAGE
    assert page.truncated is True
    assert time.perf_counter() - started < 30  # a sanity bound only, far above the real cost


def test_label_rules() -> None:
    html = "<h1 class='category'>\n  Running   Shoes </h1><h1 class='category'>Other</h1>"
    page = extract_page(html, PAGE)
    from harvest.scrape.extract import parse_html

    soup = parse_html(html)
    css = parse_label_rule("css:h1.category")
    assert css.page_value(soup, PAGE) == "Running Shoes"
    assert css.image_label(css.page_value(soup, PAGE), "alt") == "Running Shoes"
    assert parse_label_rule("css:h2", fallback="misc").image_label(None, None) == "misc"
    url = parse_label_rule(r"url:/cat/(\w+)/")
    assert url.page_value(None, PAGE) == "shoes"
    assert parse_label_rule("url:shoes").page_value(None, PAGE) == "shoes"
    assert parse_label_rule("url:(boots)").page_value(None, PAGE) is None
    alt = parse_label_rule("alt", fallback="x")
    assert alt.image_label("ignored", "  red  sneaker ") == "red sneaker"
    assert alt.image_label(None, "   ") == "x"
    assert parse_label_rule(None, "cat").image_label(None, None) == "cat"
    assert page.images == []
    assert clean_label(" x\n y ") == "x y" and clean_label(" \n ") is None and clean_label(None) is None
    for bad, needle in (
        ("css:", "expected"),
        ("xpath://h1", "expected"),
        ("url:(", "regular expression"),
        ("css:h1[", "invalid CSS"),
    ):
        with pytest.raises(GleanerError, match=needle):
            parse_label_rule(bad)
