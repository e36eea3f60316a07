"""Verify a candidate near-duplicate pair on its pixels, independently of the hashes that found it.

Why: a hash distance is a candidate, not evidence. 128 bits of a 32x32 thumbnail cannot tell two screenshots
of different photos in one shared window frame apart from two copies of one screenshot (the frame dominates
the thumbnail), nor two matplotlib figures with the same axes on a white page. So a pair is confirmed only when
its aligned views agree where they carry information:

1. each image's view is taken as the hashes matched it (whole image, trimmed box, or centre; when that does not
   verify, the other alignments of the pair are tried), the matched dihedral transform is applied, and both are
   resized to SIDE x SIDE greyscale;
2. the aligned pair is cut into BLOCKS x BLOCKS blocks. A block is informative when it is not (almost) uniform in
   one of the two images; uniform regions (page backgrounds, empty plot areas, a shared frame's flat parts)
   carry no evidence either way;
3. per informative block, the correlation of the two blocks' pixels (invariant to brightness and contrast, so
   brightened, greyscale and re-encoded copies agree). Blocks count equally: weighting them by contrast would
   let the strong edges of a shared layout (a photo's border on a white page) outvote what is inside it;
4. the pair's score is the share of informative blocks that agree, at the best of a few small shifts (trim
   boxes and crops are found to a pixel or two). A disagreeing region (the photo inside a shared frame, the
   curve inside shared axes) fails it;
5. when both images are framed (margins or a window around the content), the trimmed contents must agree as
   well, whatever view the hashes matched on: two screenshots in one frame match only if what is inside the
   frame matches (when the whole images agree, the contents of either image's trim box, cut from both, will do:
   a figure's box moves in its copies);
6. no block of a 16 x 16 grid may differ by much after one brightness/contrast fit for the whole image:
   correlation forgives one changed object among many similar ones (a coin removed from a figure of 24);
7. when both images are in colour (pale tints included), their chroma must agree in every block too: a red and
   a blue version of one product are different images for a classifier, whatever their grey levels say;
8. the two views must have about the same proportions (MAX_STRETCH): one plot drawn at 4:3 and at 8:3 looks the
   same squeezed to 64 x 64, but no copy stretches its picture;
9. drawings (a tenth of the blocks or more plain in both: plots, products and icons on white) are compared once
   more, whole image against whole image, at up to 256 px, realigned to the pixel, each small block fitted on its
   own (FINE_DIFFERENCE): noise-different curves and slightly moved contours show there.

VERIFIED_SCORE was chosen on the tuning half of bench/dedupe_eval.py's photos and checked on held-out sets
(README, "Near-duplicates").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from storage.hashes.compare import Match
from storage.hashes.compute import CENTER_CUT, DIHEDRAL, is_framed, trim_box
from storage.images.open import open_image

__all__ = [
    "REGION_DIFFERENCE",
    "SIDE",
    "VERIFIED_SCORE",
    "AlignedView",
    "Box",
    "Verdict",
    "aligned_view",
    "compare_views",
    "decode_for_verify",
    "trim_box_for_verify",
    "verify_pair",
]

SIDE = 64  # aligned views are compared at SIDE x SIDE pixels
BLOCKS = 8  # ...in BLOCKS x BLOCKS blocks
_SHIFT = 2  # pixels of shift tried each way
_FLAT = 4.0  # a block whose grey levels vary less than this (standard deviation, 0-255) is uniform
_AGREE = 0.5  # an informative block agrees when its two halves correlate at least this much...
_NEAR = 6.0  # ...or differ by at most this (root mean square, grey levels, block means removed)
_MIN_INFORMATIVE = 0.1  # share of blocks that must be informative for a verdict on the pixels
_TRIM_SIDE = 640  # trim boxes are found on a copy of at most this many pixels (hashing uses 160)
_JPEG_SIDE = 320  # JPEGs decode in draft mode to at least this (half the work of a full decode of a photo)
_SATURATED = (6.0, 249.0)  # a flat block this dark or this bright may be clipped (a brightened copy)
_BRIGHTER = 8.0  # mean grey levels one image must be brighter or darker by for clipping to be assumed
# An image whose chroma varies less than this (standard deviation, 0-255) is greyscale for the colour check. A
# greyscale copy varies by 0-1 (R = G = B, and JPEG keeps that), while a pale tint on white varies by 4-5: at the
# earlier 6.0 a pale purple and a pale green garment of the held-out products were both "greyscale" and verified
# as one image (their block chroma differs by 28). The tuning sets had no such pair; at 2.0 their figures, and
# every recall figure, stay as they were (bench/dedupe_eval.py, README "Near-duplicates").
_CHROMA_FLAT = 2.0
# Largest mean chroma difference (0-255) of any of BLOCKS x BLOCKS blocks of two colour images: on the tuning
# photos true pairs reached 13 (brightened copies); a recoloured part (an orange ring made blue) goes far beyond.
_CHROMA_AGREE = 20.0
# Share of informative blocks that must agree. On the tuning photos (bench/dedupe_eval.py, photos-tune) true
# pairs scored at least 0.857 and wrong candidates (screenshots of different photos in one frame) at most 0.41.
VERIFIED_SCORE = 0.8
# Largest mean difference (grey levels, after one brightness/contrast fit) any of REGION_BLOCKS x REGION_BLOCKS
# blocks of a verified pair may show. On the tuning photos true pairs reached 39 (screenshots, brightened
# copies); the limit leaves a third more. Added after a held-out set showed figures that differ in one object.
REGION_DIFFERENCE = 52.0
REGION_BLOCKS = 16


@dataclass(frozen=True)
class AlignedView:
    """One image's view, aligned: SIDE x SIDE grey levels and, for a colour image, its two chroma planes."""

    grey: np.ndarray  # (SIDE, SIDE) float32
    chroma: np.ndarray | None  # (2, SIDE, SIDE) float32 (Cb, Cr), None for a greyscale image


