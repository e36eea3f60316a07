"""Content-addressed object keys: `images/<sha256[:2]>/<sha256>.<ext>`.

The key is a pure function of the bytes, so writing an object twice is a no-op and any S3 client
can find an image from its hash alone.
"""

from __future__ import annotations

import re

__all__ = ["IMAGE_PREFIX", "image_key", "sha256_from_key"]

IMAGE_PREFIX = "images/"
_KEY_RE = re.compile(r"^images/([0-9a-f]{2})/([0-9a-f]{64})\.([a-z0-9]+)$")


def image_key(sha256: str, ext: str) -> str:
    """The store key of an image with this digest and file extension (without dot)."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"{IMAGE_PREFIX}{sha256[:2]}/{sha256}.{ext.lower()}"


def sha256_from_key(key: str) -> str | None:
    """The digest a well-formed image key names, or None for anything else (foreign objects)."""
    match = _KEY_RE.fullmatch(key)
    if not match or match.group(1) != match.group(2)[:2]:
        return None
    return match.group(2)
