"""Labels that collectors find (page text, alt text, URL-list cells, folder names), made into catalog labels
per item, before the batch that records the item commits.

The collectors' rule, applied before the catalog's label rule (`storage.catalog.labels.normalize_label`):
trim, collapse white space, drop permalink glyphs ("¶", "§", "#", "🔗" that documentation generators put in
headings), replace "/" and "\\" with "-". A label that still cannot be made valid (too long, control
characters left) rejects that one item with a reason; it never ends the run.
"""

from __future__ import annotations

import re
from typing import Final

from storage.catalog.labels import InvalidLabel, normalize_label

__all__ = ["PERMALINK_GLYPHS", "InvalidLabel", "collector_label", "fallback_label"]

PERMALINK_GLYPHS: Final = "¶§🔗⚓"
_WHITESPACE: Final = re.compile(r"\s+")
_GLYPHS: Final = re.compile(f"[{PERMALINK_GLYPHS}]|(?:^|\\s)#(?=\\s|$)")
_SLASHES: Final = re.compile(r"\s*[/\\]+\s*")


def collector_label(text: str | None) -> str | None:
    """The catalog label for a label a collector found; None for no label (None or only white space and
    glyphs). Raises InvalidLabel (its message names the rule broken) when the label cannot be made valid."""
    if text is None:
        return None
    value = _GLYPHS.sub(" ", text)
    value = _SLASHES.sub("-", value)
    value = _WHITESPACE.sub(" ", value).strip().strip("-").strip()
    if not value:
        return None
    return normalize_label(value)


def fallback_label(text: str | None, option: str = "--label") -> str | None:
    """A label the user gave on the command line (`--label`): the same rule, but a bad one is a user error
    (one line, before anything runs) rather than a rejected item."""
    try:
        value = collector_label(text)
    except InvalidLabel as exc:
        raise InvalidLabel(f"{option}: {exc}") from None
    if text is not None and value is None:
        raise InvalidLabel(f"{option}: the label is empty")
    return value