@dataclass(frozen=True)
class Verdict:
    verified: bool
    score: float  # weighted share of informative blocks that agree (0..1); 0 when not measurable
    reason: str  # why, in a few words, for the review item

    def to_json(self) -> dict[str, object]:
        return {"verified": self.verified, "score": round(self.score, 4), "reason": self.reason}


def decode_for_verify(data: bytes) -> Image.Image:
    """The stored bytes decoded for verification: no larger than the trim work size (a JPEG in draft mode),
    so caching a few hundred of them stays cheap."""
    image = _flatten(open_image(data, size=_JPEG_SIDE))  # upright, as hashing saw it
    if max(image.size) > _TRIM_SIDE:
        image.thumbnail((_TRIM_SIDE, _TRIM_SIDE), Image.Resampling.BOX)
    return image


Box = tuple[int, int, int, int]


def trim_box_for_verify(image: Image.Image) -> Box:
    """The trim box verification uses (found at up to 640 px: a screenshot's photo to within a pixel)."""
    return trim_box(_flatten(image).convert("L"), _TRIM_SIDE)


def _region(image: Image.Image, view: str, trimmed: Box | None = None) -> Box:
    if view == "trim":
        return trimmed or trim_box_for_verify(image)
    if view == "centre":
        cx, cy = round(image.width * CENTER_CUT), round(image.height * CENTER_CUT)
        return cx, cy, image.width - cx, image.height - cy
    return 0, 0, image.width, image.height


