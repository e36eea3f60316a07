"""Export formats chosen by name through a registry: imagefolder, csv, jsonl, webdataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from curate.snapshot import ManifestEntry
from storage.stores import ObjectStore

__all__ = ["EXPORTERS", "Exporter", "export_formats", "register_exporter"]

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
