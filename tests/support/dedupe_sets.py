"""Labelled evaluation sets for near-duplicate detection, written as image files with their ground truth.

Every set is a flat folder of image files (what a user would `harvest import`) plus an `EvalSet` that says
which files are copies of one image (a true group). Nothing is generated from scratch: every set starts from
real images (COCO photos, scikit-image's documentation figures and sample photos, UKBench photos, a Debian
icon theme, Fashion-MNIST), and copies are made with ordinary edits (resize, re-encode, mirror, screenshot...).

    photos-tune     even-indexed half of the 256 COCO photos, each with 10 copies   (the ONLY tuning set)
    photos-held     odd-indexed half, same copies                                   (held out)
    shared-frame    screenshots of different photos in ONE identical browser frame, each with its photo
    figures         scikit-image's documentation `_images` (plots on white), gallery thumbnails, copies
    icons           GNOME icon theme: one icon name at six sizes is one true group
    products        Fashion-MNIST items on white, tinted, a few with copies
    symmetric       halves and quadrants of the most symmetric real photos (mirror-matching is tempting, wrong)

Only `photos-tune` may be used to tune thresholds; every other set is held out, and no held-out set uses a
photo of the tuning half. Builders for tests: `shared_frame_screenshots` (N screenshots of N different photos
in one frame, each beside its photo) and `figures_site` (distinct figures as a static site to scrape).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import importlib.util
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

__all__ = [
    "COPY_TRANSFORMS",
    "DATA",
    "SETS",
    "TUNING_SETS",
    "EvalSet",
    "FigureSite",
    "Item",
    "browser_screenshot",
    "build_set",
    "figures_site",
    "held_out_photos",
    "missing_sources",
    "shared_frame_screenshots",
    "tuning_photos",
]

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
PHOTOS = DATA / "photos"
UKBENCH = DATA / "near-duplicates" / "base_images"
SKIMAGE_DOC_IMAGES = Path("/usr/share/doc/python-skimage-doc/html/_images")
SKIMAGE_DOC_EXAMPLES = Path("/usr/share/doc/python-skimage-doc/html/auto_examples")
ICON_THEME = Path("/usr/share/icons/gnome")  # Debian gnome-icon-theme: PNGs at 16..256 px
TUNING_ICON_THEME = Path("/usr/share/icons/Adwaita")  # Debian adwaita-icon-theme: PNGs at 16..96 px (tuning)
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")

# scikit-image's sample photographs (natural scenes and objects; not drawings, not stereo twins of another).
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)

# --- ground truth ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One file of a set. Files with the same `group` are copies of one image; `transform` says how this file
    was made from the group's "original" (recall is measured copy → original)."""

    name: str  # file name inside the set's folder (unique)
    group: str
    transform: str = "original"


@dataclass
class EvalSet:
    """A folder of image files and their ground truth."""

    name: str
    folder: Path
    items: list[Item] = field(default_factory=list)
    tuning: bool = False
    description: str = ""
    truth: str = ""  # how the ground truth was established

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, item: Item) -> Path:
        return self.folder / item.name

    def group_of(self) -> dict[str, str]:
        """File name → true group."""
        return {item.name: item.group for item in self.items}

    def true_groups(self) -> dict[str, list[Path]]:
        """True group → its files (groups of one included)."""
        groups: dict[str, list[Path]] = {}
        for item in self.items:
            groups.setdefault(item.group, []).append(self.path(item))
        return groups

    def originals(self) -> dict[str, str]:
        """True group → the file name of its original (groups without one are left out)."""
        return {item.group: item.name for item in self.items if item.transform == "original"}

    def add(
        self, image: Image.Image | bytes, name: str, group: str, transform: str = "original", **save: object
    ) -> None:
        """Write one file (bytes as they are, an image in the format its name says) and record it."""
        path = self.folder / name
        if isinstance(image, bytes):
            path.write_bytes(image)
        else:
            _save(image, path, **save)
        self.items.append(Item(name, group, transform))

    def merge_identical(self, dihedral: bool = False) -> int:
        """Put files whose decoded pixels are identical into one group (byte- or pixel-identical files are one
        image whatever their names say, e.g. an icon installed under two names); with `dihedral`, also files
        that are exact mirror images or turns of each other (GNOME's go-previous is go-next mirrored: a mirror
        copy, which the goals require a dedupe to find). Returns how many groups were merged away."""
        parent: dict[str, str] = {}

        def find(group: str) -> str:
            parent.setdefault(group, group)
            while parent[group] != group:
                parent[group] = parent[parent[group]]
                group = parent[group]
            return group

        first_group: dict[str, str] = {}
        for item in self.items:
            key = _pixel_digest(self.path(item), dihedral)
            other = first_group.setdefault(key, item.group)
            parent[find(item.group)] = find(other)
        merged = sum(find(g) != g for g in {i.group for i in self.items})
        self.items = [Item(i.name, find(i.group), i.transform) for i in self.items]
        return merged