def aligned_view(image: Image.Image, view: str, transform: int = 0, trimmed: Box | None = None) -> AlignedView:
    """The view of `image` ("whole", "trim" or "centre") with DIHEDRAL[transform] applied, at SIDE x SIDE.
    `trimmed`: the image's trim box, when the caller has it already."""
    flat = _flatten(image)
    region = flat.crop(_region(flat, view, trimmed)).resize((SIDE, SIDE), Image.Resampling.BOX)
    op = DIHEDRAL[transform][1]
    if op is not None:
        region = region.transpose(op)
    ycc = np.asarray(region.convert("YCbCr"), dtype=np.float32)
    chroma = ycc[:, :, 1:].transpose(2, 0, 1)
    colourful = float(chroma.std(axis=(1, 2)).max()) >= _CHROMA_FLAT  # greyscale images have flat chroma
    return AlignedView(ycc[:, :, 0].copy(), chroma.copy() if colourful else None)


def _flatten(image: Image.Image) -> Image.Image:
    """Grey or RGB: L and RGB images as they are (no copy), others in RGB with transparency composited onto white
    (as a page would show it)."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _block_score(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(score, informative share) of two equally sized grey arrays, cut into BLOCKS x BLOCKS blocks.

    When one image is clearly brighter (or darker) than the other, a block that is flat and clipped white
    (black) in it is no evidence: brightening burns out highlights that the original still shows."""
    shift = float(a.mean() - b.mean())
    h, w = a.shape
    bh, bw = h // BLOCKS, w // BLOCKS
    a = a[: bh * BLOCKS, : bw * BLOCKS].reshape(BLOCKS, bh, BLOCKS, bw).transpose(0, 2, 1, 3).reshape(-1, bh * bw)
    b = b[: bh * BLOCKS, : bw * BLOCKS].reshape(BLOCKS, bh, BLOCKS, bw).transpose(0, 2, 1, 3).reshape(-1, bh * bw)
    mean_a, mean_b = a.mean(axis=1), b.mean(axis=1)
    a = a - mean_a[:, None]
    b = b - mean_b[:, None]
    sa, sb = np.sqrt((a * a).mean(axis=1)), np.sqrt((b * b).mean(axis=1))
    informative = np.maximum(sa, sb) >= _FLAT
    if abs(shift) > _BRIGHTER:
        brighter_flat, brighter_mean = (sa, mean_a) if shift > 0 else (sb, mean_b)
        clipped = brighter_mean >= _SATURATED[1] if shift > 0 else brighter_mean <= _SATURATED[0]
        informative &= ~(clipped & (brighter_flat < _FLAT))
    if not informative.any():
        return 0.0, 0.0
    corr = (a * b).mean(axis=1) / np.maximum(sa * sb, 1e-6)
    # A low-contrast block's correlation is mostly noise (JPEG, resampling): it agrees as well when its two
    # halves differ by no more than that noise.
    close = np.sqrt(((a - b) ** 2).mean(axis=1)) <= _NEAR
    agree = ((corr >= _AGREE) | close) & informative
    return float(agree.sum() / informative.sum()), float(informative.mean())


