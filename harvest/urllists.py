"""Stream URL lists (CSV, TSV, JSONL, Parquet, plain text; optionally gzip-compressed) in bounded memory.

The img2dataset-style input: one row per image URL, an optional label column. Rows are yielded one at a
time (csv reader, JSON lines, Parquet record batches), so a list of millions of URLs never sits in memory.
Readers are registered by format name; the format comes from the extension unless given.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from storage.errors import GleanerError

__all__ = ["FORMATS", "UrlRow", "detect_format", "read_url_list"]

_PARQUET_BATCH = 8192


@dataclass(frozen=True)
class UrlRow:
    """One row: its 1-based position, the URL and label found (None when missing), or why it is unusable."""

    line: int
    url: str | None
    label: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class _Columns:
    url: str
    label: str | None
    label_required: bool


Reader = Callable[[Path, _Columns], Iterator[UrlRow]]

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
    ".lst": "txt",
}


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    known = ", ".join(sorted(set(_EXTENSIONS)))
    raise GleanerError(f"{path}: cannot tell the list format from the name (known: {known}); pass --format")


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def _resolve_columns(names: list[str], columns: _Columns, path: Path) -> tuple[int, int | None]:
    if columns.url not in names:
        raise GleanerError(f"{path}: no column {columns.url!r} (columns: {', '.join(names) or 'none'}); use --url-col")
    label_index = None
    if columns.label is not None:
        if columns.label in names:
            label_index = names.index(columns.label)
        elif columns.label_required:
            raise GleanerError(f"{path}: no column {columns.label!r} for labels (columns: {', '.join(names)})")
    return names.index(columns.url), label_index


def _delimited(delimiter: str) -> Reader:
    def read(path: Path, columns: _Columns) -> Iterator[UrlRow]:
        with _open_text(path) as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                return
            url_index, label_index = _resolve_columns([h.strip() for h in header], columns, path)
            for number, record in enumerate(reader, start=2):
                if not record:
                    continue
                url = _clean(record[url_index]) if url_index < len(record) else None
                label = _clean(record[label_index]) if label_index is not None and label_index < len(record) else None
                yield UrlRow(number, url, label, None if url else f"no URL in column {columns.url!r}")

    return read


def _jsonl(path: Path, columns: _Columns) -> Iterator[UrlRow]:
    with _open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            text = text.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield UrlRow(number, None, None, f"invalid JSON: {exc.msg}")
                continue
            if isinstance(record, str):
                yield UrlRow(number, _clean(record), None, None if _clean(record) else "empty URL")
                continue
            if not isinstance(record, dict):
                yield UrlRow(number, None, None, "neither an object nor a string")
                continue
            url = _clean(record.get(columns.url))
            label = _clean(record.get(columns.label)) if columns.label else None
            if columns.label_required and columns.label and columns.label not in record:
                yield UrlRow(number, url, None, f"no {columns.label!r} key")
                continue
            yield UrlRow(number, url, label, None if url else f"no {columns.url!r} key")


def _parquet(path: Path, columns: _Columns) -> Iterator[UrlRow]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise GleanerError(f"{path}: not a readable Parquet file: {exc}") from None
    _, label_index = _resolve_columns(list(parquet.schema_arrow.names), columns, path)
    wanted = [columns.url] + ([columns.label] if label_index is not None and columns.label else [])
    number = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, columns=wanted):
        urls = batch.column(0).to_pylist()
        labels = batch.column(1).to_pylist() if batch.num_columns > 1 else [None] * len(urls)
        for url_value, label_value in zip(urls, labels, strict=True):
            number += 1
            url = _clean(url_value)
            yield UrlRow(number, url, _clean(label_value), None if url else f"no URL in column {columns.url!r}")


def _text(path: Path, _columns: _Columns) -> Iterator[UrlRow]:
    with _open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            url = text.strip()
            if url and not url.startswith("#"):
                yield UrlRow(number, url)


FORMATS: dict[str, Reader] = {
    "csv": _delimited(","),
    "tsv": _delimited("\t"),
    "jsonl": _jsonl,
    "parquet": _parquet,
    "txt": _text,
}


def read_url_list(
    path: Path, *, fmt: str | None = None, url_col: str = "url", label_col: str | None = None
) -> Iterator[UrlRow]:
    """Rows of a URL list. `label_col` None means: use a column named "label" when there is one."""
    if not path.is_file():
        raise GleanerError(f"{path}: no such file")
    name = fmt or detect_format(path)
    if name not in FORMATS:
        raise GleanerError(f"unknown list format {name!r} (known: {', '.join(FORMATS)})")
    columns = _Columns(url=url_col, label=label_col or "label", label_required=label_col is not None)
    csv.field_size_limit(16 * 1024 * 1024)
    return FORMATS[name](path, columns)
