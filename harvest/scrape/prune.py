"""A page parsed in bounded memory: stream it through lxml and keep only the elements the extractor or a
selector can use, before BeautifulSoup ever sees it.

BeautifulSoup costs about 70 times a page's size in memory for dense markup (a 20 MB page of `<i></i>`
reached 1.45 GB), because every element becomes a Python object. libxml2's pull parser costs far less, and
an element can be dropped as soon as it ends. What stays: the elements the extractor reads (img, source,
picture, a, area, link, meta, base, title, and the document skeleton), every element with an attribute or
its own text (ids and classes for --select/--follow, headings for `--label-from css:`), and the ancestors of
all of these (for descendant selectors). Dropped: empty elements without attributes, comments, processing
instructions, and script and style elements. Past MAX_KEPT elements only what the extractor reads is kept,
and past MAX_ELEMENTS nothing more (`Pruned.capped` says so). Selectors that count siblings (`:nth-child`,
`+`, `~`, `:empty`) may see a page with its empty elements gone.

Nesting depth: libxml2 stops building the tree at 255 levels (2,048 with `huge_tree`) and silently drops
*everything after that point*, so a page of unclosed `<font>` or `<div>` tags lost every image below and after
them, with no error. The page is parsed with `huge_tree` (its text-size limits do not matter: pages are capped
at PAGE_MAX_BYTES); a page nested deeper than FLATTEN_DEPTH is parsed again from its extracted tags alone
(`Pruned.flattened`: its images and links survive, selectors lose their context); and elements below
SERIALIZE_DEPTH are written without their own tags, so that BeautifulSoup's own lxml parse (no `huge_tree`)
sees the whole page too.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from bs4 import UnicodeDammit
from lxml import etree

__all__ = ["MAX_ELEMENTS", "MAX_KEPT", "Pruned", "prune_html"]

EXTRACTED: Final = frozenset(
    {"img", "source", "picture", "a", "area", "link", "meta", "base", "title", "html", "head", "body"}
)
DROPPED: Final = frozenset({"script", "style"})
MAX_KEPT: Final = 50_000  # elements kept in full; after them, only the EXTRACTED ones (and their ancestors)
MAX_ELEMENTS: Final = 100_000  # elements kept at all
_CHUNK: Final = 64 * 1024  # characters fed to the parser at a time
_VOID: Final = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "track", "wbr"}
)
_NAME: Final = re.compile(r"[^\s\"'<>/=\x00-\x1f]+")
FLATTEN_DEPTH: Final = 1_000  # deeper than this, a page is parsed again from its extracted tags alone
SERIALIZE_DEPTH: Final = 200  # deeper elements lose their own tags in the kept HTML (BeautifulSoup's lxml: 255)
_FLAT_KEPT: Final = EXTRACTED - {"picture"} | DROPPED  # raw-text elements stay, so their text stays text
_TAG: Final = re.compile(r"</?([A-Za-z][^\s/>]*)[^>]*>")


@dataclass(frozen=True)
class Pruned:
    """The kept elements as HTML text, how many elements the page had, and whether a cap dropped any that
    the rule would have kept."""

    html: str
    elements: int
    kept: int
    capped: bool
    flattened: bool = False  # nested deeper than FLATTEN_DEPTH: parsed again from its extracted tags alone


def _text(html: bytes | str, encoding: str | None) -> str:
    """The page as text: the HTTP charset first, then what the bytes and `<meta charset>` say (bs4's rules)."""
    if isinstance(html, str):
        return html
    dammit = UnicodeDammit(html, [encoding] if encoding else [], is_html=True)
    return dammit.unicode_markup or html.decode("utf-8", "replace")


def _joined(before: str | None, after: str) -> str:
    """Text on both sides of a dropped element, a space between them as `get_text(" ")` would have put it."""
    return f"{before} {after}" if before else after


def _drop(element: Any) -> None:
    """Remove `element`, leaving the text that follows it where it was."""
    parent = element.getparent()
    if parent is None:
        return
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = _joined(previous.tail, element.tail)
        else:
            parent.text = _joined(parent.text, element.tail)
    parent.remove(element)


class _Pruner:
    def __init__(self) -> None:
        self.elements = 0
        self.kept = 0
        self.capped = False

    def wanted(self, element: Any) -> bool:
        tag = element.tag
        if not isinstance(tag, str) or tag in DROPPED:
            return False
        if len(element) or tag in EXTRACTED:  # children still there were kept: an ancestor of kept elements
            return self.kept < MAX_ELEMENTS or tag in ("html", "head", "body")
        if element.attrib or (element.text and not element.text.isspace()):
            return self.kept < MAX_KEPT
        return False

    def end(self, element: Any) -> None:
        self.elements += 1
        if self.wanted(element):
            self.kept += 1
            return
        if self.kept >= MAX_KEPT and (element.attrib or len(element) or element.tag in EXTRACTED):
            self.capped = True
        _drop(element)


def _serialize(root: Any) -> Iterator[str]:
    """The tree as HTML, attribute values as they were (lxml's HTML writer URL-escapes `src` and `href`,
    turning a trailing space into %20); iterative, so that no nesting depth can overflow the stack. Elements
    deeper than SERIALIZE_DEPTH are written without their own tags (their content stays), so that a parser
    with libxml2's default depth limit reads the whole of it."""
    stack: list[tuple[Any, bool, int]] = [(root, False, 0)]
    while stack:
        element, closing, depth = stack.pop()
        named = isinstance(element.tag, str) and _NAME.fullmatch(element.tag)
        tag = element.tag if named and (depth < SERIALIZE_DEPTH or element.tag in _FLAT_KEPT) else None
        if closing:
            if tag is not None and tag not in _VOID:
                yield f"</{tag}>"
            if element.tail and element is not root:
                yield htmllib.escape(element.tail, quote=False)
            continue
        if tag is not None:
            attributes = "".join(
                f' {name}="{htmllib.escape(value)}"' for name, value in element.attrib.items() if _NAME.fullmatch(name)
            )
            yield f"<{tag}{attributes}>"
        if element.text:
            yield htmllib.escape(element.text, quote=False)
        stack.append((element, True, depth))
        stack.extend((child, False, depth + 1) for child in reversed(element))


def _flat(text: str) -> str:
    """The page with every tag dropped but those extraction reads (and script/style, whose text is not markup):
    nothing left nests deeper than a few levels."""
    return _TAG.sub(lambda tag: tag[0] if tag[1].lower() in _FLAT_KEPT else "", text)


def _parse(text: str, pruner: _Pruner) -> tuple[Any, int]:
    """Stream `text` through libxml2's HTML parser, pruning as elements end: (root or None, deepest nesting)."""
    parser = etree.HTMLPullParser(
        events=("start", "end"), remove_comments=True, remove_pis=True, no_network=True, recover=True, huge_tree=True
    )
    depth = deepest = 0

    def consume() -> None:
        nonlocal depth, deepest
        for event, element in parser.read_events():
            if event == "start":
                depth += 1
                deepest = max(deepest, depth)
            else:
                depth -= 1
                pruner.end(element)

    for start in range(0, len(text), _CHUNK):
        parser.feed(text[start : start + _CHUNK])
        consume()
    try:
        root = parser.close()
    except etree.XMLSyntaxError:  # nothing that parses as an element (an empty page, binary junk)
        root = None
    consume()
    return root, deepest


def prune_html(html: bytes | str, encoding: str | None = None) -> Pruned:
    """Parse `html` (bytes: `encoding` is the HTTP header's charset) keeping only what extraction can use."""
    text = _text(html, encoding)
    pruner = _Pruner()
    root, deepest = _parse(text, pruner)
    flattened = deepest > FLATTEN_DEPTH
    if flattened:  # libxml2 may have dropped the rest of the page at its depth limit: read it without nesting
        pruner = _Pruner()
        root, _ = _parse(_flat(text), pruner)
    if root is None:
        return Pruned("", pruner.elements, 0, pruner.capped, flattened)
    kept = "".join(_serialize(root))
    return Pruned(kept, pruner.elements, pruner.kept, pruner.capped, flattened)