def _pixel_digest(path: Path, dihedral: bool = False) -> str:
    """A digest of the decoded RGBA pixels; with `dihedral`, the smallest over the 8 mirror/turn variants."""
    with Image.open(path) as image:
        pixels = image.convert("RGBA")
    variants = [pixels]
    if dihedral:
        turns = [pixels, *(pixels.transpose(t) for t in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180))]
        turns.append(pixels.transpose(Image.Transpose.ROTATE_270))
        variants = turns + [t.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for t in turns]
    return min(hashlib.sha256(f"{v.size}".encode() + v.tobytes()).hexdigest() for v in variants)


def _save(image: Image.Image, path: Path, quality: int = 92, **extra: object) -> None:
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        image.convert("L" if image.mode == "L" else "RGB").save(path, "JPEG", quality=quality, **extra)
    elif suffix == ".png":
        image.save(path, "PNG", compress_level=3, **extra)
    else:
        raise ValueError(f"unsupported output {path}")


# --- copies: the edits a copy of an image goes through ----------------------------------------------------------


def _rgb(image: Image.Image) -> Image.Image:
    """Flatten onto white (transparent icons and figures look white in a browser), keep L as L."""
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


def resize_half(image: Image.Image) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)), Image.LANCZOS)


def brighten(image: Image.Image, factor: float = 1.2) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def add_noise(image: Image.Image, seed: int, sigma: float = 12.0) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def crop_sides(image: Image.Image, share: float = 0.05) -> Image.Image:
    """`share` off every side (the goal's "5% crop")."""
    w, h = image.size
    return image.crop((round(w * share), round(h * share), round(w * (1 - share)), round(h * (1 - share))))


def crop_one_corner(image: Image.Image, share: float = 0.05) -> Image.Image:
    """`share` off the left and top only: the same amount as crop_sides, not centred (no goal; shows whether a
    centre-cut view generalises)."""
    w, h = image.size
    return image.crop((round(w * 2 * share), round(h * 2 * share), w, h))


def mirror(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def turn_90(image: Image.Image) -> Image.Image:
    return image.transpose(Image.Transpose.ROTATE_90)


WINDOW = (1024, 768)  # the shared browser window: every screenshot has exactly this frame
TITLE_BAR, TOOLBAR, PAGE_MARGIN = 34, 40, 16


def _browser_frame() -> Image.Image:
    """One browser window, identical for every screenshot: dark title bar with a fixed title and window
    buttons, a toolbar with an address field and a fixed URL, and a white page."""
    width = WINDOW[0]
    frame = Image.new("RGB", WINDOW, (255, 255, 255))
    draw = ImageDraw.Draw(frame)
    draw.rectangle((0, 0, width - 1, TITLE_BAR - 1), fill=(32, 33, 36))
    draw.rectangle((0, TITLE_BAR, width - 1, TITLE_BAR + TOOLBAR - 1), fill=(53, 54, 58))
    draw.rounded_rectangle((96, TITLE_BAR + 7, width - 96, TITLE_BAR + TOOLBAR - 8), radius=12, fill=(32, 33, 36))
    font = ImageFont.load_default(size=13)
    draw.text((16, TITLE_BAR // 2), "Photo gallery - Mozilla Firefox", fill=(232, 234, 237), font=font, anchor="lm")
    draw.text(
        (112, TITLE_BAR + TOOLBAR // 2), "https://photos.example.org/view", fill=(189, 193, 198), font=font, anchor="lm"
    )
    for index, colour in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
        cx, cy = width - 20 - 22 * index, TITLE_BAR // 2
        draw.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), fill=colour)
    for index in range(3):  # back, forward, reload buttons
        cx, cy = 22 + 26 * index, TITLE_BAR + TOOLBAR // 2
        draw.ellipse((cx - 8, cy - 8, cx + 8, cy + 8), outline=(189, 193, 198), width=2)
    return frame


_FRAME: Image.Image | None = None


def browser_screenshot(image: Image.Image) -> Image.Image:
    """The photo shown at its own size (smaller only if it would not fit), centred on the white page of the
    one shared browser window, as a screenshot tool saves it (the whole window, PNG)."""
    global _FRAME
    if _FRAME is None:
        _FRAME = _browser_frame()
    canvas = _FRAME.copy()
    page_w = WINDOW[0] - 2 * PAGE_MARGIN
    page_h = WINDOW[1] - TITLE_BAR - TOOLBAR - 2 * PAGE_MARGIN
    photo = _rgb(image).convert("RGB")
    scale = min(1.0, page_w / photo.width, page_h / photo.height)
    if scale < 1.0:
        photo = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))), Image.LANCZOS)
    left = (WINDOW[0] - photo.width) // 2
    top = TITLE_BAR + TOOLBAR + PAGE_MARGIN + (page_h - photo.height) // 2
    canvas.paste(photo, (left, top))
    return canvas


