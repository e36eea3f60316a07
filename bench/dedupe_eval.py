"""Near-duplicate detection quality: transform-aware hashes (curate.hashing.match) against plain pHash.

The evaluation set is made from the 256 real photos in ../shared/data/photos: each photo (its original bytes)
plus copies that are resized to 50%, re-encoded as JPEG q30, brightened by 30%, given Gaussian noise,
turned greyscale, cropped (5% off every side), mirrored, flipped vertically, turned 90°, 180° and 270°, and
framed as a screenshot (the photo scaled inside an app window: frame, title bar with a title and buttons,
uniform margins; saved as PNG). Every file is hashed the way ingest hashes it (Pillow opens the bytes; a
JPEG is draft-decoded to about 64 px first).

Reported, over all pairs of the set (brute force): pair precision (a predicted pair is right iff both images
come from the same photo) and recall per transform (is the copy matched to its original), for the
transform-aware rule and for plain pHash Hamming distance, at the default threshold and around it. Then the
imagededup near-duplicate images (ukbench00120 and its copies, the unrelated ukbench09268).

Three extra transforms are reported without goals: an 8% crop and a one-sided crop (the centre view's 5% cut is
tailored to the goal's symmetric 5% crop; these show how far it carries) and a screenshot shared as JPEG. The
trimming parameters and the threshold were tuned on this set; `--photos-dir
../shared/data/near-duplicates/base_images` runs the same evaluation on 10 UKBench photos that were not.

Run: `.venv/bin/python bench/dedupe_eval.py [--photos N] [--photos-dir DIR] [--thresholds 20,22,24]`
(about 2 minutes on one core; exits non-zero when a goal is missed).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.hashing import DEFAULT_THRESHOLD, HashArrays, ImageHashes, distance_matrix, image_hashes  # noqa: E402

from storage.hashes.perceptual import HASH_INPUT_SIZE, phash  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
PHOTOS = SHARED / "photos"
NEAR_DUPLICATES = SHARED / "near-duplicates"
GOALS = {"precision": 0.99, "strong": 0.98, "weak": 0.8}
WEAK = ("crop 5%", "screenshot")  # transforms with the lower recall goal

# --- the evaluation set ------------------------------------------------------------------------------------


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, 12.0, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _crop(image: Image.Image, share: float = 0.05) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * share), round(h * share), round(w * (1 - share)), round(h * (1 - share))))


def _crop_corner(image: Image.Image, share: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * share), round(h * share), w, h))


def screenshot(image: Image.Image, rng: np.random.Generator, title: str) -> Image.Image:
    """The photo shown in an app window: frame, title bar (title text, buttons), uniform margins."""
    dark = rng.random() < 0.3
    frame = int(rng.integers(60, 100) if dark else rng.integers(140, 200))
    bar = int(rng.integers(35, 60) if dark else rng.integers(215, 242))
    ink = (225, 225, 225) if dark else (30, 30, 30)
    background = int(rng.integers(15, 35) if dark else rng.integers(240, 256))
    scale = rng.uniform(0.6, 1.3)
    photo = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    side, vertical = int(rng.integers(10, 80)), int(rng.integers(10, 80))
    border, bar_height = int(rng.integers(1, 4)), int(rng.integers(26, 35))
    width = photo.width + 2 * (side + border)
    height = photo.height + 2 * (vertical + border) + bar_height
    canvas = Image.new("RGB", (width, height), (frame,) * 3)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((border, border, width - border - 1, border + bar_height - 1), fill=(bar,) * 3)
    draw.rectangle((border, border + bar_height, width - border - 1, height - border - 1), fill=(background,) * 3)
    font = ImageFont.load_default(size=int(rng.integers(11, 15)))
    draw.text((border + 12, border + bar_height // 2), title, fill=ink, font=font, anchor="lm")
    for index, colour in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
        cx = width - border - 18 - 20 * index
        cy = border + bar_height // 2
        draw.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), fill=colour)
    canvas.paste(photo, (border + side, border + bar_height + vertical))
    return canvas


@dataclass(frozen=True)
class Transform:
    name: str
    make: Callable[[Image.Image, np.random.Generator, str], bytes]


TRANSFORMS: tuple[Transform, ...] = (
    Transform("resize 50%", lambda im, rng, t: _jpeg(im.resize((im.width // 2, im.height // 2), Image.LANCZOS))),
    Transform("JPEG q30", lambda im, rng, t: _jpeg(im, quality=30)),
    Transform("brightness +30%", lambda im, rng, t: _jpeg(ImageEnhance.Brightness(im).enhance(1.3))),
    Transform("noise σ12", lambda im, rng, t: _jpeg(_noise(im, rng))),
    Transform("greyscale", lambda im, rng, t: _jpeg(im.convert("L"))),
    Transform("crop 5%", lambda im, rng, t: _jpeg(_crop(im))),
    Transform("mirror", lambda im, rng, t: _jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT))),
    Transform("flip vertical", lambda im, rng, t: _jpeg(im.transpose(Image.Transpose.FLIP_TOP_BOTTOM))),
    Transform("turn 90°", lambda im, rng, t: _jpeg(im.transpose(Image.Transpose.ROTATE_90))),
    Transform("turn 180°", lambda im, rng, t: _jpeg(im.transpose(Image.Transpose.ROTATE_180))),
    Transform("turn 270°", lambda im, rng, t: _jpeg(im.transpose(Image.Transpose.ROTATE_270))),
    Transform("screenshot", lambda im, rng, t: _png(screenshot(im, rng, t))),
    # Extra, beyond the goals: other crops than the centre view's 5% per side, and a screenshot shared as JPEG.
    Transform("crop 8%", lambda im, rng, t: _jpeg(_crop(im, 0.08))),
    Transform("crop 5% left+top", lambda im, rng, t: _jpeg(_crop_corner(im, 0.05))),
    Transform("screenshot JPEG q75", lambda im, rng, t: _jpeg(screenshot(im, rng, t), quality=75)),
)
EXTRA = ("crop 8%", "crop 5% left+top", "screenshot JPEG q75")  # reported, no goal


@dataclass(frozen=True)
class Sample:
    photo: int  # index of the photo it derives from
    transform: str  # "original" or a Transform name
    data: bytes


def build_set(files: list[Path], seed: int = 0) -> list[Sample]:
    samples: list[Sample] = []
    for index, path in enumerate(files):
        data = path.read_bytes()
        samples.append(Sample(index, "original", data))
        rng = np.random.default_rng([seed, index])
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
        for transform in TRANSFORMS:
            title = f"{path.name} — Image Viewer" if rng.random() < 0.5 else f"IMG_{index:04d}.jpg"
            samples.append(Sample(index, transform.name, transform.make(image, rng, title)))
    return samples


# --- hashing, the way ingest does it -----------------------------------------------------------------------


def decode_for_hash(data: bytes) -> Image.Image:
    """What storage.imaging.analyze hashes: the opened image, draft-decoded near 64 px for a JPEG."""
    image = Image.open(io.BytesIO(data))
    if image.format in ("JPEG", "MPO"):
        image.draft("L" if image.mode == "L" else "RGB", (2 * HASH_INPUT_SIZE, 2 * HASH_INPUT_SIZE))
    image.load()
    return image


@dataclass(frozen=True)
class Timing:
    kind: str
    images: int
    decode: float  # seconds per image, each the best of `repeats`
    phash: float
    hashes: float


def _best(repeats: int, call: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def hash_samples(samples: list[Sample]) -> list[ImageHashes]:
    return [image_hashes(decode_for_hash(sample.data)) for sample in samples]


def time_hashing(samples: list[Sample], per_kind: int = 256, repeats: int = 5) -> list[Timing]:
    """Per input kind, time per image to decode, to compute the plain pHash (what ingest computes today) and
    image_hashes (what would replace it); each the best of `repeats` runs, so other load on the machine does
    not count."""
    kinds: dict[str, list[Sample]] = {}
    for sample in samples:
        kind = "JPEG, draft-decoded" if sample.data[:2] == b"\xff\xd8" else "PNG screenshot, full decode"
        kinds.setdefault(kind, []).append(sample)
    timings = []
    for kind, members in kinds.items():
        chosen = members[:: max(1, len(members) // per_kind)][:per_kind]
        totals = np.zeros(3)
        for sample in chosen:
            image = decode_for_hash(sample.data)
            totals += (
                _best(repeats, lambda s=sample: decode_for_hash(s.data)),
                _best(repeats, lambda im=image: phash(im)),
                _best(repeats, lambda im=image: image_hashes(im)),
            )
        totals /= len(chosen)
        timings.append(Timing(kind, len(chosen), *totals))
    return timings


def timing_table(console: Console, timings: list[Timing]) -> None:
    table = Table(title="Hashing cost per image (one core, the ingest path, best of 5 runs)")
    for column in ("input", "images", "decode ms", "pHash ms", "image_hashes ms", "extra over pHash ms"):
        table.add_column(column, justify="left" if column == "input" else "right")
    for t in timings:
        table.add_row(
            t.kind,
            f"{t.images:,}",
            f"{t.decode * 1e3:.2f}",
            f"{t.phash * 1e3:.2f}",
            f"{t.hashes * 1e3:.2f}",
            f"{(t.hashes - t.phash) * 1e3:.2f}",
        )
    console.print(table)


# --- scoring ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    threshold: int
    predicted: int
    correct: int
    confused: int  # distinct pairs of photos behind the false pairs
    recall: dict[str, float]

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0


def score(
    samples: list[Sample], arrays: HashArrays, thresholds: list[int], plain: bool, chunk: int = 64
) -> list[Score]:
    """Brute force over all pairs: precision over predicted pairs, recall of copy-to-original per transform."""
    photo = np.array([s.photo for s in samples])
    names = np.array([s.transform for s in samples])
    original = {s.photo: i for i, s in enumerate(samples) if s.transform == "original"}
    n = len(samples)
    predicted = np.zeros(len(thresholds), dtype=np.int64)
    correct = np.zeros(len(thresholds), dtype=np.int64)
    found = np.zeros((len(thresholds), n), dtype=bool)
    confused: list[set[tuple[int, int]]] = [set() for _ in thresholds]
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        dist = distance_matrix(arrays, rows, plain=plain)  # (len(rows), n) distances
        upper = np.arange(n)[None, :] > rows[:, None]
        same = photo[rows][:, None] == photo[None, :]
        to_original = np.array([original[photo[r]] for r in rows])
        for t, threshold in enumerate(thresholds):
            hit = dist <= threshold
            predicted[t] += int((hit & upper).sum())
            correct[t] += int((hit & upper & same).sum())
            for r, j in zip(*np.nonzero(hit & upper & ~same), strict=True):
                confused[t].add((int(photo[rows[r]]), int(photo[j])))
            found[t, rows] = hit[np.arange(len(rows)), to_original]
    scores = []
    for t, threshold in enumerate(thresholds):
        recall = {name: float(found[t, names == name].mean()) for name in [x.name for x in TRANSFORMS]}
        scores.append(Score(threshold, int(predicted[t]), int(correct[t]), len(confused[t]), recall))
    return scores


def _fmt(value: float, goal: float | None, digits: int = 3) -> str:
    text = f"{value:.{digits}f}"
    if goal is None:
        return text
    return f"[green]{text}[/]" if value >= goal else f"[red]{text}[/]"


def report(console: Console, aware: list[Score], plain: list[Score], default: int, true_pairs: int) -> bool:
    table = Table(title=f"Near-duplicate detection, all pairs ({true_pairs:,} true pairs); goal colours at the default")
    table.add_column("transform", justify="left", no_wrap=True)
    columns = [(s, "aware") for s in aware] + [(s, "pHash") for s in plain]
    for s, kind in columns:
        marker = " default" if s.threshold == default and kind == "aware" else ""
        table.add_column(f"{kind} ≤{s.threshold}{marker}", justify="right")
    ok = True

    def goal_for(kind: str, s: Score, metric: str) -> float | None:
        if kind != "aware" or s.threshold != default or metric in EXTRA:
            return None
        return GOALS["precision"] if metric == "precision" else GOALS["weak" if metric in WEAK else "strong"]

    row = []
    for s, kind in columns:
        goal = goal_for(kind, s, "precision")
        ok &= goal is None or s.precision >= goal
        row.append(_fmt(s.precision, goal, digits=4))
    table.add_row("pair precision", *row)
    table.add_row("predicted pairs", *[f"{s.predicted:,}" for s, _ in columns])
    table.add_row("false pairs", *[f"{s.predicted - s.correct:,}" for s, _ in columns])
    table.add_row("photo pairs confused", *[f"{s.confused:,}" for s, _ in columns], end_section=True)
    for transform in TRANSFORMS:
        row = []
        for s, kind in columns:
            goal = goal_for(kind, s, transform.name)
            ok &= goal is None or s.recall[transform.name] >= goal
            row.append(_fmt(s.recall[transform.name], goal))
        extra = " (extra)" if transform.name in EXTRA else ""
        table.add_row(f"recall: {transform.name}{extra}", *row)
    console.print(table)
    return ok


def near_duplicates_check(console: Console, threshold: int, plain_threshold: int) -> bool:
    """imagededup's UKBench files: ukbench00120 with its mirrored, resized and greyscale copies is one group;
    its 25° rotation is not a near-duplicate under these hashes (nor under pHash); ukbench09268 is alone."""
    folder = NEAR_DUPLICATES / "mixed_images"
    files = [p for p in sorted(folder.glob("*.jpg")) if "corrupt" not in p.name]
    files.append(NEAR_DUPLICATES / "ukbench00120_gray.jpg")
    hashes = [image_hashes(decode_for_hash(p.read_bytes())) for p in files]
    arrays = HashArrays.from_hashes(hashes)
    aware = distance_matrix(arrays, np.arange(len(files)))
    plain = distance_matrix(arrays, np.arange(len(files)), plain=True)

    def group(path: Path) -> str:
        return "00120" if path.name.startswith("ukbench00120") and "rotation" not in path.name else path.stem

    table = Table(title=f"imagededup near-duplicates, all pairs (aware ≤{threshold}, pHash ≤{plain_threshold})")
    for column in ("pair", "expected", "aware", "verdict", "pHash", "pHash verdict"):
        table.add_column(column, justify="left" if column in ("pair", "expected") else "right")
    ok = True
    for i in range(len(files)):
        for j in range(i + 1, len(files)):
            expected = group(files[i]) == group(files[j])
            got = bool(aware[i, j] <= threshold)
            got_plain = bool(plain[i, j] <= plain_threshold)
            ok &= got == expected
            table.add_row(
                f"{files[i].stem} / {files[j].stem}",
                "same" if expected else "different",
                str(aware[i, j]),
                "[green]ok[/]" if got == expected else "[red]wrong[/]",
                str(plain[i, j]),
                "ok" if got_plain == expected else "wrong",
            )
    console.print(table)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=0, help="use only the first N photos (0: all)")
    parser.add_argument("--photos-dir", type=Path, default=PHOTOS, help="other photos to build the set from")
    parser.add_argument("--thresholds", default="", help="transform-aware thresholds, comma-separated")
    parser.add_argument("--plain-thresholds", default="8,10,12", help="plain pHash thresholds, comma-separated")
    args = parser.parse_args()
    if not args.photos_dir.is_dir():
        raise SystemExit(f"photos not found at {args.photos_dir}")
    files = sorted(p for p in args.photos_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if args.photos:
        files = files[: args.photos]
    default = DEFAULT_THRESHOLD
    thresholds = (
        [int(x) for x in args.thresholds.split(",")] if args.thresholds else [default - 2, default, default + 2]
    )
    plain_thresholds = [int(x) for x in args.plain_thresholds.split(",")]
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # piped to a file: room for every column
    started = time.perf_counter()
    samples = build_set(files)
    console.print(f"built {len(samples):,} images from {len(files)} photos in {time.perf_counter() - started:.1f} s")
    timing_table(console, time_hashing(samples))
    hashes = hash_samples(samples)
    arrays = HashArrays.from_hashes(hashes)
    true_pairs = len(files) * (len(TRANSFORMS) + 1) * len(TRANSFORMS) // 2
    started = time.perf_counter()
    aware = score(samples, arrays, thresholds, plain=False)
    elapsed = time.perf_counter() - started
    pairs = len(samples) * (len(samples) - 1) // 2
    console.print(f"transform-aware distances of all {pairs:,} pairs (both ways) and scoring: {elapsed:.1f} s")
    plain = score(samples, arrays, plain_thresholds, plain=True)
    ok = report(console, aware, plain, default, true_pairs)
    if NEAR_DUPLICATES.is_dir():
        ok &= near_duplicates_check(console, default, 10)
    console.print("all goals met" if ok else "[red]some goals missed[/]")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
