"""Ingest throughput: `harvest import` of real photos into a local store and into SeaweedFS (S3).

Baseline, measured in the same run on the same files: a plain `shutil.copy` + sha256 of each file into a
content-addressed folder (no validation, no perceptual hash, no catalog). Goal: >= 300 images/s into the
local store on 2 cores. Run: `.venv/bin/python bench/ingest.py [--large N]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harvest.importer import import_paths  # noqa: E402
from storage.workspace import init_workspace  # noqa: E402
from tests.support.servers import seaweedfs_server  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "photos"
GOAL = 300.0


def baseline_copy(files: list[Path], out: Path) -> float:
    """Images/s of copy + sha256 into a content-addressed folder."""
    started = time.perf_counter()
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        target = out / digest[:2] / f"{digest}{path.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return len(files) / (time.perf_counter() - started)


def gleaner_import(folder: Path, workspace_dir: Path, **init: str) -> tuple[float, int]:
    workspace, _ = init_workspace(workspace_dir, **init)
    started = time.perf_counter()
    result = import_paths(workspace, [folder], label="photo")
    rate = result.summary.total / (time.perf_counter() - started)
    workspace.close()
    # every file is stored and catalogued; derived copies count as near-duplicates of their photo
    return rate, result.summary.added + result.summary.duplicates


def make_large_set(files: list[Path], out: Path, copies: int) -> list[Path]:
    """Distinct files made from the photos: each resized to several scales and re-encoded (so, to Gleaner,
    near-duplicates of their photo: the run also exercises the ingest-time near-duplicate check)."""
    made: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(files):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            for copy in range(copies):
                scale = 0.5 + 0.5 * (copy + 1) / copies
                size = (max(16, int(rgb.width * scale)), max(16, int(rgb.height * scale)))
                target = out / f"{index:04d}-{copy}.jpg"
                rgb.resize(size).save(target, quality=85 + copy % 10)
                made.append(target)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=8, help="copies per photo in the larger set")
    parser.add_argument("--no-s3", action="store_true", help="skip the SeaweedFS measurement")
    args = parser.parse_args()
    if not PHOTOS.is_dir():
        raise SystemExit(f"photos not found at {PHOTOS}")
    files = sorted(PHOTOS.glob("*.jpg"))
    console = Console()
    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="gleaner-bench-") as tmp:
        root = Path(tmp)
        large_dir = root / "large"
        large = make_large_set(files, large_dir, args.large)
        os.sync()
        for name, folder, items in (("256 photos", PHOTOS, files), (f"{len(large)} derived JPEGs", large_dir, large)):
            base = baseline_copy(items, root / f"copy-{len(items)}")
            rate, added = gleaner_import(folder, root / f"ws-local-{len(items)}")
            assert added == len(items), f"expected {len(items)} new images, got {added}"
            rows.append((f"{name} → local store", len(items), rate, base))
        if not args.no_s3:
            with seaweedfs_server() as server:
                os.environ.update(server.env())
                base = baseline_copy(files, root / "copy-s3")
                rate, added = gleaner_import(
                    PHOTOS,
                    root / "ws-s3",
                    store_url="s3://bench/photos",
                    endpoint_url=server.endpoint_url,
                    addressing_style="path",
                )
                assert added == len(files)
                rows.append(("256 photos → SeaweedFS (S3)", len(files), rate, base))
    table = Table(title=f"Ingest throughput ({os.cpu_count()} cores)")
    for column in ("run", "images", "gleaner img/s", "copy+sha256 img/s", "ratio"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for name, count, rate, base in rows:
        table.add_row(name, str(count), f"{rate:,.0f}", f"{base:,.0f}", f"{rate / base:.2f}x")
    console.print(table)
    local_rate = rows[0][2]
    verdict = "meets" if local_rate >= GOAL else "MISSES"
    console.print(f"local store: {local_rate:,.0f} images/s {verdict} the goal of {GOAL:.0f} images/s")


if __name__ == "__main__":
    main()
