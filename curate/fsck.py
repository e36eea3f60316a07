"""`curate fsck`: the catalog and the store agree, and every object still hashes to its name."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from storage.catalog import iter_images, mark_status
from storage.catalog.images import image_exists
from storage.keys import IMAGE_PREFIX, sha256_from_key
from storage.workspace import Workspace

__all__ = ["FsckReport", "fsck"]

READERS = 8  # objects read at once: I/O bound on S3, and hashlib releases the GIL


@dataclass
class FsckReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    fixed: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.orphans)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "orphans": self.orphans,
            "fixed": self.fixed,
        }


def _verify(store: Any, row: dict[str, Any]) -> tuple[str, str]:
    """('ok' | 'missing' | 'corrupt', sha256) for one catalog image."""
    try:
        data = store.get(row["object_key"])
    except KeyError:
        return "missing", row["sha256"]
    return ("ok" if hashlib.sha256(data).hexdigest() == row["sha256"] else "corrupt"), row["sha256"]


def fsck(
    workspace: Workspace,
    *,
    fix: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_checked: Callable[[], None] | None = None,
) -> FsckReport:
    """Check every catalog image against the store, then look for objects the catalog does not know.

    With `fix`, orphans and corrupt objects are deleted and images without a whole object are marked
    `missing` (a re-import writes them again; images that are whole again go back to `ok`). Run `--fix` while
    no collector is writing: an object stored a moment before its catalog commit looks like an orphan.
    """
    store, catalog = workspace.store, workspace.catalog
    with catalog.read() as conn:
        rows = list(iter_images(conn))
    if on_start:
        on_start(len(rows))
    report = FsckReport()
    known = {row["sha256"] for row in rows}
    status_of = {row["sha256"]: row["status"] for row in rows}
    with ThreadPoolExecutor(READERS) as pool:
        for state, sha in pool.map(lambda row: _verify(store, row), rows):
            report.checked += 1
            if state == "missing":
                report.missing.append(sha)
            elif state == "corrupt":
                report.corrupt.append(sha)
            if on_checked:
                on_checked()
    report.orphans = sorted(key for key in _image_keys(store) if sha256_from_key(key) not in known)
    if fix:
        report.fixed = _repair(workspace, report, status_of, {row["sha256"]: row["object_key"] for row in rows})
    return report


def _image_keys(store: Any) -> Iterator[str]:
    yield from store.iter(IMAGE_PREFIX)


def _repair(
    workspace: Workspace, report: FsckReport, status_of: dict[str, str], key_of: dict[str, str]
) -> dict[str, int]:
    store, catalog = workspace.store, workspace.catalog
    # Corrupt objects are deleted below, so both kinds end up without a whole object: "missing".
    broken = {sha: "missing" for sha in [*report.missing, *report.corrupt]}
    restored = [sha for sha, status in status_of.items() if status != "ok" and sha not in broken]
    with catalog.write() as conn:
        for sha, status in broken.items():
            if status_of.get(sha) != status:
                mark_status(conn, sha, status)
        for sha in restored:
            mark_status(conn, sha, "ok")
    for sha in report.corrupt:
        # The bytes no longer match their name and are worth nothing; removing them lets a re-import of the
        # original file write it again (ingest skips keys that exist).
        store.delete(key_of[sha])
    removed = 0
    for key in report.orphans:
        orphan = sha256_from_key(key)
        with catalog.read() as conn:  # re-check: a collector may have committed it since the listing
            if orphan and image_exists(conn, orphan):
                continue
        store.delete(key)
        removed += 1
    return {"orphans_removed": removed, "marked": len(broken), "restored": len(restored)}
