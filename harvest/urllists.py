"""Stream URL lists (CSV, TSV, JSONL, Parquet, plain text; optionally gzip-compressed) in bounded memory.

The img2dataset-style input: one row per image URL, an optional label column. Rows are yielded one at a
time (csv reader, JSON lines, Parquet record batches), so a list of millions of URLs never sits in memory.
Readers are registered by format name; the format comes from the extension unless given.

Hostile lists (issue 16, item 16): a bad row is one rejected row and the list goes on — a field or line over
MAX_FIELD characters, JSON nested past the parser's depth, a number too long to convert, a malformed CSV
quote (csv's strict mode, so that a quote never closed is reported instead of silently swallowing the rest
of the file into one field); a bad file is one line — a `.gz` that is not gzip; a file that ends early (a
truncated gzip, a damaged Parquet page) keeps the rows before the damage and adds one rejected row saying so.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from storage.errors import GleanerError

__all__ = ["FORMATS", "UrlRow", "detect_format", "read_url_list"]

_PARQUET_BATCH = 8192
MAX_FIELD = 16 * 1024 * 1024  # characters in one CSV field or one line of any text list
_DAMAGE = (EOFError, zlib.error, OSError)  # a compressed or binary file that stops making sense


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


class _LongLine(Exception):
    """A line over MAX_FIELD characters (its rest was skipped); raised through csv.reader to the caller."""


class _BoundedLines:
    """The handle's lines, never more than MAX_FIELD characters of one in memory: an over-long line is read
    to its end, dropped, and signalled with _LongLine; iterating goes on after it (a generator could not).
    `taken` holds the lines read since the last `mark()` (the CSV record in progress)."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.taken: list[str] = []

    def mark(self) -> list[str]:
        """The lines of the record just read; the next record starts empty."""
        taken, self.taken = self.taken, []
        return taken

    def __iter__(self) -> _BoundedLines:
        return self

    def __next__(self) -> str:
        line = self.handle.readline(MAX_FIELD + 1)
        if not line:
            raise StopIteration
        if len(line) <= MAX_FIELD or line.endswith("\n"):
            self.taken.append(line)
            return line
        while (rest := self.handle.readline(MAX_FIELD)) and not rest.endswith("\n"):
            pass
        raise _LongLine(f"line over {MAX_FIELD:,} characters")


class _Damaged(Exception):
    """A binary list (Parquet) that cannot be read on from here."""


def _damaged(exc: BaseException, *, at_start: bool) -> str:
    """What to say about a file that stops making sense, at once or part-way through."""
    if isinstance(exc, gzip.BadGzipFile):
        return "not a gzip file, although its name ends in .gz"
    lost = "" if at_start else ": the rows after this point are lost"
    if isinstance(exc, EOFError):
        return f"the file ends early (truncated){lost}"
    if isinstance(exc, zlib.error | _Damaged):
        return f"the file is damaged ({exc}){lost}"
    return f"unreadable: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}{lost}"


def _guarded(read: Reader) -> Reader:
    """A reader whose file damage is one line: a GleanerError before any row, else a last rejected row."""

    def guarded(path: Path, columns: _Columns) -> Iterator[UrlRow]:
        last = 0
        try:
            for row in read(path, columns):
                last = row.line
                yield row
        except (*_DAMAGE, _Damaged) as exc:
            if last == 0:
                raise GleanerError(f"{path}: {_damaged(exc, at_start=True)}") from None
            yield UrlRow(last + 1, None, None, _damaged(exc, at_start=False))

    return guarded


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


def _csv_problem(exc: csv.Error, first_line: int, last_line: int) -> str:
    """A csv.Error as a row's reason, with the lines the record covers."""
    lines = f"line {first_line}" if last_line <= first_line else f"lines {first_line}-{last_line}"
    if "unexpected end of data" in str(exc):
        return f"{lines}: a quoted field is never closed (unterminated quote), so the rest of the file is one field"
    return f"{lines}: malformed CSV: {exc}"


