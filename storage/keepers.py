"""Which of several near-duplicate copies a person would keep (used at ingest and by `curate dedupe`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["GREY_MODES", "ImageInfo", "clearly_better", "keeper_order"]

GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
_LOSSY_REENCODES = frozenset({"WEBP"})  # formats that are usually a re-encode of an original


@dataclass(frozen=True)
class ImageInfo:
    """What choosing a keeper needs to know of an image."""

    sha256: str
    width: int
    height: int
    size_bytes: int
    format: str
    mode: str
    labelled: bool
    added_at: datetime | None = None  # None: being added now (the latest)
    content_pixels: int | None = None  # pixels inside borders and frames; None: unknown (all of them)

    @property
    def colour(self) -> bool:
        return self.mode not in GREY_MODES


def keeper_order(info: ImageInfo, chosen: bool = False, matches: int = 0) -> tuple[object, ...]:
    """Sort key, best keeper first: chosen by a person, labelled, colour, larger content (pixels inside borders
    and frames: the photo rather than a screenshot of it, however many pixels the screenshot has), an original
    format, the copy that matches most of the others (`matches`: the original rather than its mirror, whose
    own copies may be out of reach), more bytes (less compressed), then the earliest."""
    return (
        not chosen,
        not info.labelled,
        not info.colour,
        -(info.content_pixels or info.width * info.height),
        info.format.upper() in _LOSSY_REENCODES,
        -matches,
        -info.size_bytes,
        info.added_at is None,
        info.added_at or datetime.max,
        info.sha256,
    )


def clearly_better(new: ImageInfo, old: ImageInfo) -> bool:
    """Should a copy arriving now take the place of a keeper? Only when it is labelled, in colour or larger
    where the keeper is not: a tie on those keeps the keeper people have been seeing (bytes alone do not tell
    an original from a re-encode)."""
    return keeper_order(new)[1:4] < keeper_order(old)[1:4]