@dataclass(frozen=True)
class Copy:
    """A transform: its name (as reported), file-name slug, output suffix and the edit."""

    name: str
    slug: str
    suffix: str
    make: Callable[[Image.Image, int], Image.Image]
    quality: int = 92


COPY_TRANSFORMS: tuple[Copy, ...] = (
    Copy("resize 50%", "resize50", ".jpg", lambda im, seed: resize_half(im)),
    Copy("JPEG q30", "jpeg30", ".jpg", lambda im, seed: im, quality=30),
    Copy("brightness +20%", "bright20", ".jpg", lambda im, seed: brighten(im)),
    Copy("noise", "noise", ".jpg", lambda im, seed: add_noise(im, seed)),
    Copy("greyscale", "grey", ".jpg", lambda im, seed: im.convert("L")),
    Copy("crop 5%", "crop5", ".jpg", lambda im, seed: crop_sides(im)),
    Copy("mirror", "mirror", ".jpg", lambda im, seed: mirror(im)),
    Copy("turn 90°", "turn90", ".jpg", lambda im, seed: turn_90(im)),
    Copy("screenshot", "screenshot", ".png", lambda im, seed: browser_screenshot(im)),
    Copy("crop 5% one corner", "crop5corner", ".jpg", lambda im, seed: crop_one_corner(im)),  # extra, no goal
)
_COPY = {c.name: c for c in COPY_TRANSFORMS}


def _add_copy(target: EvalSet, image: Image.Image, stem: str, group: str, transform: str, seed: int) -> None:
    copy = _COPY[transform]
    edited = copy.make(image, seed)
    target.add(edited, f"{stem}__{copy.slug}{copy.suffix}", group, copy.name, quality=copy.quality)


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as opened:
        opened.load()
        return _rgb(opened)


# --- sources -----------------------------------------------------------------------------------------------------


def _coco() -> list[Path]:
    return sorted(p for p in PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []


def tuning_photos() -> list[Path]:
    """The tuning half: COCO photos at even positions in sorted order."""
    return _coco()[0::2]


def held_out_photos(n: int | None = None) -> list[Path]:
    """Real photos never used for tuning: the odd COCO half, then UKBench's 10 base photos, then scikit-image's
    sample photos (when scikit-image is installed)."""
    photos = _coco()[1::2] + (sorted(UKBENCH.glob("*.jpg")) if UKBENCH.is_dir() else []) + _skimage_photos()
    return photos[:n] if n is not None else photos


def _skimage_photos() -> list[Path]:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return [folder / name for name in SKIMAGE_PHOTOS if (folder / name).is_file()]


def _module_path(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin) if spec and spec.origin else Path("/nonexistent") / name


def missing_sources(name: str) -> str | None:
    """Why set `name` cannot be built here (a sentence with the install hint), or None."""
    needs = {
        "photos-tune": (PHOTOS, "the 256 COCO photos in ../shared/data/photos"),
        "photos-held": (PHOTOS, "the 256 COCO photos in ../shared/data/photos"),
        "shared-frame": (PHOTOS, "the 256 COCO photos in ../shared/data/photos"),
        "figures": (SKIMAGE_DOC_IMAGES, "apt-get install python-skimage-doc"),
        "icons": (ICON_THEME / "48x48", "apt-get install gnome-icon-theme"),
        "products": (FASHION_MNIST, "apt-get install dataset-fashion-mnist"),
        "figures-tune": (_module_path("matplotlib"), "pip install matplotlib"),
        "icons-tune": (TUNING_ICON_THEME / "48x48", "apt-get install adwaita-icon-theme"),
        "products-tune": (FASHION_MNIST, "apt-get install dataset-fashion-mnist"),
        "symmetric": (PHOTOS, "the 256 COCO photos in ../shared/data/photos"),
    }
    if name not in needs:
        return f"unknown set {name!r}"
    path, hint = needs[name]
    return None if path.exists() else f"{path} not found ({hint})"


# --- photos-tune / photos-held --------------------------------------------------------------------------------


def _photo_set(name: str, out: Path, photos: list[Path], tuning: bool) -> EvalSet:
    target = EvalSet(
        name,
        out,
        tuning=tuning,
        description=f"{len(photos)} COCO photos, each with {len(COPY_TRANSFORMS)} copies (screenshots share one frame)",
        truth="by construction: each photo and the copies made from it are one group; the photos are distinct",
    )
    for index, path in enumerate(photos):
        stem, group = path.stem, path.stem
        target.add(path.read_bytes(), f"{stem}__original{path.suffix.lower()}", group)
        image = _open_rgb(path)
        for copy in COPY_TRANSFORMS:
            _add_copy(target, image, stem, group, copy.name, seed=index)
    return target


def build_photos_tune(out: Path) -> EvalSet:
    return _photo_set("photos-tune", out, tuning_photos(), tuning=True)


def build_photos_held(out: Path) -> EvalSet:
    return _photo_set("photos-held", out, _coco()[1::2], tuning=False)


# --- shared-frame ------------------------------------------------------------------------------------------------


def shared_frame_screenshots(photos: list[Path], out: Path, name: str = "shared-frame") -> EvalSet:
    """Each photo (its own bytes) and a screenshot of it in the one shared browser window, written to `out`.

    With 50 different photos a correct dedupe returns 50 groups, each a photo with its screenshot; the frame
    (title bar, toolbar, white page) is identical in all 50 screenshots, so no two screenshots may match on it.
    """
    out.mkdir(parents=True, exist_ok=True)
    target = EvalSet(
        name,
        out,
        description=f"{len(photos)} different held-out photos, each with its screenshot; one frame for all",
        truth="by construction: a photo and its screenshot are one group; the photos are distinct",
    )
    for path in photos:
        stem = _unique_stem(path, target)
        target.add(path.read_bytes(), f"{stem}__original{path.suffix.lower()}", stem)
        _add_copy(target, _open_rgb(path), stem, stem, "screenshot", seed=0)
    return target


def _unique_stem(path: Path, target: EvalSet) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem)
    taken = {item.group for item in target.items}
    return stem if stem not in taken else f"{stem}-{len(taken)}"