def _records(lines: _BoundedLines, delimiter: str) -> Iterator[list[str] | str]:
    """CSV records from `lines`, or the reason a record is unreadable; a fresh reader goes on at the next line
    (after an error csv.reader keeps failing: its field buffer is not reset).

    Strict parsing finds a quote that is never closed (lenient csv reads the rest of the file into one field
    without a word); a record that strict parsing refuses for another reason (`"Best" photo`, text after a
    closing quote) is read again leniently from its own lines, as before, so real captions still load."""
    consumed = 0  # lines read by the readers before this one
    while True:
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        before = 0  # lines read by this reader up to the end of its last good record
        try:
            for record in reader:
                before = reader.line_num
                lines.mark()
                yield record
            return
        except _LongLine as exc:
            lines.mark()
            consumed += reader.line_num + 1
            yield f"line {consumed}: {exc}"
        except csv.Error as exc:
            first, last = consumed + before + 1, consumed + reader.line_num
            consumed += reader.line_num
            taken = lines.mark()
            if "unexpected end of data" in str(exc):
                yield _csv_problem(exc, first, last)
                continue
            try:
                yield from csv.reader(taken, delimiter=delimiter)
            except csv.Error as again:  # a field over the limit, or worse
                yield _csv_problem(again, first, last)


def _delimited(delimiter: str) -> Reader:
    def read(path: Path, columns: _Columns) -> Iterator[UrlRow]:
        with _open_text(path) as handle:
            records = _records(_BoundedLines(handle), delimiter)
            header = next(records, None)
            if header is None:
                return
            if isinstance(header, str):
                raise GleanerError(f"{path}: unreadable header: {header}")
            url_index, label_index = _resolve_columns([h.strip() for h in header], columns, path)
            for number, record in enumerate(records, start=2):
                if isinstance(record, str):
                    yield UrlRow(number, None, None, record)
                    continue
                if not record:
                    continue
                url = _clean(record[url_index]) if url_index < len(record) else None
                label = _clean(record[label_index]) if label_index is not None and label_index < len(record) else None
                yield UrlRow(number, url, label, None if url else f"no URL in column {columns.url!r}")

    return read


def _jsonl(path: Path, columns: _Columns) -> Iterator[UrlRow]:
    with _open_text(path) as handle:
        lines = _BoundedLines(handle)
        for number in itertools.count(1):
            try:
                text = next(lines).strip()
            except StopIteration:
                return
            except _LongLine as exc:
                yield UrlRow(number, None, None, str(exc))
                continue
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield UrlRow(number, None, None, f"invalid JSON: {exc.msg}")
                continue
            except RecursionError:
                yield UrlRow(number, None, None, "invalid JSON: nested too deeply")
                continue
            except ValueError as exc:  # e.g. an integer of more digits than Python converts
                yield UrlRow(number, None, None, f"invalid JSON: {exc}")
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
    batches = parquet.iter_batches(batch_size=_PARQUET_BATCH, columns=wanted)
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # pyarrow's errors for a damaged page or row group
            raise _Damaged(f"{type(exc).__name__}: {exc}") from None
        if batch is None:
            return
        urls = batch.column(0).to_pylist()
        labels = batch.column(1).to_pylist() if batch.num_columns > 1 else [None] * len(urls)
        for url_value, label_value in zip(urls, labels, strict=True):
            number += 1
            url = _clean(url_value)
            yield UrlRow(number, url, _clean(label_value), None if url else f"no URL in column {columns.url!r}")


def _text(path: Path, _columns: _Columns) -> Iterator[UrlRow]:
    with _open_text(path) as handle:
        lines = _BoundedLines(handle)
        for number in itertools.count(1):
            try:
                url = next(lines).strip()
            except StopIteration:
                return
            except _LongLine as exc:
                yield UrlRow(number, None, None, str(exc))
                continue
            if url and not url.startswith("#"):
                yield UrlRow(number, url)


FORMATS: dict[str, Reader] = {
    "csv": _guarded(_delimited(",")),
    "tsv": _guarded(_delimited("\t")),
    "jsonl": _guarded(_jsonl),
    "parquet": _guarded(_parquet),
    "txt": _guarded(_text),
}


def read_url_list(
    path: Path, *, fmt: str | None = None, url_col: str = "url", label_col: str | None = None
) -> Iterator[UrlRow]:
    """Rows of a URL list. `label_col` None means: use a column named "label" when there is one."""
    if not path.is_file():  # (a FIFO or a device would block or never end)
        raise GleanerError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    name = fmt or detect_format(path)
    if name not in FORMATS:
        raise GleanerError(f"unknown list format {name!r} (known: {', '.join(FORMATS)})")
    columns = _Columns(url=url_col, label=label_col or "label", label_required=label_col is not None)
    csv.field_size_limit(MAX_FIELD)
    return FORMATS[name](path, columns)
