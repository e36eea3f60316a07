"""Regenerate the README's pictures from real runs (run by hand: `.venv/bin/python scripts/docs_pictures.py`).

- docs/dedupe-report.png: `curate dedupe --html` of a workspace of 24 real photos and copies of them
  (mirrored, resized, re-encoded, cropped), rendered by the system Chromium;
- docs/demo-recall.png, docs/confusion-matrix.png, docs/curves.png: from a `harvest demo` folder
  (`--demo DIR`, default demo-shop): its before/after chart and the second model's report plots.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
BIN = Path(sys.executable).parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip


def copies(folder: Path, count: int = 24) -> None:
    """Real photos, and for every third one a copy a collector would meet: mirrored, half size, q40, cropped."""
    folder.mkdir(parents=True)
    for n, path in enumerate(sorted(PHOTOS.glob("*.jpg"))[:count]):
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        image.save(folder / f"{n:02d}.jpg", quality=92)
        if n % 3:
            continue
        kind = ("mirror", "half", "q40", "crop")[(n // 3) % 4]
        if kind == "mirror":
            ImageOps.mirror(image).save(folder / f"{n:02d}-mirror.jpg", quality=92)
        elif kind == "half":
            image.resize((image.width // 2, image.height // 2)).save(folder / f"{n:02d}-half.jpg", quality=92)
        elif kind == "q40":
            image.save(folder / f"{n:02d}-q40.jpg", quality=40)
        else:
            w, h = image.size
            image.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(folder / f"{n:02d}-crop.jpg", quality=92)


def screenshot(html: Path, png: Path, width: int = 1100, height: int = 900) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(html.as_uri())
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(png))
        browser.close()


def dedupe_report(work: Path) -> None:
    workspace = work / "ws"
    photos = work / "photos"
    copies(photos)
    subprocess.run([BIN / "harvest", "init", workspace], check=True, capture_output=True)
    # near_duplicates off at ingest: the copies stay in the catalog, so the report shows what dedupe finds
    toml = workspace / "gleaner.toml"
    toml.write_text(toml.read_text().replace("# near_duplicates = true", "near_duplicates = false"))
    subprocess.run([BIN / "harvest", "import", photos, "-w", workspace, "--label", "photo"], check=True)
    html = work / "dedupe.html"
    subprocess.run([BIN / "curate", "dedupe", "-w", workspace, "--html", html], check=True)
    screenshot(html, DOCS / "dedupe-report.png")


def from_demo(demo: Path) -> None:
    after = demo / "workspace" / "runs" / "after"
    pictures = {
        demo / "recall.png": "demo-recall.png",
        after / "confusion_matrix.png": "confusion-matrix.png",
        after / "curves.png": "curves.png",
    }
    for source, name in pictures.items():
        if not source.is_file():
            raise SystemExit(f"error: {source} not found: run `harvest demo --out {demo}` first")
        shutil.copyfile(source, DOCS / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "demo-shop", help="a finished `harvest demo` folder")
    args = parser.parse_args()
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        dedupe_report(Path(tmp))
    from_demo(args.demo)
    print("wrote", ", ".join(sorted(p.name for p in DOCS.glob("*.png"))))


if __name__ == "__main__":
    main()
