"""A reusable corpus of hostile files: every one of them must be refused by ingest with a clear reason.

`make_hostile_corpus(dir)` writes the files and returns file name → a substring of the reason ingest gives
(`storage.imaging.analyze` for bytes, `storage.ingest.read_file` for paths). The bytes are deterministic,
and the decompression bomb stays under half a megabyte on disk while declaring 3.6 gigapixels.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import os
import random
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

__all__ = [
    "BOMB_SIDE",
    "PHOTOS",
    "bomb_png",
    "frames_bomb_gif",
    "hostile_url_lists",
    "make_fifo",
    "make_hostile_corpus",
    "png_bytes",
    "png_chunk",
    "scans_bomb_jpeg",
    "swapping_link",
    "tiny_bomb_webp",
    "valid_png",
]

PHOTOS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "photos"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOMB_SIDE = 60_000


def png_chunk(kind: bytes, data: bytes, *, crc: int | None = None) -> bytes:
    """One PNG chunk: length, type, data, CRC (the right CRC unless `crc` is given)."""
    checksum = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum & 0xFFFFFFFF)


def _ihdr(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    return struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)


def png_bytes(
    width: int,
    height: int,
    idat: bytes,
    *,
    bit_depth: int = 8,
    ihdr_crc: int | None = None,
    extra: bytes = b"",
    iend: bool = True,
) -> bytes:
    """A greyscale PNG assembled by hand, so that its header can say whatever a test needs."""
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", _ihdr(width, height, bit_depth), crc=ihdr_crc)
        + extra
        + png_chunk(b"IDAT", idat)
        + (png_chunk(b"IEND", b"") if iend else b"")
    )


def _grey_rows(width: int, rows: int, value: int = 0x80) -> bytes:
    return (b"\x00" + bytes([value]) * width) * rows  # filter byte 0, then the row's pixels


def valid_png(width: int = 64, height: int = 64, *, text: bytes = b"") -> bytes:
    """A small, valid greyscale PNG; `text` goes into a tEXt chunk (to vary the bytes, not the pixels)."""
    extra = png_chunk(b"tEXt", b"Comment\x00" + text) if text else b""
    return png_bytes(width, height, zlib.compress(_grey_rows(width, height), 9), extra=extra)


@functools.cache
def bomb_png() -> bytes:
    """A real 60000x60000 1-bit PNG: all its zero rows, compressed to about 440 KB, decode to 450 MB."""
    row = b"\x00" * (1 + (BOMB_SIDE + 7) // 8)
    block = row * 1000
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(block) for _ in range(BOMB_SIDE // 1000)]
    parts.append(compressor.flush())
    return png_bytes(BOMB_SIDE, BOMB_SIDE, b"".join(parts), bit_depth=1)


def tiny_bomb_webp(width: int = 9000, height: int = 9000) -> bytes:
    """A 38-byte lossless WebP that decodes to width x height pixels (9000 x 9000: 324 MB in memory, 3 s), under
    the pixel limit. A single-colour VP8L stream spends no bits on pixels, so a 16 x 16 one with its 14-bit
    width and height fields rewritten is a valid image of any size up to 16384 x 16384."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, "WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    header = data.index(b"VP8L") + 8
    assert data[header] == 0x2F  # the VP8L signature
    fields = int.from_bytes(data[header + 1 : header + 5], "little")
    fields = (width - 1) | ((height - 1) << 14) | ((fields >> 28) << 28)  # keep alpha hint and version
    data[header + 1 : header + 5] = fields.to_bytes(4, "little")
    return bytes(data)