def _shifted(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The overlapping parts of a and of b moved by (dy, dx)."""
    part_a = a[max(0, dy) : SIDE + min(0, dy), max(0, dx) : SIDE + min(0, dx)]
    part_b = b[max(0, -dy) : SIDE + min(0, -dy), max(0, -dx) : SIDE + min(0, -dx)]
    return part_a, part_b


def _worst_region(a: np.ndarray, b: np.ndarray) -> float:
    """The largest mean absolute difference (grey levels) of any block, after one brightness and contrast fit for
    the whole image. Correlation forgives a block that differs in one object among many (a coin removed from a
    figure of 24); this does not. Pixels clipped white (black) in the clearly brighter (darker) image are left
    out of the fit and of the blocks, as the block score leaves them out."""
    keep = np.ones(a.shape, dtype=bool)
    shift = float(a.mean() - b.mean())
    if abs(shift) > _BRIGHTER:
        brighter = a if shift > 0 else b
        keep = brighter < _SATURATED[1] if shift > 0 else brighter > _SATURATED[0]
    x, y = a[keep], b[keep]
    if x.size < a.size // 4:
        return 0.0
    slope = float(((x - x.mean()) * (y - y.mean())).mean() / max(float(x.var()), 1e-6))
    difference = np.abs(slope * (a - x.mean()) + y.mean() - b) * keep
    h, w = a.shape
    n = REGION_BLOCKS
    bh, bw = h // n, w // n
    cells = (n, bh, n, bw)
    sums = difference[: bh * n, : bw * n].reshape(cells).sum(axis=(1, 3))
    counts = keep[: bh * n, : bw * n].reshape(cells).sum(axis=(1, 3))
    filled = counts >= bh * bw // 2
    return float((sums[filled] / counts[filled]).max()) if filled.any() else 0.0


def _region_difference(a: np.ndarray, b: np.ndarray) -> float:
    """_worst_region both ways round: fitting b to a and a to b differ when one image has little contrast
    (thin edges against filled shapes), and a region that differs either way differs."""
    return max(_worst_region(a, b), _worst_region(b, a))


Shift = tuple[int, int]


def _closest_shifts(a: AlignedView, b: AlignedView, shifts: list[Shift], keep: int = 3) -> list[Shift]:
    """The `keep` shifts under which the two views, each standardised, differ least: where to look for a differing
    region (fitting every shift would cost ten times as much and find the same)."""
    za = (a.grey - a.grey.mean()) / max(float(a.grey.std()), 1e-6)
    zb = (b.grey - b.grey.mean()) / max(float(b.grey.std()), 1e-6)
    cost = [float(np.square(np.subtract(*_shifted(za, zb, dy, dx))).mean()) for dy, dx in shifts]
    return [shifts[k] for k in np.argsort(cost)[:keep]]


def compare_views(a: AlignedView, b: AlignedView) -> Verdict:
    """The verdict on two aligned views (see the module docstring)."""
    shifts = [(dy, dx) for dy in range(-_SHIFT, _SHIFT + 1) for dx in range(-_SHIFT, _SHIFT + 1)]
    # Nearest shifts first (no shift, then one pixel, then two), stopping once the pair agrees: most copies
    # agree unshifted, and the verdict does not depend on which agreeing shift is found.
    best, informative = 0.0, 0.0
    for dy, dx in sorted(shifts, key=lambda shift: max(map(abs, shift))):
        score, share = _block_score(*_shifted(a.grey, b.grey, dy, dx))
        if score > best:
            best, informative = score, share
        if best >= VERIFIED_SCORE and informative >= _MIN_INFORMATIVE:
            break
    if informative < _MIN_INFORMATIVE:
        if float(np.abs(a.grey - b.grey).mean()) < 2.0:
            return Verdict(True, 1.0, "identical low-detail images")
        return Verdict(False, best, "too little detail to verify")
    if best < VERIFIED_SCORE:
        return Verdict(False, best, f"pixels differ ({best:.2f} of the detail agrees)")
    region = float("inf")
    for dy, dx in _closest_shifts(a, b, shifts):  # the pair passes when one of them shows no differing region
        region = min(region, _region_difference(*_shifted(a.grey, b.grey, dy, dx)))
        if region <= REGION_DIFFERENCE:
            break
    if region > REGION_DIFFERENCE:
        return Verdict(False, best, f"one region differs (by {region:.0f} grey levels)")
    if a.chroma is not None and b.chroma is not None:
        cells = (BLOCKS, SIDE // BLOCKS, BLOCKS, SIDE // BLOCKS)
        difference = float(np.abs(a.chroma - b.chroma).mean(axis=0).reshape(cells).mean(axis=(1, 3)).max())
        if difference > _CHROMA_AGREE:
            return Verdict(False, best, f"colours differ (chroma {difference:.0f})")
    return Verdict(True, best, f"pixels agree ({best:.2f})")


# Alignments tried when the one the hashes matched on does not verify: a trim box found a little differently in
# two copies (a plain band that JPEG noise breaks up in one of them) misaligns their trimmed views, not the rest.
_ALIGNMENTS = (("whole", "whole"), ("trim", "trim"), ("centre", "whole"), ("whole", "centre"))


def verify_pair(
    a: Image.Image, b: Image.Image, match: Match, box_a: Box | None = None, box_b: Box | None = None
) -> Verdict:
    """Confirm that images a and b are near-duplicates the way `match` (from best_match(hashes of a, hashes
    of b)) says they are: under its transform, in the views it matched or, failing that, in another alignment of
    the same two images. When both are framed the trimmed contents must agree too. `box_a`, `box_b`: the
    images' trim boxes (trim_box_for_verify), when the caller keeps them."""
    box_a, box_b = box_a or trim_box_for_verify(a), box_b or trim_box_for_verify(b)
    turn_a = match.transform if match.transform_of == "a" else 0
    turn_b = match.transform if match.transform_of == "b" else 0

    def judged(view_a: str, view_b: str) -> Verdict:
        region_a, region_b = _region(a, view_a, box_a), _region(b, view_b, box_b)
        proportions = _proportions(region_a, turn_a) / _proportions(region_b, turn_b)
        if max(proportions, 1 / proportions) > MAX_STRETCH:
            return Verdict(False, 0.0, f"different proportions ({max(proportions, 1 / proportions):.2f}x)")
        return compare_views(aligned_view(a, view_a, turn_a, box_a), aligned_view(b, view_b, turn_b, box_b))

    matched = (match.view_a, match.view_b)
    tried = [matched, *(alignment for alignment in _ALIGNMENTS if alignment != matched)]
    verdict, aligned = judged(*matched), matched
    if verdict.verified and "centre" in matched:
        # The centre view is right for a cropped copy, but an uncropped copy can match it by hash too (a noisy
        # copy whose noise hides the whole image's hash): 5 % off in scale, it agrees at 64 px and not finer.
        # The whole images decide when they agree better.
        whole = judged("whole", "whole")
        if whole.verified and whole.score > verdict.score:
            verdict, aligned = whole, ("whole", "whole")
    for alignment in tried[1:]:
        if verdict.verified:
            break
        other = judged(*alignment)
        if (other.verified, other.score) > (verdict.verified, verdict.score):
            verdict, aligned = other, alignment
    if verdict.verified and aligned != ("trim", "trim") and is_framed(box_a, a.size) and is_framed(box_b, b.size):
        inside = judged("trim", "trim")
        if not inside.verified and aligned == ("whole", "whole"):
            inside = _inside_one_box(a, b, (box_a, turn_a), (box_b, turn_b)) or inside
        verdict = inside if not inside.verified else verdict
    if verdict.verified:
        verdict = _finer_if_drawing(verdict, aligned, (a, box_a, turn_a), (b, box_b, turn_b))
    return verdict


def _inside_one_box(
    a: Image.Image, b: Image.Image, placed_a: tuple[Box, int], placed_b: tuple[Box, int]
) -> Verdict | None:
    """The contents inside one trim box, cut from both images of a pair whose whole images verified: each image's
    box in turn, carried over to the other by that alignment. A trim box is found on each image alone, and on a
    drawing it is unstable (the thin axes of a plot vanish in its 50% copy, a JPEG's ringing breaks up a plain
    band), so two copies' own boxes can frame different parts. One box cut from both compares like with like:
    two screenshots in one shared frame still compare the photos inside it. The first that verifies, else None."""
    (box_a, turn_a), (box_b, turn_b) = placed_a, placed_b
    carried_to_b = _carry_box(box_a, a.size, b.size, turn_a, turn_b)
    carried_to_a = _carry_box(box_b, b.size, a.size, turn_b, turn_a)
    for in_a, in_b in ((box_a, carried_to_b), (carried_to_a, box_b)):
        verdict = compare_views(aligned_view(a, "trim", turn_a, in_a), aligned_view(b, "trim", turn_b, in_b))
        if verdict.verified:
            return verdict
    return None


def _carry_box(box: Box, size: tuple[int, int], other: tuple[int, int], into: int, out_of: int) -> Box:
    """`box` of an image of `size` as the same region of the image of size `other` it is aligned with: DIHEDRAL[into]
    takes the first image into the aligned frame, DIHEDRAL[out_of] the second (one of them is the identity)."""
    x0, y0, x1, y1 = box[0] / size[0], box[1] / size[1], box[2] / size[0], box[3] / size[1]
    corners = [_turn_point(x, y, into) for x, y in ((x0, y0), (x1, y1))]
    corners = [_turn_point(x, y, _INVERSE[out_of]) for x, y in corners]
    xs, ys = sorted(x for x, _ in corners), sorted(y for _, y in corners)
    width, height = other
    return round(xs[0] * width), round(ys[0] * height), round(xs[1] * width), round(ys[1] * height)


def _turn_point(x: float, y: float, transform: int) -> tuple[float, float]:
    """Where DIHEDRAL[transform] takes the point (x, y) of the unit square (PIL's transposes)."""
    name = DIHEDRAL[transform][0]
    return {
        "identity": (x, y),
        "mirror": (1 - x, y),
        "flip": (x, 1 - y),
        "rotate180": (1 - x, 1 - y),
        "transpose": (y, x),
        "rotate90": (y, 1 - x),
        "rotate270": (1 - y, x),
        "transverse": (1 - y, 1 - x),
    }[name]


_NAMES = [name for name, _ in DIHEDRAL]
_INVERSE = [_NAMES.index({"rotate90": "rotate270", "rotate270": "rotate90"}.get(name, name)) for name in _NAMES]


# A copy keeps its proportions (resized, re-encoded, cropped a little, screenshotted: the photo inside keeps its
# shape); the same plot drawn at another figure size, or a banner and a square of one design, do not. Squeezed
# to 64 x 64 both look alike. The limit leaves room for trim boxes found a little differently in two copies
# (a JPEG's noisy margin): on the tuning figures such true pairs reached 1.29.
MAX_STRETCH = 1.35
_SWAPS_AXES = frozenset(
    k for k, (name, _) in enumerate(DIHEDRAL) if name in ("transpose", "rotate90", "rotate270", "transverse")
)


def _proportions(box: Box, transform: int) -> float:
    """Width over height of a view, after its transform."""
    width, height = max(1, box[2] - box[0]), max(1, box[3] - box[1])
    return height / width if transform in _SWAPS_AXES else width / height


# Drawings (plots, products and icons on plain backgrounds) are compared once more, finer: two curves drawn with
# different noise, contour lines moved a little, or two shirts of one cut agree at 64 px but not at 256. Textured
# photos with no plain region are not: their copies (resized, noisy, brightened) differ more at 256 px.
FINE_SIDE = 256
FINE_BLOCKS = 32
# Largest mean difference (grey levels) of any of FINE_BLOCKS x FINE_BLOCKS blocks, each block's brightness and
# contrast fitted on its own, both views blurred by FINE_SIDE/128 px. On the tuning sets (bench/dedupe_eval.py):
# true copies of figures reached 9.5 (a 50% resize of thin lines), of products 3.5, of photos with plain regions
# 8.3; different figures came down to 11.1, different products to 6.2 (most above 10).
FINE_DIFFERENCE = 10.0
PLAIN_SHARE = 0.1  # a pair is a drawing when at least this share of its 64 px blocks is plain in both views

Placed = tuple[Image.Image, Box, int]  # an image, the region of its view, the transform applied to it


def _drawing(a: AlignedView, b: AlignedView) -> bool:
    cells = (BLOCKS, SIDE // BLOCKS, BLOCKS, SIDE // BLOCKS)
    plain = (a.grey.reshape(cells).std(axis=(1, 3)) < _FLAT) & (b.grey.reshape(cells).std(axis=(1, 3)) < _FLAT)
    return float(plain.mean()) >= PLAIN_SHARE


def _placed_grey(placed: Placed, side: int) -> Image.Image:
    """The view's region, greyscale, averaged down to side x side, with its transform applied."""
    image, box, transform = placed
    region = _flatten(image).crop(box).convert("L").resize((side, side), Image.Resampling.BOX)
    op = DIHEDRAL[transform][1]
    return region if op is None else region.transpose(op)


def _shorter_side(a: Placed, b: Placed) -> int:
    """The shorter side of the two views' regions: no comparison looks finer than that."""
    return min(min(box[2] - box[0], box[3] - box[1]) for _, box, _ in (a, b))


def _fine_view(placed: Placed, side: int) -> np.ndarray:
    return np.asarray(_placed_grey(placed, side).filter(ImageFilter.GaussianBlur(side / 128)), dtype=np.float32)


def _overlap(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = a.shape
    part_a = a[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
    part_b = b[max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)]
    return part_a, part_b


def _best_shift(a: np.ndarray, b: np.ndarray, reach: int) -> Shift:
    """The shift within `reach` pixels each way under which a and b correlate best (FFT cross-correlation)."""
    corr = np.fft.irfft2(np.fft.rfft2(a - a.mean()) * np.conj(np.fft.rfft2(b - b.mean())), s=a.shape)
    corr = np.roll(corr, (reach, reach), axis=(0, 1))[: 2 * reach + 1, : 2 * reach + 1]
    dy, dx = np.unravel_index(int(np.argmax(corr)), corr.shape)
    return int(dy) - reach, int(dx) - reach


def _finer_if_drawing(verdict: Verdict, aligned: tuple[str, str], a: Placed, b: Placed) -> Verdict:
    """A verified pair of drawings compared finer, on the views that verified. `a`, `b`: each image with its
    trim box and transform.

    A trim box is an estimate, a few pixels off in a JPEG's noisy margin. Two framed drawings verified on their
    trimmed views (icons on transparent margins, figures on white) that differ there get a second chance on the
    whole images: they stay verified when those agree at 64 px and finer (a JPEG copy of a figure). A screenshot
    and its photo were judged inside the frame; only their whole images are compared finer, when they agree."""
    if "trim" not in aligned:
        return _finer_views(verdict, aligned, a, b)
    whole = ("whole", "whole")
    (image_a, box_a, turn_a), (image_b, box_b, turn_b) = a, b
    agree = compare_views(aligned_view(image_a, "whole", turn_a), aligned_view(image_b, "whole", turn_b)).verified
    if not (is_framed(box_a, image_a.size) and is_framed(box_b, image_b.size)):
        return _finer_views(verdict, whole, a, b) if agree else verdict
    finer = _finer_views(verdict, aligned, a, b)
    if finer.verified or not agree:
        return finer
    return verdict if _finer_views(verdict, whole, a, b).verified else finer


def _finer_views(verdict: Verdict, views: tuple[str, str], a: Placed, b: Placed) -> Verdict:
    """`verdict`, unless these views of two drawings differ at the finer scale."""
    (image_a, box_a, turn_a), (image_b, box_b, turn_b) = a, b
    region_a, region_b = _region(image_a, views[0], box_a), _region(image_b, views[1], box_b)
    proportions = _proportions(region_a, turn_a) / _proportions(region_b, turn_b)
    if max(proportions, 1 / proportions) > MAX_STRETCH:
        return verdict
    if not _drawing(aligned_view(image_a, views[0], turn_a, box_a), aligned_view(image_b, views[1], turn_b, box_b)):
        return verdict
    return _finer(verdict, (image_a, region_a, turn_a), (image_b, region_b, turn_b))


def _finer(coarse: Verdict, a: Placed, b: Placed) -> Verdict:
    """The verified pair `coarse` compared again at up to FINE_SIDE px, realigned to the pixel."""
    residual = _coarse_residual(a, b)
    if residual > COARSE_RESIDUAL:
        return Verdict(False, coarse.score, f"shading differs at {COARSE_SIDE} px ({residual:.2f} of its contrast)")
    side = min(FINE_SIDE, _shorter_side(a, b))
    if side < 2 * SIDE:  # no detail the 64 px comparison did not see
        return coarse
    fa, fb = _fine_view(a, side), _fine_view(b, side)
    dy, dx = _best_shift(fa, fb, reach=max(2, round(side / SIDE * (_SHIFT + 1))))
    difference = min(_fine_region(*_overlap(fa, fb, y, x)) for y, x in ((dy, dx), (-dy, -dx)))
    if difference > FINE_DIFFERENCE:
        return Verdict(False, coarse.score, f"detail differs at {side} px (by {difference:.0f} grey levels)")
    return coarse


def _fine_region(a: np.ndarray, b: np.ndarray) -> float:
    """The largest mean difference of any block of a FINE_BLOCKS grid after fitting each block's brightness and
    contrast on its own (one fit for the image would not forgive highlights a brightened copy burnt out), both
    ways round: a line or an edge in another place cannot be fitted away."""
    n = FINE_BLOCKS
    bh, bw = a.shape[0] // n, a.shape[1] // n

    def blocks(x: np.ndarray) -> np.ndarray:
        return x[: bh * n, : bw * n].reshape(n, bh, n, bw).transpose(0, 2, 1, 3).reshape(n * n, bh * bw)

    def worst(x: np.ndarray, y: np.ndarray) -> float:
        x = x - x.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
        slope = (x * y).mean(axis=1, keepdims=True) / np.maximum((x * x).mean(axis=1, keepdims=True), 1.0)
        return float(np.abs(slope * x - y).mean(axis=1).max())

    xa, xb = blocks(a), blocks(b)
    return max(worst(xa, xb), worst(xb, xa))


# Two drawings of one kind (two plain shirts, two jeans) can agree block by block at every scale: the fine check
# fits each small block's brightness on its own, which forgives the very shading that tells them apart. Copies
# keep their shading: after one brightness and contrast fit for the whole view, averaged down to COARSE_SIDE px
# (which averages noise and re-encoding away), what is left is a small share of the view's contrast. On the
# tuning sets (bench/dedupe_eval.py) true copies left at most 0.27 (a symbolic icon drawn at 48 and at 96 px;
# products 0.13, a 50% resize of a thin-line figure 0.21), different products 0.30 and more, different figures
# 0.38 and more; different icons of nearly one design (two volume levels) came down to 0.20.
COARSE_SIDE = 32
COARSE_RESIDUAL = 0.28


def _coarse_residual(a: Placed, b: Placed) -> float:
    """Mean absolute difference left after one brightness/contrast fit of the two views at COARSE_SIDE px, over
    the pixels that are not background in either, as a share of their contrast (the larger of both fits, at the
    best of the nine one-pixel shifts)."""
    side = min(COARSE_SIDE, _shorter_side(a, b))
    if side < 8:
        return 0.0
    va, vb = (np.asarray(_placed_grey(placed, side), dtype=np.float64) for placed in (a, b))
    best = float("inf")
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            x, y = _overlap(va, vb, dy, dx)
            best = min(best, max(_residual(x, y), _residual(y, x)))
    return best


def _residual(x: np.ndarray, y: np.ndarray) -> float:
    """y fitted from x (one slope and offset), the mean absolute misfit over the content pixels, divided by the
    spread of y there."""
    content = (np.abs(x - np.median(x)) > _FLAT) | (np.abs(y - np.median(y)) > _FLAT)
    if content.sum() < 4:
        return 0.0
    slope = float(((x - x.mean()) * (y - y.mean())).mean() / max(float(x.var()), 1e-6))
    misfit = np.abs(slope * (x - x.mean()) + y.mean() - y)[content]
    return float(misfit.mean() / max(float(y[content].std()), 1.0))
