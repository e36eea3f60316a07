"""Web fetch throughput: `harvest urls` against img2dataset on the same 2,000 URLs, in the same run.

A loopback server (tests/support/site.py, in its own process, serving from memory) serves 2,000 distinct
JPEGs made from ../shared/data/photos (8 crops of each photo at different positions, scaled back up and
re-encoded, so that they are neither byte- nor near-duplicates). Both tools
get the same CSV list and run as command-line programs, so both pay interpreter start-up:
- img2dataset (its own venv, created at /tmp/i2d when missing): `--resize_mode no --output_format files
  --processes_count 2 --thread_count 32`; it downloads and writes each file plus its JSON/text sidecars.
- `harvest urls LIST --allow-private --per-host-rate 0 --per-host-concurrency 32 --concurrency 32`: 2 download
  processes x 16 threads fetch through the SSRF guard and robots.txt (limits shared by the processes), then
  decode validation, sha256 + transform-aware hashes and a durable content-addressed store write in the same
  process; the parent writes the catalog rows (frontier and ingest-time near-duplicate check included). The
  per-host rate limit is off because img2dataset has none.
Goal: gleaner >= 1.5x img2dataset's images/s. Run: `.venv/bin/python bench/fetch.py [--images N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from multiprocessing import Pool
from pathlib import Path

import tomli_w
from PIL import Image
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO.parent / "shared" / "data" / "photos"
I2D_VENV = Path("/tmp/i2d")
GOAL = 1.5
ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(REPO)}


# Windows of 60 % of each side at 8 positions: crops of one photo are not near-duplicates of each other
# (0 of 560 pairs within storage.hashes.compare's threshold), so ingest's near-duplicate check does not fold them.
_WINDOW = 0.6
_POSITIONS = ((0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5), (0.5, 0), (0, 0.5), (1, 0.5))


def _variants(job: tuple[int, Path, int, Path]) -> list[str]:
    index, path, copies, out = job
    made = []
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    width, height = int(rgb.width * _WINDOW), int(rgb.height * _WINDOW)
    for copy in range(copies):
        fx, fy = _POSITIONS[copy % len(_POSITIONS)]
        left, top = int(fx * (rgb.width - width)), int(fy * (rgb.height - height))
        crop = rgb.crop((left, top, left + width, top + height)).resize(rgb.size, Image.Resampling.BILINEAR)
        name = f"{index:04d}-{copy}.jpg"
        crop.save(out / name, quality=85 + copy % 10)  # photo-sized files (about 50 KB each)
        made.append(name)
    return made


def make_images(out: Path, count: int) -> list[str]:
    """`count` distinct JPEGs derived from the photos (crops at several positions, scaled back to full size)."""
    photos = sorted(PHOTOS.glob("*.jpg"))
    copies = -(-count // len(photos))
    out.mkdir(parents=True, exist_ok=True)
    with Pool(os.cpu_count() or 1) as pool:
        names = [n for made in pool.map(_variants, [(i, p, copies, out) for i, p in enumerate(photos)]) for n in made]
    for extra in names[count:]:
        (out / extra).unlink()
    return names[:count]


def ensure_img2dataset() -> Path:
    binary = I2D_VENV / "bin" / "img2dataset"
    if not binary.exists():
        print("creating the img2dataset venv at /tmp/i2d (about 45 s) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(I2D_VENV)], check=True)
        subprocess.run([str(I2D_VENV / "bin" / "pip"), "install", "-q", "img2dataset"], check=True, env=ENV)
    return binary


def start_server(folder: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.site", str(folder)], stdout=subprocess.PIPE, text=True, cwd=REPO, env=ENV
    )
    assert process.stdout is not None
    base = process.stdout.readline().strip()
    if not base.startswith("http://"):
        process.kill()
        raise SystemExit(f"the fixture server did not start: {base!r}")
    return process, base


def run_img2dataset(binary: Path, url_list: Path, out: Path) -> tuple[float, int]:
    started = time.perf_counter()
    subprocess.run(
        [
            str(binary),
            "--url_list",
            str(url_list),
            "--input_format",
            "csv",
            "--url_col",
            "url",
            "--output_folder",
            str(out),
            "--resize_mode",
            "no",
            "--output_format",
            "files",
            "--processes_count",
            "2",
            "--thread_count",
            "32",
        ],
        check=True,
        env=ENV,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    return seconds, sum(1 for _ in out.rglob("*.jpg"))


def run_gleaner(url_list: Path, workspace: Path, *, near_duplicates: bool) -> tuple[float, int, dict[str, object]]:
    python = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").is_dir() else sys.executable
    subprocess.run([python, "-m", "harvest.cli", "init", str(workspace)], check=True, env=ENV, capture_output=True)
    if not near_duplicates:
        config_path = workspace / "gleaner.toml"
        config = tomllib.loads(config_path.read_text())
        config.setdefault("ingest", {})["near_duplicates"] = False
        config_path.write_text(tomli_w.dumps(config))
    started = time.perf_counter()
    done = subprocess.run(
        [
            python,
            "-m",
            "harvest.cli",
            "urls",
            str(url_list),
            "--allow-private",
            "--per-host-rate",
            "0",
            "--per-host-concurrency",
            "32",
            "--concurrency",
            "32",
            "--json",
            "-w",
            str(workspace),
        ],
        check=True,
        env=ENV,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    report = json.loads(done.stdout)
    return seconds, int(report["added"]) + int(report["duplicates"]), report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1, help="measure each tool this many times; best counts")
    parser.add_argument(
        "--no-near-duplicates",
        action="store_true",
        help="turn off ingest's near-duplicate check in the gleaner workspace ([ingest] near_duplicates = false)",
    )
    args = parser.parse_args()
    if not PHOTOS.is_dir():
        raise SystemExit(f"photos not found at {PHOTOS}")
    console = Console()
    binary = ensure_img2dataset()
    with tempfile.TemporaryDirectory(prefix="gleaner-bench-fetch-") as tmp:
        root = Path(tmp)
        names = make_images(root / "images", args.images)
        total_bytes = sum((root / "images" / n).stat().st_size for n in names)
        server, base = start_server(root / "images")
        try:
            url_list = root / "urls.csv"
            url_list.write_text("url\n" + "".join(f"{base}/files/{n}\n" for n in names))
            i2d: list[tuple[float, int]] = []
            ours: list[tuple[float, int]] = []
            for round_ in range(args.rounds):
                i2d.append(run_img2dataset(binary, url_list, root / f"i2d-{round_}"))
                seconds, added, report = run_gleaner(
                    url_list, root / f"ws-{round_}", near_duplicates=not args.no_near_duplicates
                )
                ours.append((seconds, added))
                if report["failed"] or report["rejected"]:
                    console.print(f"[yellow]gleaner problems:[/] {report['problems'][:5]}")
        finally:
            server.kill()
    i2d_seconds, i2d_count = min(i2d)
    our_seconds, our_count = min(ours)
    i2d_rate = i2d_count / i2d_seconds
    our_rate = our_count / our_seconds
    table = Table(
        title=f"{args.images:,} JPEGs ({total_bytes / 1e6:,.0f} MB) from a loopback server, {os.cpu_count()} cores"
    )
    for column in ("tool", "images", "seconds", "images/s"):
        table.add_column(column, justify="left" if column == "tool" else "right")
    table.add_row(
        "img2dataset (files, 2 processes x 32 threads)", str(i2d_count), f"{i2d_seconds:.1f}", f"{i2d_rate:,.0f}"
    )
    table.add_row(
        "gleaner harvest urls (2 download processes x 16 threads)"
        + (", near-duplicate check off" if args.no_near_duplicates else ""),
        str(our_count),
        f"{our_seconds:.1f}",
        f"{our_rate:,.0f}",
    )
    console.print(table)
    ratio = our_rate / i2d_rate
    verdict = "meets" if ratio >= GOAL else "MISSES"
    console.print(f"ratio: {ratio:.2f}x img2dataset ({verdict} the goal of {GOAL:.1f}x)")


if __name__ == "__main__":
    main()
