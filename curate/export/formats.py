"""The built-in export layouts. Each writes the original bytes, named by sha256, never re-encoded."""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from curate.export import register_exporter
from curate.export.folders import label_folders
from curate.snapshot import ManifestEntry
from storage.stores import ObjectStore

__all__ = ["SHARD_SIZE"]

SHARD_SIZE = 1000  # samples per WebDataset tar shard
READERS = 8


def _fetch(store: ObjectStore, entries: list[ManifestEntry]) -> Iterator[tuple[ManifestEntry, bytes]]:
    """Object bytes in manifest order, read ahead by a few threads (S3 latency hides behind them)."""
    with ThreadPoolExecutor(READERS) as pool:
        yield from zip(entries, pool.map(lambda e: store.get(e.key), entries), strict=True)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _file_name(entry: ManifestEntry) -> str:
    return f"{entry.sha256}.{entry.key.rsplit('.', 1)[-1]}"


def _classes(entries: list[ManifestEntry]) -> list[str]:
    return sorted({entry.label for entry in entries})


@register_exporter("imagefolder")
def export_imagefolder(entries: list[ManifestEntry], store: ObjectStore, out: Path) -> dict[str, int]:
    """out/<split>/<folder>/<sha256>.<ext> — torchvision's ImageFolder reads each split folder. The folder is
    the label itself when it is a safe name (curate.export.folders); labels.json maps folder → label."""
    folders = label_folders(entry.label for entry in entries)
    written = 0
    for entry, data in _fetch(store, entries):
        target = out / entry.split / folders[entry.label] / _file_name(entry)
        if not target.exists():
            _write_atomic(target, data)
        written += 1
    (out / "classes.txt").write_text("\n".join(_classes(entries)) + "\n")
    by_folder = {folder: label for label, folder in sorted(folders.items(), key=lambda item: item[1])}
    (out / "labels.json").write_text(json.dumps(by_folder, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return {"images": written}


def _export_with_manifest(entries: list[ManifestEntry], store: ObjectStore, out: Path, kind: str) -> dict[str, int]:
    for entry, data in _fetch(store, entries):
        target = out / "images" / _file_name(entry)
        if not target.exists():
            _write_atomic(target, data)
    rows = [
        {"path": f"images/{_file_name(e)}", "label": e.label, "split": e.split, "sha256": e.sha256} for e in entries
    ]
    if kind == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["path", "label", "split", "sha256"])
        writer.writeheader()
        writer.writerows(rows)
        _write_atomic(out / "manifest.csv", buffer.getvalue().encode())
    else:
        _write_atomic(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    return {"images": len(rows)}


@register_exporter("csv")
def export_csv(entries: list[ManifestEntry], store: ObjectStore, out: Path) -> dict[str, int]:
    """out/images/<sha256>.<ext> and out/manifest.csv (path, label, split, sha256)."""
    return _export_with_manifest(entries, store, out, "csv")


@register_exporter("jsonl")
def export_jsonl(entries: list[ManifestEntry], store: ObjectStore, out: Path) -> dict[str, int]:
    """out/images/<sha256>.<ext> and out/manifest.jsonl, one object per image."""
    return _export_with_manifest(entries, store, out, "jsonl")


@register_exporter("webdataset")
def export_webdataset(entries: list[ManifestEntry], store: ObjectStore, out: Path) -> dict[str, int]:
    """out/<split>/<split>-NNNNNN.tar shards: <sha256>.<ext>, <sha256>.cls (class index), <sha256>.json."""
    classes = _classes(entries)
    index = {label: i for i, label in enumerate(classes)}
    shards = 0
    for split in sorted({e.split for e in entries}):
        chosen = [e for e in entries if e.split == split]
        for start in range(0, len(chosen), SHARD_SIZE):
            batch = chosen[start : start + SHARD_SIZE]
            path = out / split / f"{split}-{start // SHARD_SIZE:06d}.tar"
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
                for entry, data in _fetch(store, batch):
                    meta = json.dumps({"label": entry.label, "sha256": entry.sha256, "split": split}).encode()
                    ext = entry.key.rsplit(".", 1)[-1]
                    for name, payload in ((ext, data), ("cls", str(index[entry.label]).encode()), ("json", meta)):
                        info = tarfile.TarInfo(f"{entry.sha256}.{name}")
                        info.size = len(payload)
                        info.mtime = 0
                        tar.addfile(info, io.BytesIO(payload))
            os.replace(tmp, path)
            shards += 1
    (out / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(classes) + "\n")
    return {"images": len(entries), "shards": shards}
