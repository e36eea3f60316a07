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


@dataclass(frozen=True)
class Pruned:
    """The kept elements as HTML text, how many elements the page had, and whether a cap dropped any that
    the rule would have kept."""

    html: str
    elements: int
    kept: int
    capped: bool


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
    turning a trailing space into %20); iterative, so that no nesting depth can overflow the stack."""
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        element, closing = stack.pop()
        tag = element.tag if isinstance(element.tag, str) and _NAME.fullmatch(element.tag) else None
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
        stack.append((element, True))
        stack.extend((child, False) for child in reversed(element))


def prune_html(html: bytes | str, encoding: str | None = None) -> Pruned:
    """Parse `html` (bytes: `encoding` is the HTTP header's charset) keeping only what extraction can use."""
    text = _text(html, encoding)
    parser = etree.HTMLPullParser(events=("end",), remove_comments=True, remove_pis=True, no_network=True, recover=True)
    pruner = _Pruner()
    for start in range(0, len(text), _CHUNK):
        parser.feed(text[start : start + _CHUNK])
        for _event, element in parser.read_events():
            pruner.end(element)
    try:
        root = parser.close()
    except etree.XMLSyntaxError:  # nothing that parses as an element (an empty page, binary junk)
        root = None
    for _event, element in parser.read_events():
        pruner.end(element)
    if root is None:
        return Pruned("", pruner.elements, 0, pruner.capped)
    kept = "".join(_serialize(root))
    return Pruned(kept, pruner.elements, pruner.kept, pruner.capped)
