"""Finding images by a sha256 prefix, as people copy them from tables (git-style short hashes)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from storage.catalog.schema import images
from storage.errors import GleanerError

__all__ = ["resolve_sha"]

MIN_PREFIX = 6


def resolve_sha(conn: Connection, prefix: str) -> str:
    """The one full sha256 that starts with `prefix`; a clear error when none or several match."""
    prefix = prefix.strip().lower()
    if len(prefix) < MIN_PREFIX or any(ch not in "0123456789abcdef" for ch in prefix):
        raise GleanerError(f"{prefix!r} is not a sha256 or a prefix of at least {MIN_PREFIX} hex digits")
    found = conn.execute(select(images.c.sha256).where(images.c.sha256.startswith(prefix)).limit(2)).scalars().all()
    if not found:
        raise GleanerError(f"no image with sha256 starting {prefix}")
    if len(found) > 1:
        raise GleanerError(f"sha256 prefix {prefix} is ambiguous; give more digits")
    return str(found[0])
