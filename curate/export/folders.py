"""Label → folder name for layouts that make a folder per label (imagefolder): always one safe path component.

Labels stored under the label rule (storage.catalog.labels) are already safe names; this mapping also guards
labels from catalogs and snapshots made before that rule: `..` would write into the export's parent, NUL or a
slash would crash or nest, and a 200-character CJK label is over the 255-byte limit of most file systems. Two
labels never share a folder, also on case-insensitive file systems (macOS, Windows): a name that had to change,
or that collides under case-folding, gets a short digest of its label appended.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from typing import Final

__all__ = ["MAX_FOLDER_BYTES", "label_folders", "safe_folder_name"]

MAX_FOLDER_BYTES: Final = 120  # well under NAME_MAX (255 bytes), leaving room for the digest
_UNSAFE: Final = frozenset('/\\<>:"|?*')  # path separators and what Windows refuses in a name


def _digest(label: str) -> str:
    return hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _clean(label: str) -> str:
    text = unicodedata.normalize("NFC", label)
    text = "".join(
        "_" if ch in _UNSAFE or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") else ch for ch in text
    )
    text = text.strip().rstrip(".")  # Windows drops trailing dots and spaces; "." and ".." become empty
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_FOLDER_BYTES:
        text = encoded[:MAX_FOLDER_BYTES].decode("utf-8", "ignore")  # whole characters only
    return text


def safe_folder_name(label: str) -> str:
    """One safe path component for `label` (the label itself when it already is one)."""
    cleaned = _clean(label)
    if cleaned == label and cleaned:
        return cleaned
    return f"{cleaned}~{_digest(label)}" if cleaned else f"label~{_digest(label)}"


def label_folders(labels: Iterable[str]) -> dict[str, str]:
    """label → folder name, distinct under case-folding; labels in sorted order keep their plain names first."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for label in sorted(set(labels)):
        folder = safe_folder_name(label)
        if folder.casefold() in taken:
            folder = f"{_clean(label) or 'label'}~{_digest(label)}"
        taken.add(folder.casefold())
        folders[label] = folder
    return folders
