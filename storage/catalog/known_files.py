"""Local files the catalog already holds: what a folder source recorded for a path (`sources` rows of kind
`file`), so that a job's folder source can skip, before admission, the files a run of it already brought.

A file counts as catalogued when a `file` source with its exact path exists and the image it recorded has the
file's size, and the file was not modified after that source was recorded; a file rewritten since is read again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, select

from storage.catalog.schema import images, sources

__all__ = ["KnownFile", "known_files"]

CHUNK = 500  # paths per query (the IN list)


@dataclass(frozen=True)
class KnownFile:
    size: int  # the catalogued image's size in bytes
    recorded: datetime  # when the source was recorded (UTC)

    def matches(self, size: int, mtime: float) -> bool:
        """The file on disk is the one catalogued: same size, not modified after it was recorded."""
        return size == self.size and mtime <= self.recorded.timestamp()


def known_files(conn: Connection, uris: Sequence[str], kind: str = "file") -> dict[str, KnownFile]:
    """uri -> the newest catalogued source of that path (kind `file`), for the uris the catalog knows."""
    found: dict[str, KnownFile] = {}
    unique = sorted(set(uris))
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        query = (
            select(sources.c.uri, images.c.size_bytes, sources.c.fetched_at)
            .join(images, images.c.sha256 == sources.c.sha256)
            .where(sources.c.kind == kind, sources.c.uri.in_(chunk))
        )
        for uri, size, fetched_at in conn.execute(query):
            stamp = fetched_at if fetched_at.tzinfo is not None else fetched_at.replace(tzinfo=UTC)
            known = KnownFile(int(size), stamp)
            if uri not in found or known.recorded > found[uri].recorded:
                found[str(uri)] = known
    return found