def build_shared_frame(out: Path) -> EvalSet:
    return shared_frame_screenshots(held_out_photos(), out)


# --- figures -------------------------------------------------------------------------------------------------------

_THUMB = re.compile(r"^sphx_glr_(?P<example>.+)_thumb\d*\.png$")
THUMB_SIZE = (280, 196)


def _fit_on_white(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """What sphinx-gallery makes of a figure: scaled to fit `size`, centred on a white canvas."""
    scale = min(size[0] / image.width, size[1] / image.height)
    w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(image.resize((w, h), Image.LANCZOS), ((size[0] - w) // 2, (size[1] - h) // 2))
    return np.asarray(canvas, dtype=np.float32)


@functools.cache
def thumbnail_sources(folder: Path = SKIMAGE_DOC_IMAGES, max_error: float = 3.0) -> dict[str, str | None]:
    """Thumbnail file → the figure it was made from, or None when no figure matches.

    Found by pixels, not by name: every figure is fitted into the thumbnail's 280×196 on white, and the one
    with the smallest mean absolute error (0-255 scale) is the source when that error is ≤ `max_error` (the
    real sources measure 0.2-1.9; the next-best figure of a different image 1.2 and up, mostly above 5).
    """
    files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    thumbs = [f for f in files if _THUMB.match(f)]
    figures = [f for f in files if not _THUMB.match(f)]
    fitted = {f: _fit_on_white(_open_rgb(folder / f).convert("RGB"), THUMB_SIZE) for f in figures}
    found: dict[str, str | None] = {}
    for thumb in thumbs:
        pixels = np.asarray(_open_rgb(folder / thumb).convert("RGB").resize(THUMB_SIZE), dtype=np.float32)
        errors = sorted((float(np.abs(pixels - fit).mean()), f) for f, fit in fitted.items())
        found[thumb] = errors[0][1] if errors[0][0] <= max_error else None
    return found


def _figure_files(folder: Path = SKIMAGE_DOC_IMAGES) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))


def build_figures(out: Path, copies_every: int = 4) -> EvalSet:
    """All of `_images` as installed, plus a 50% resize (PNG) and a JPEG q30 of every `copies_every`-th figure.

    Ground truth: a figure is its own group; a gallery thumbnail joins the figure it was made from (by pixels:
    thumbnail_sources); files with identical pixels are one group (plot_thresholding_001 and _004 are the same
    bytes). Everything else is distinct, including near-identical figures of different runs (plot_j_invariant
    vs plot_j_invariant_tutorial: the same layout, different noise).
    """
    target = EvalSet(
        "figures",
        out,
        description="scikit-image doc figures (plots on white) and gallery thumbnails, with resize/JPEG copies",
        truth="thumbnail → its source figure by pixel comparison (fit into 280×196, MAE ≤ 3); pixel-identical "
        "files merged; all other figures distinct",
    )
    sources = thumbnail_sources()
    figures = [f for f in _figure_files() if f not in sources]
    for name in figures:
        target.add((SKIMAGE_DOC_IMAGES / name).read_bytes(), name, Path(name).stem)
    for thumb, source in sources.items():
        group, transform = (Path(source).stem, "gallery thumbnail") if source else (Path(thumb).stem, "original")
        target.add((SKIMAGE_DOC_IMAGES / thumb).read_bytes(), thumb, group, transform)
    for name in figures[::copies_every]:
        image = _open_rgb(SKIMAGE_DOC_IMAGES / name)
        stem = Path(name).stem
        target.add(resize_half(image), f"{stem}__resize50.png", stem, "resize 50%")
        target.add(image, f"{stem}__jpeg30.jpg", stem, "JPEG q30", quality=30)
    target.merge_identical()
    return target


def build_figures_tune(out: Path, copies_every: int = 4) -> EvalSet:
    """Families of matplotlib figures that differ only in what is plotted (tests/support/plots.py), plus a 50%
    resize and a JPEG q30 of every `copies_every`-th: the tuning set for plots on white. Ground truth: every
    figure is distinct; a copy belongs to its figure."""
    from tests.support.plots import plot_families

    target = EvalSet(
        "figures-tune",
        out,
        tuning=True,
        description="matplotlib figures in families of near-identical, different plots, with resize/JPEG copies",
        truth="every drawn figure distinct; a copy belongs to its figure",
    )
    for index, (stem, image) in enumerate(plot_families()):
        target.add(image, f"{stem}.png", stem)
        if index % copies_every == 0:
            target.add(resize_half(image), f"{stem}__resize50.png", stem, "resize 50%")
            target.add(image, f"{stem}__jpeg30.jpg", stem, "JPEG q30", quality=30)
    target.merge_identical()
    return target


@dataclass
class FigureSite:
    """A static site of distinct figures: `root/index.html` links to one page per gallery section,
    `root/<section>/index.html`, whose <img> tags show that section's figures (`root/<section>/<file>`)."""

    root: Path
    pages: list[str]  # paths relative to root, "index.html" first
    expected: dict[str, list[str]]  # section (the label in the URL) → figure files on its page

    @property
    def images(self) -> int:
        return sum(len(files) for files in self.expected.values())


def figures_site(out: Path, per_section: int | None = None) -> FigureSite:
    """The scikit-image gallery's figures as a site to scrape over 127.0.0.1: every figure distinct from every
    other (thumbnails and pixel-identical files left out), grouped by gallery section, so a correct scrape plus
    dedupe keeps all `site.images` of them and groups no two."""
    sections = _sections()
    chosen: dict[str, list[str]] = {}
    seen: set[str] = set()
    for name in _figure_files():
        match = re.match(r"^sphx_glr_(.+)_\d+\.png$", name)
        if not match or match.group(1) not in sections:
            continue
        digest = _pixel_digest(SKIMAGE_DOC_IMAGES / name)
        if digest in seen:
            continue
        seen.add(digest)
        chosen.setdefault(sections[match.group(1)], []).append(name)
    if per_section is not None:
        chosen = {section: files[:per_section] for section, files in chosen.items()}
    out.mkdir(parents=True, exist_ok=True)
    pages = ["index.html"]
    links = []
    for section, files in sorted(chosen.items()):
        (out / section).mkdir(exist_ok=True)
        tags = []
        for name in files:
            shutil.copyfile(SKIMAGE_DOC_IMAGES / name, out / section / name)
            tags.append(f'<figure><img src="{html.escape(name)}" alt="{html.escape(Path(name).stem)}"></figure>')
        (out / section / "index.html").write_text(_html(section, "\n".join(tags)))
        pages.append(f"{section}/index.html")
        links.append(f'<li><a href="{section}/index.html">{html.escape(section)}</a></li>')
    (out / "index.html").write_text(_html("Gallery", "<ul>" + "".join(links) + "</ul>"))
    return FigureSite(out, pages, dict(sorted(chosen.items())))


def _sections() -> dict[str, str]:
    """Example name → its gallery section folder (auto_examples/<section>/<example>.html)."""
    found: dict[str, str] = {}
    if SKIMAGE_DOC_EXAMPLES.is_dir():
        for page in SKIMAGE_DOC_EXAMPLES.glob("*/*.html"):
            found[page.stem] = page.parent.name
    return found


def _html(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


# --- icons ---------------------------------------------------------------------------------------------------------

ICON_SIZES = (16, 22, 24, 32, 48, 256)
TUNING_ICON_SIZES = (16, 24, 32, 48, 64, 96)


def build_icons(out: Path, names: int = 150) -> EvalSet:
    """`names` icon names (every k-th, sorted, of those drawn at all six sizes and not an alias, i.e. a link to
    another name's file), each at all six sizes.

    Ground truth: one name at all sizes is one group (the 256 px drawing is its "original"; the smaller ones
    are often redrawn by hand, simpler, which is why no recall goal applies); names installed as links to the
    same file, or with identical pixels, or exact mirror images/turns of each other (go-next and go-previous,
    go-first and go-first-rtl) are one group: no pixel comparison can tell such a twin from a mirror copy,
    which the goals require a dedupe to find. Different pictures are distinct.
    """
    return _icon_set("icons", out, ICON_THEME, ICON_SIZES, names, "GNOME")


def build_icons_tune(out: Path, names: int = 150) -> EvalSet:
    """The same construction as build_icons on another theme (Adwaita, 16-96 px): a tuning set of icons.
    Adwaita's legacy/ folder holds the GNOME theme's drawings re-exported, so it is left out."""
    built = _icon_set("icons-tune", out, TUNING_ICON_THEME, TUNING_ICON_SIZES, names, "Adwaita (not legacy/)")
    built.tuning = True
    return built


def _icon_set(name: str, out: Path, theme: Path, sizes: tuple[int, ...], names: int, title: str) -> EvalSet:
    target = EvalSet(
        name,
        out,
        description=f"{names} {title} icon names × {len(sizes)} sizes (transparent PNGs)",
        truth="same icon name (after resolving symlinks to the file they name) = one group; names whose pictures "
        "are pixel-identical or exact mirror/turn images of each other merged",
    )
    for key in _icon_names(theme, sizes, names):
        category, icon = key.split("/")
        group = _icon_group(theme, max(sizes), category, icon)
        for size in sizes:
            path = theme / f"{size}x{size}" / category / f"{icon}.png"
            transform = "original" if size == max(sizes) else f"icon {size}px"
            target.add(path.read_bytes(), f"{category}__{icon}__{size}.png", group, transform)
    target.merge_identical(dihedral=True)
    return target


def _icon_names(theme: Path, sizes: tuple[int, ...], count: int) -> list[str]:
    """Every k-th of the theme's distinct icons (category/name), `count` of them."""
    common = _distinct_icons(theme, sizes)
    step = max(1, len(common) // count)
    return list(common[::step][:count])


@functools.cache
def _distinct_icons(theme: Path, sizes: tuple[int, ...]) -> tuple[str, ...]:
    """Names drawn at every size, not aliases (links to another name's file), no mirror twins."""
    per_size = [{f"{p.parent.name}/{p.stem}" for p in (theme / f"{size}x{size}").glob("*/*.png")} for size in sizes]
    common = sorted(key for key in set.intersection(*per_size) if not key.startswith("legacy/"))
    common = [key for key in common if not (theme / f"{max(sizes)}x{max(sizes)}" / f"{key}.png").is_symlink()]
    return tuple(_without_twins(theme, common))


TWIN_MAE = 6.0  # 0-255: a JPEG q30 copy of an icon differs from it by about this much


def _without_twins(theme: Path, keys: list[str]) -> list[str]:
    """Leave out a name whose 48 px picture is a mirror or turn of an earlier name's (go-next-rtl is go-next
    mirrored and re-shaded: 1.5-5 apart). No pixel method can tell such a twin from a mirror
    copy, which the goals require to be found, so the set does not ask; exact twins are merged instead."""
    pictures = np.stack([_dihedral_variants(theme / "48x48" / f"{key}.png") for key in keys])
    kept: list[int] = []
    for index in range(len(keys)):
        if not kept or not _is_twin(pictures[index, 0], pictures[kept]).any():
            kept.append(index)
    return [keys[i] for i in kept]


def _is_twin(picture: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each of `others` (n, 8 variants, h, w, 3): is `picture` a mirror/turn image of it (not merely alike)?
    A turned or mirrored variant is within TWIN_MAE and much closer than the other as it is (a symmetric
    face-smile next to face-sad is not a twin)."""
    errors = np.abs(others - picture).mean(axis=(2, 3, 4))  # (n, 8)
    turned = errors[:, 1:].min(axis=1)
    return (turned < TWIN_MAE) & (turned * 2 < errors[:, 0])


def _dihedral_variants(path: Path) -> np.ndarray:
    """The picture flattened on white, as float arrays: itself first, then its 7 mirror/turn images."""
    image = _rgb(Image.open(path)).convert("RGB")
    turns = [image, *(image.transpose(t) for t in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180))]
    turns.append(image.transpose(Image.Transpose.ROTATE_270))
    variants = turns + [t.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for t in turns]
    return np.stack([np.asarray(v, dtype=np.float32) for v in variants])


def _icon_group(theme: Path, size: int, category: str, icon: str) -> str:
    """The icon a name really is: links (e.g. an alias name) resolve to the file they point at."""
    real = Path(os.path.realpath(theme / f"{size}x{size}" / category / f"{icon}.png"))
    return f"{real.parent.name}/{real.stem}"


# --- products ------------------------------------------------------------------------------------------------------

PRODUCT_COPIES = ("resize 50%", "JPEG q30", "mirror", "noise")


def _fashion_images(count: int, start: int = 0) -> np.ndarray:
    with gzip.open(FASHION_MNIST, "rb") as handle:
        data = handle.read()
    n, rows, cols = (int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(3))
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)
    return images[start : start + count]


def product_photo(item: np.ndarray, seed: int, side: int = 320) -> Image.Image:
    """A Fashion-MNIST item as a shop photo: tinted, dark-on-light (inverted), upscaled, on a white canvas."""
    rng = np.random.default_rng(seed)
    tint = rng.integers(30, 200, 3).astype(np.float32)
    coverage = item.astype(np.float32)[..., None] / 255.0
    pixels = 255.0 - coverage * (255.0 - tint)  # 0 → white background, 255 → the tint colour
    product = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize((side * 3 // 4,) * 2, Image.BICUBIC)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(product, ((side - product.width) // 2, (side - product.height) // 2))
    return canvas


def build_products(out: Path, count: int = 400, copies_every: int = 5) -> EvalSet:
    """`count` Fashion-MNIST test items (10 classes of clothes, shoes and bags) as product photos on white;
    every `copies_every`-th with the PRODUCT_COPIES. Ground truth: every item is distinct (items with identical
    pixels merged); a copy belongs to its item."""
    return _product_set("products", out, count, copies_every, start=0)


TUNING_PRODUCTS_START = 5000  # the tuning set's items: the second half of the test file, never in "products"


def build_products_tune(out: Path, count: int = 400, copies_every: int = 5) -> EvalSet:
    """The same construction as build_products on other items (from the second half of the file): tuning."""
    built = _product_set("products-tune", out, count, copies_every, start=TUNING_PRODUCTS_START)
    built.tuning = True
    return built


def _product_set(name: str, out: Path, count: int, copies_every: int, start: int) -> EvalSet:
    target = EvalSet(
        name,
        out,
        description=f"{count} Fashion-MNIST items as tinted product photos on white, "
        f"{count // copies_every} with {len(PRODUCT_COPIES)} copies",
        truth="each item distinct (identical 28×28 pixel arrays merged); a copy belongs to its item",
    )
    items = _fashion_images(count, start)
    first: dict[bytes, str] = {}
    for offset, item in enumerate(items):
        index = start + offset
        group = first.setdefault(item.tobytes(), f"item{index:05d}")
        image = product_photo(item, seed=index)
        stem = f"item{index:05d}"
        target.add(image, f"{stem}__original.jpg", group)
        if offset % copies_every == 0:
            for transform in PRODUCT_COPIES:
                _add_copy(target, image, stem, group, transform, seed=index)
    return target


def _grey64(path: Path) -> np.ndarray:
    with Image.open(path) as opened:
        opened.draft("L", (128, 128))
        return np.asarray(opened.convert("L").resize((64, 64), Image.BILINEAR), dtype=np.float32)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-6))


def _aligned_halves(g: np.ndarray) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """Per kind, the first piece and the others mirrored or turned onto it."""
    h, w = g.shape[0] // 2, g.shape[1] // 2
    turned = [np.rot90(g[:h, w:], 1), np.rot90(g[h:, w:], 2), np.rot90(g[h:, :w], 3)]
    return {
        "left-right": (g[:, :w], [g[:, w:][:, ::-1]]),
        "top-bottom": (g[:h], [g[h:][::-1]]),
        "quadrants": (g[:h, :w], turned),
    }


def symmetry_scores(path: Path) -> dict[str, float]:
    """How much one half of the photo looks like the other half mirrored (left/right, top/bottom), and how
    much its quadrants look like each other turned (round objects): correlations of 64×64 greyscale."""
    return {
        kind: float(np.mean([_correlation(first, other) for other in others]))
        for kind, (first, others) in _aligned_halves(_grey64(path)).items()
    }


MIRRORED = 0.1  # aligned pieces closer than this share of the photo's own spread were made by mirroring


def is_mirror_composite(path: Path, kind: str) -> bool:
    """True when the pieces of `kind` are copies of each other, not natural symmetry: their mean absolute
    difference after mirroring/turning (64×64 grey) is under MIRRORED × the photo's mean absolute deviation.
    COCO 000000006012, a photo digitally mirrored about its centre line, measures 0.07; the most symmetric
    natural photos 0.15 and up (a hand-cream tube on carpet, the retina's top and bottom)."""
    g = _grey64(path)
    first, others = _aligned_halves(g)[kind]
    spread = float(np.abs(g - g.mean()).mean()) + 1e-6
    return min(float(np.abs(first - other).mean()) for other in others) < MIRRORED * spread


def _pieces(image: Image.Image, kind: str) -> dict[str, Image.Image]:
    w, h = image.size
    if kind == "left-right":
        return {"left": image.crop((0, 0, w // 2, h)), "right": image.crop((w - w // 2, 0, w, h))}
    if kind == "top-bottom":
        return {"top": image.crop((0, 0, w, h // 2)), "bottom": image.crop((0, h - h // 2, w, h))}
    return {
        "q1": image.crop((0, 0, w // 2, h // 2)),
        "q2": image.crop((w - w // 2, 0, w, h // 2)),
        "q3": image.crop((0, h - h // 2, w // 2, h)),
        "q4": image.crop((w - w // 2, h - h // 2, w, h)),
    }


SYMMETRIC_COPIES = ("resize 50%", "mirror")


def build_symmetric(out: Path, per_kind: dict[str, int] | None = None) -> EvalSet:
    """Pieces of the most symmetric held-out photos: the two halves of the most left-right symmetric, the two
    halves of the most top-bottom symmetric (reflections), the four quadrants of the most rotationally
    symmetric (round objects; scikit-image's retina always among them). Each piece is a distinct image (no
    pixel in common with its siblings), though one half looks like the other mirrored (photos made by mirroring,
    whose halves are copies, are left out: is_mirror_composite); each piece also has a
    50% resize and a true mirror copy, so a mirror copy of the left half is a copy of the left half only."""
    per_kind = per_kind or {"left-right": 40, "top-bottom": 40, "quadrants": 16}
    target = EvalSet(
        "symmetric",
        out,
        description="halves/quadrants of the most symmetric held-out photos, each with a resize and a mirror copy",
        truth="by construction: every piece distinct (disjoint pixels of one photo, digitally mirrored photos "
        "left out); its copies belong to it",
    )
    photos = held_out_photos()
    scores = {path: symmetry_scores(path) for path in photos}
    used = {p for p in photos if p.name == "retina.jpg"}  # reserved for the quadrants
    for kind, count in per_kind.items():
        candidates = [p for p in sorted(photos, key=lambda p: -scores[p][kind]) if p not in used]
        ranked = [p for p in candidates[: 2 * count] if not is_mirror_composite(p, kind)][:count]
        if kind == "quadrants":
            ranked += [p for p in photos if p.name == "retina.jpg"]
        used.update(ranked)  # one kind per photo: a quadrant would be a crop of a half
        for path in ranked:
            image = _open_rgb(path)
            for piece, crop in _pieces(image, kind).items():
                stem = f"{re.sub(r'[^A-Za-z0-9_-]+', '-', path.stem)}__{piece}"
                target.add(crop, f"{stem}.jpg", stem, quality=95)
                for transform in SYMMETRIC_COPIES:
                    _add_copy(target, crop, stem, stem, transform, seed=0)
    return target


# --- the registry ----------------------------------------------------------------------------------------------

SETS: dict[str, Callable[[Path], EvalSet]] = {
    "photos-tune": build_photos_tune,
    "figures-tune": build_figures_tune,
    "icons-tune": build_icons_tune,
    "products-tune": build_products_tune,
    "photos-held": build_photos_held,
    "shared-frame": build_shared_frame,
    "figures": build_figures,
    "icons": build_icons,
    "products": build_products,
    "symmetric": build_symmetric,
}
TUNING_SETS = frozenset({"photos-tune", "figures-tune", "icons-tune", "products-tune"})


def build_set(name: str, out: Path) -> EvalSet:
    """Build set `name` into the empty (or new) folder `out`; raises FileNotFoundError when its real images are
    not installed here (missing_sources says why)."""
    reason = missing_sources(name)
    if reason:
        raise FileNotFoundError(reason)
    out.mkdir(parents=True, exist_ok=True)
    built = SETS[name](out)
    _check_names(built.items)
    return built


def _check_names(items: Iterable[Item]) -> None:
    names = [item.name for item in items]
    if len(names) != len(set(names)):
        raise ValueError("file names in a set must be unique")
