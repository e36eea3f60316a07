"""Untrusted text on the terminal: file names, URLs, servers' reason phrases and labels are shown as text.

rich reads `[...]` in strings as markup (`[/bold]` with nothing open raises MarkupError; `[link=...]` makes
a hyperlink), and a terminal obeys escape sequences (`\\x1b[2J` clears it, `\\x1b]0;...` sets its title). So
every untrusted cell goes through `plain()` (a `rich.text.Text`, never parsed as markup) or, inside a markup
string, `escaped()`; both drop C0 and C1 control characters (tabs and line breaks become spaces).
"""

from __future__ import annotations

import re
from typing import Final

from rich.markup import escape
from rich.text import Text

__all__ = ["clean_text", "escaped", "plain"]

_SPACES: Final = re.compile(r"[\t\n\r\v\f]")
_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_text(value: object) -> str:
    """The text with control characters removed (white-space controls become spaces); lone surrogates (names
    that are not UTF-8) shown as `\\udcNN` rather than breaking the terminal's encoder."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROLS.sub("", _SPACES.sub(" ", text))


def plain(value: object) -> Text:
    """A table cell or line that rich prints as it is."""
    return Text(clean_text(value))


def escaped(value: object) -> str:
    """Untrusted text to put inside a markup string."""
    return escape(clean_text(value))
