"""What a response is, judged before and while reading it: content type, magic bytes, X-Robots-Tag.

Servers lie about types (HTML error pages as image/jpeg, images as text/plain), so an image fetch needs
both a plausible Content-Type and bytes that start like an image; the first chunk decides, and the rest
of a wrong body is never downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["IMAGE_TYPES_ALLOWED", "PAGE_MAX_BYTES", "image_type_ok", "noai_directive", "sniff_image", "sniff_non_image"]

IMAGE_TYPES_ALLOWED = ("image/", "application/octet-stream", "binary/octet-stream")
SNIFF_BYTES = 32
PAGE_MAX_BYTES = 10 * 1024 * 1024  # an HTML page; real ones are well under 2 MB, and each byte costs memory to parse

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"\xff\x0a", "jxl"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jxl"),
)
_NETPBM = (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6")


def image_type_ok(content_type: str | None) -> bool:
    """A missing type is allowed (the bytes decide); otherwise image/* or a generic binary type."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith(IMAGE_TYPES_ALLOWED) and media != "image/svg+xml"


def sniff_image(head: bytes) -> str | None:
    """The image format the first bytes announce, or None when they do not start like a raster image."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"):
        return "avif" if head[8:11] == b"avi" else "heif"
    if head[:2] in _NETPBM and head[2:3] in (b" ", b"\t", b"\n", b"\r"):
        return "netpbm"
    return None


def sniff_non_image(head: bytes) -> str:
    """A short description of a body that is not an image, for the error message."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<!--")):
        return "an HTML document"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "an SVG (vector) document"
    if text.startswith(b"<"):
        return "markup"
    if text.startswith((b"{", b"[")):
        return "JSON"
    if text.startswith(b"%pdf"):
        return "a PDF document"
    return "not a known image format"


def noai_directive(values: Iterable[str], agent: str) -> str | None:
    """The `noai`/`noimageai` directive in X-Robots-Tag values that applies to `agent`, if any.

    Values look like `noai`, `noindex, noimageai` or `GleanerBot: noai`; a directive scoped to another
    bot does not apply.
    """
    token = agent.split("/", 1)[0].strip().lower()
    for value in values:
        scope: str | None = None
        for part in value.split(","):
            item = part.strip().lower()
            if ":" in item:
                head, _, rest = item.partition(":")
                if head.strip() not in ("unavailable_after",):
                    scope, item = head.strip(), rest.strip()
            if item in ("noai", "noimageai") and (scope is None or scope in ("*", token)):
                return item
    return None
