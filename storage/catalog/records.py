"""Rows describing images and where they came from."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["ImageFacts", "SourceInfo", "default_actor"]


@dataclass(frozen=True)
class ImageFacts:
    """What ingest learns from an image's bytes; everything a catalog row needs."""

    sha256: str
    format: str  # Pillow's format name: JPEG, PNG, ...
    ext: str  # file extension for the object key, without dot
    size_bytes: int
    width: int
    height: int
    mode: str
    phash: int  # unsigned 64-bit
    dhash: int | None = None  # unsigned 64-bit, same thumbnail as the pHash (storage.hashes.compute)
    phash_trim: int | None = None  # pHash after trimming uniform borders and bars
    hash_variants: bytes | None = None  # storage.hashes.compute.ImageHashes.to_blob()
    hash_version: int | None = None
    content_pixels: int | None = None  # pixels inside a frame (margins on 3-4 sides), else all; own size

    @property
    def content_type(self) -> str:
        return f"image/{'jpeg' if self.ext == 'jpg' else self.ext}"


@dataclass(frozen=True)
class SourceInfo:
    """Provenance of one sighting of an image: a file, a URL, a page."""

    kind: str  # file | url | scrape | watch
    uri: str
    page_url: str | None = None
    alt_text: str | None = None
    http_status: int | None = None
    fetched_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def default_actor() -> str:
    """Who made a change, for label history: $GLEANER_ACTOR, else the login name."""
    actor = os.environ.get("GLEANER_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
