"""Provenance of local files (the folder and watch sources): what the catalog records as a file's path.

- Absolute and normalised (`photos/../pics/food/a.jpg` is recorded as `/home/me/pics/food/a.jpg`; issue 15
  item 9). Symlinks are not followed: the path is the one the user named, without `.` and `..`.
- Always valid text: a name holding bytes that are not UTF-8 (Linux allows any byte but `/` and NUL) is
  recorded with those bytes escaped as `\\xNN` (`bad\\xffname.jpg`), and the exact bytes are kept in the
  source's `path_hex`, so nothing is lost and the catalog (which stores UTF-8) never sees a lone surrogate.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from storage.catalog import SourceInfo
from storage.ingest import source_for_path

__all__ = ["file_source", "printable_path"]


def printable_path(path: str | os.PathLike[str]) -> str:
    """The path as valid UTF-8 text: bytes that are not UTF-8 become `\\xNN`."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_source(path: str | os.PathLike[str], kind: str = "file") -> SourceInfo:
    """The provenance of a local file (see the module docstring)."""
    absolute = os.path.abspath(path)
    source = source_for_path(Path(absolute), kind)
    raw = os.fsencode(absolute)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return replace(source, uri=printable_path(absolute), extra={**source.extra, "path_hex": raw.hex()})
    return replace(source, uri=absolute)
