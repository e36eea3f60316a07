"""Which of several near-duplicate copies a person would keep (used at ingest and by `curate dedupe`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["FRAMED_WEIGHT", "GREY_MODES", "ImageInfo", "clearly_better", "keeper_order"]

GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
_LOSSY_REENCODES = frozenset({"WEBP"})  # formats that are usually a re-encode of an original
_FRAMED_SHARE = 0.95  # content under this share of the image's pixels: the image is framed
FRAMED_WEIGHT = 0.9  # a framed copy must show 11% more content pixels to be kept over an unframed one


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

    @property
    def framed(self) -> bool:
        """Is the image's content inside margins or a window (a screenshot, a product on a page)? Ingest records
        fewer content pixels than the image has only then (storage.imaging)."""
        return self.content_pixels is not None and self.content_pixels < _FRAMED_SHARE * self.width * self.height

    @property
    def effective_content(self) -> float:
        """Content pixels, counted at FRAMED_WEIGHT for a framed image: the trim box of a screenshot is found to a
        pixel or two, so its content ties with the photo's about half the time; the photo should win those."""
        pixels = self.content_pixels or self.width * self.height
        return pixels * FRAMED_WEIGHT if self.framed else float(pixels)


def keeper_order(info: ImageInfo, chosen: bool = False, matches: int = 0) -> tuple[object, ...]:
    """Sort key, best keeper first: chosen by a person, labelled, colour, larger content (pixels inside borders
    and frames, a framed image's counted at FRAMED_WEIGHT: the photo rather than a screenshot of it, however many
    pixels the screenshot has), an original
    format, the copy that matches most of the others (`matches`: the original rather than its mirror, whose
    own copies may be out of reach), more bytes (less compressed), then the earliest."""
    return (
        not chosen,
        not info.labelled,
        not info.colour,
        -info.effective_content,
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