def frames_bomb_gif(side: int = 9000, frames: int = 300) -> bytes:
    """A 7 KB GIF: a side x side canvas (81 Mpx at 9000, under Pillow's limit) and `frames` one-pixel frames;
    each frame decodes onto the whole canvas (0.6 s at 9000 px), so checking the last one took minutes."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff")
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for i in range(frames):
        out += b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # graphic control: 10 ms
        # a 1x1 image at (i, 0): LZW minimum code size 2, codes clear(4) 0 end(5) in 3 bits each = 0x44 0x01
        out += b"\x2c" + struct.pack("<HHHHB", i % side, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return bytes(out + b"\x3b")


@functools.cache
def scans_bomb_jpeg(scans: int = 2000, side: int = 2048) -> bytes:
    """A progressive JPEG of a grey gradient with `scans` scans (about 90 KB): its smallest AC scan repeated.
    libjpeg decodes every scan over the whole image (2,000 at 2048 px: about 2 s; the issue's: 12 s)."""
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((side, side)).convert("RGB").save(buffer, "JPEG", progressive=True, quality=75)
    data = buffer.getvalue()
    starts = [found.start() for found in re.finditer(rb"\xff\xda", data)]
    end = data.rindex(b"\xff\xd9")
    segments = [data[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)]
    smallest = min(segments, key=len)
    return data[:end] + smallest * (scans - len(segments)) + data[end:]


def _lying_png() -> bytes:
    """IHDR says 64x64, but the zlib stream holds only 2 rows and stops mid-stream (data shorter than declared)."""
    compressor = zlib.compressobj(9)
    partial = compressor.compress(_grey_rows(64, 2)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return png_bytes(64, 64, partial)


def _photo_bytes(photo: Path | None) -> bytes:
    if photo is None:
        found = sorted(PHOTOS.glob("*.jpg"))[:1] if PHOTOS.is_dir() else []
        photo = found[0] if found else None
    if photo is not None:
        return photo.read_bytes()
    # No shared photos: a noisy (so not tiny) JPEG does as well for truncation.
    rng = random.Random(0)
    image = Image.frombytes("RGB", (256, 256), bytes(rng.getrandbits(8) for _ in range(256 * 256 * 3)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_hostile_corpus(dir: Path, *, photo: Path | None = None) -> dict[str, str]:
    """Write the hostile files into `dir`; return file name → expected substring of the rejection reason."""
    dir.mkdir(parents=True, exist_ok=True)
    whole = _photo_bytes(photo)
    files: dict[str, tuple[bytes, str]] = {
        "truncated-photo.jpg": (whole[: len(whole) // 2], "truncated"),
        "empty.jpg": (b"", "empty"),
        "notes.jpg": (b"shopping list: milk, eggs, bread\nnot a picture at all\n", "text"),
        "page.png": (
            b"<!DOCTYPE html>\n<html><head><title>x</title></head><body><img src=a.png></body></html>\n",
            "HTML",
        ),
        "drawing.svg": (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="200" '
            b'height="200"><circle cx="100" cy="100" r="80" fill="red"/></svg>\n',
            "SVG",
        ),
        "bomb.png": (bomb_png(), "bomb"),
        "lying-header.png": (_lying_png(), "truncated"),
        # A broken IHDR checksum makes Pillow refuse the file before it knows it is a PNG.
        "bad-crc.png": (png_bytes(64, 64, zlib.compress(_grey_rows(64, 64)), ihdr_crc=0x12345678), "not a recognised"),
        "one-pixel.png": (valid_png(1, 1), "too small"),
        # Bombs under the pixel limit (issue 16, item 8): refused by the decode budget before decoding.
        "tiny-bomb.webp": (tiny_bomb_webp(), "bomb"),
        "frames-bomb.gif": (frames_bomb_gif(), "bomb"),
        "scans-bomb.jpg": (scans_bomb_jpeg(), "bomb"),
    }
    expected: dict[str, str] = {}
    for name, (data, reason) in files.items():
        (dir / name).write_bytes(data)
        expected[name] = reason
    link = dir / "dangling.jpg"
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(dir / "no-such-target.jpg", link)
    expected["dangling.jpg"] = "unreadable"
    return expected


# -- files that are not what they were a moment ago (issue 16, item 5) ---------------------------------------

_SWAPPER = """
import os, sys
link, regular, fifo, parent = sys.argv[1:5]
tmp = link + ".swap"
while os.getppid() == int(parent):  # the test that started it is gone: stop too
    for target in (regular, fifo):
        try:
            os.symlink(target, tmp)
        except FileExistsError:
            os.unlink(tmp)
            continue
        os.replace(tmp, link)
"""


def make_fifo(path: Path) -> Path:
    """A named pipe at `path`: opening it for reading blocks until a writer comes, which none ever does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


@contextlib.contextmanager
def swapping_link(link: Path, regular: Path) -> Iterator[Path]:
    """`link`, a symlink that another process swaps between `regular` and a FIFO as fast as it can, for the
    life of the block: a check that it is a regular file says nothing about what an open() then finds."""
    fifo = make_fifo(link.parent / f".{link.name}.fifo")
    os.symlink(regular, link)
    swapper = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(link), str(regular), str(fifo), str(os.getpid())])
    try:
        yield link
    finally:
        swapper.kill()
        swapper.wait()


# -- URL lists that break their parsers (issue 16, item 16) --------------------------------------------------

HUGE_FIELD = 17 * 1024 * 1024  # characters: over csv's 16 MiB field limit


def _csv_list(*lines: str) -> str:
    return "url,label\n" + "".join(f"{line}\n" for line in lines)


def hostile_url_lists(dir: Path, good: list[str]) -> dict[str, Path]:
    """URL lists, each holding the `good` URLs (at least three) around one hostile row or a hostile shape:
    name → path. `huge-field.csv` (a 17 MB field), `unterminated.csv` (a quote opened on the last data line
    and never closed), `bad-quote.csv` (text after a closing quote, as captions have: read leniently, as
    before), `deep.jsonl` (100,000 nested arrays), `long-number.jsonl` (a 5,000-digit integer),
    `long-line.txt` (one 17 MB line), `not-gzip.csv.gz` (plain text under a .gz name), `truncated.csv.gz`
    (a gzip cut in half: the good URLs, then 2,000 more rows)."""
    dir.mkdir(parents=True, exist_ok=True)
    first, *middle, last = good
    middle_rows = [f"{url},a" for url in middle]
    huge = "http://x/" + "a" * HUGE_FIELD
    texts = {
        "huge-field.csv": _csv_list(f"{first},a", f"{huge},b", *middle_rows, f"{last},a"),
        "unterminated.csv": _csv_list(f"{first},a", *middle_rows, f'"{last},a', "http://x/lost.jpg,a"),
        "bad-quote.csv": _csv_list(f'{first},"Best" photo', *middle_rows, f"{last},a"),
        "deep.jsonl": "".join(
            [json.dumps({"url": first}) + "\n", "[" * 100_000 + "]" * 100_000 + "\n"]
            + [json.dumps({"url": u}) + "\n" for u in [*middle, last]]
        ),
        "long-number.jsonl": "".join(
            [json.dumps({"url": first}) + "\n", '{"url": "http://x/n.jpg", "n": ' + "9" * 5000 + "}\n"]
            + [json.dumps({"url": u}) + "\n" for u in [*middle, last]]
        ),
        "long-line.txt": "\n".join([first, huge, *middle, last]) + "\n",
        "not-gzip.csv.gz": _csv_list(*good),
    }
    paths = {}
    for name, text in texts.items():
        (dir / name).write_text(text)
        paths[name] = dir / name
    whole = gzip.compress(_csv_list(*good, *(f"http://x/{n}.jpg,a" for n in range(2000))).encode(), mtime=0)
    (dir / "truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    paths["truncated.csv.gz"] = dir / "truncated.csv.gz"
    return paths
