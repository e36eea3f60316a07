"""Export formats chosen by name through a registry: imagefolder, csv, jsonl, webdataset."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from curate.snapshot import ManifestEntry
from storage.errors import GleanerError
from storage.stores import ObjectStore

__all__ = ["EXPORTERS", "Exporter", "export_formats", "prepare_out", "register_exporter"]

Exporter = Callable[[list[ManifestEntry], ObjectStore, Path], dict[str, int]]
EXPORTERS: dict[str, Exporter] = {}


def register_exporter(name: str) -> Callable[[Exporter], Exporter]:
    def decorate(fn: Exporter) -> Exporter:
        EXPORTERS[name] = fn
        return fn

    return decorate


def export_formats() -> list[str]:
    from curate.export import formats  # noqa: F401 - registers the built-in formats

    return sorted(EXPORTERS)


def prepare_out(out: Path, *, overwrite: bool = False, keep: Iterable[Path] = ()) -> None:
    """Make `out` an empty folder to export into, or refuse with a clear error.

    A non-empty folder is refused unless `overwrite` (then its contents are removed first): two exports into one
    folder would mix snapshots (images of one snapshot in the splits of another). `keep` are folders that
    --overwrite must never empty, such as the workspace and the current folder, nor any folder holding them.
    """
    if out.exists() and not out.is_dir():
        raise GleanerError(f"--out {out} is a file, not a folder: name a folder to export into")
    if out.is_dir():
        entries = list(out.iterdir())
        if entries and not overwrite:
            raise GleanerError(
                f"--out {out} is not empty ({len(entries)} entries): name an empty or new folder, "
                "or add --overwrite to empty it first"
            )
        resolved = out.resolve()
        for folder in keep:
            if folder.resolve() == resolved or resolved in folder.resolve().parents:
                raise GleanerError(f"--overwrite would empty {out}, which holds {folder}: name another --out folder")
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GleanerError(f"cannot create --out {out}: {exc.strerror}") from None
