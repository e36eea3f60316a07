"""`--label-from` rules: where an image's label comes from. Pure functions over a parsed page.

- `css:SELECTOR` — the text of the first element matching SELECTOR on the page where the image was found
  (e.g. `css:h1.category` on a shop's category page);
- `url:REGEX` — the first group of REGEX searched in that page's URL (the whole match when it has no group);
- `alt` — the image's own alt text.
When the rule finds nothing, `--label` (if given) is the fallback, so an image is never labelled wrongly
by accident: it is labelled by the fallback or left unlabelled. The text found goes through the collectors'
label rule (harvest.labels.collector_label) per image; one that cannot be made valid rejects that image only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from bs4 import BeautifulSoup

from harvest.labels import fallback_label
from harvest.scrape.extract import compile_selector
from storage.errors import GleanerError

__all__ = ["LabelRule", "clean_label", "parse_label_rule"]

_WHITESPACE = re.compile(r"\s+")


def clean_label(text: Any) -> str | None:
    """Collapse whitespace and trim; None for empty text (the label rule is applied per image, later)."""
    if not isinstance(text, str):
        return None
    return _WHITESPACE.sub(" ", text).strip() or None


@dataclass(frozen=True)
class LabelRule:
    """A parsed `--label-from` value plus the `--label` fallback."""

    kind: Literal["css", "url", "alt", "none"]
    argument: str | None = None
    fallback: str | None = None
    selector: Any = None
    pattern: re.Pattern[str] | None = None

    def page_value(self, soup: BeautifulSoup | None, page_url: str) -> str | None:
        """The label a page gives to all of its images (css/url rules); None for per-image rules."""
        if self.kind == "css" and soup is not None and self.selector is not None:
            try:
                match = self.selector.select_one(soup)
            except RecursionError:
                return None
            return clean_label(match.get_text(" ")) if match is not None else None
        if self.kind == "url" and self.pattern is not None:
            found = self.pattern.search(page_url)
            if found is None:
                return None
            return clean_label(found.group(1) if found.re.groups else found.group(0))
        return None

    def image_label(self, page_value: str | None, alt: str | None) -> str | None:
        """The label for one image: the rule's value, else the fallback."""
        value = clean_label(alt) if self.kind == "alt" else page_value
        return value or self.fallback


def parse_label_rule(spec: str | None, fallback: str | None = None) -> LabelRule:
    """Parse `css:SELECTOR`, `url:REGEX` or `alt`; a clear error for anything else (before any fetching)."""
    label = fallback_label(fallback)
    if spec is None or not spec.strip():
        return LabelRule("none", fallback=label)
    kind, sep, argument = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "alt" and not argument:
        return LabelRule("alt", fallback=label)
    if kind == "css" and sep and argument.strip():
        return LabelRule("css", argument, label, selector=compile_selector(argument, "--label-from css"))
    if kind == "url" and sep and argument:
        try:
            pattern = re.compile(argument)
        except re.error as exc:
            raise GleanerError(f"--label-from url: invalid regular expression {argument!r}: {exc}") from None
        return LabelRule("url", argument, label, pattern=pattern)
    raise GleanerError(f"--label-from {spec!r}: expected css:SELECTOR, url:REGEX or alt")
