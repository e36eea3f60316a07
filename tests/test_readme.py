"""The README's examples run as written: every code block marked `<!-- runnable -->` (the line before its fence)
is run through the real console scripts, in README order, in one bash session, as a new user would type them,
in a fresh folder whose home holds the pictures the examples name (`~/Pictures/nike`, `~/datasets/shoes`).

Blocks that need what a test cannot give (an S3 bucket, a real web shop, minutes of training, a server that runs
until Ctrl-C such as `curate review` and `harvest schedule`) are not marked; the web collectors run against `~/shop`
served on 127.0.0.1:8765 by the block itself; the
training example that is marked trains two epochs of one network on 36 small images.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
MARKER = "<!-- runnable -->"
BLOCK = re.compile(r"^<!-- runnable -->\n```(?:bash|sh)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def runnable_blocks(text: str = README) -> list[str]:
    blocks = BLOCK.findall(text)
    marked = sum(1 for line in text.splitlines() if line.strip() == MARKER)
    assert len(blocks) == marked, "a runnable marker must be the line right before a ```bash fence"
    return blocks


def fixture_home(home: Path, photos: list[Path]) -> None:
    """The folders the README's examples import: 12 nike photos, and 12 boots + 12 sandals in label folders
    (48 px thumbnails of the real photos: quick to hash, check and train on, still distinct pictures), and one
    new photo to classify."""
    groups = {
        "Pictures/nike": photos[:12],
        "datasets/shoes/boots": photos[12:24],
        "datasets/shoes/sandals": photos[24:36],
    }
    for folder, files in groups.items():
        (home / folder).mkdir(parents=True)
        for source in files:
            image = Image.open(source).convert("RGB")
            image.thumbnail((48, 48))
            image.save(home / folder / source.name, quality=90)
    image = Image.open(photos[40]).convert("RGB")
    image.thumbnail((48, 48))
    image.save(home / "Pictures" / "new-shoe.jpg", quality=90)  # `train predict ... ~/Pictures/new-shoe.jpg`
    screenshots = home / "Pictures" / "Screenshots"  # `harvest watch ~/Pictures/Screenshots`
    screenshots.mkdir()
    for n, source in enumerate(photos[44:47]):
        image = Image.open(source).convert("RGB")
        image.thumbnail((64, 64))
        image.save(screenshots / f"Screenshot {n}.png")
    fixture_shop(home / "shop", photos[48:60])


def fixture_shop(shop: Path, photos: list[Path]) -> None:
    """`~/shop`, served by `python3 -m http.server` in the README: two pages of four images each (alt text =
    label), linked by `li.next a`, and `urls.csv` naming four more images."""
    shop.mkdir()
    names = []
    for n, source in enumerate(photos):
        image = Image.open(source).convert("RGB")
        image.thumbnail((48, 48))
        names.append(f"p{n:02d}.jpg")
        image.save(shop / names[-1], quality=90)
    labels = ["boots", "sandals"]
    for page, chunk in enumerate((names[:4], names[4:8])):
        images = "".join(f'<img src="{name}" alt="{labels[i % 2]}">' for i, name in enumerate(chunk))
        following = '<ul><li class="next"><a href="page2.html">next</a></li></ul>' if page == 0 else ""
        html = f"<html><body><h1>shop</h1>{images}{following}</body></html>"
        (shop / ("index.html" if page == 0 else "page2.html")).write_text(html)
    rows = [f"http://127.0.0.1:8765/{name},{labels[i % 2]}" for i, name in enumerate(names[8:])]
    (shop / "urls.csv").write_text("url,label\n" + "\n".join(rows) + "\n")


def test_runnable_marker_is_found() -> None:
    blocks = runnable_blocks()
    assert len(blocks) >= 2
    assert any("harvest init shoes" in block for block in blocks)
    assert any("curate export" in block for block in blocks)
    with pytest.raises(AssertionError, match="right before"):
        runnable_blocks(f"{MARKER}\n\nsome words\n```bash\nfalse\n```\n")


def test_readme_examples_run_as_written(tmp_path: Path, photo_files: list[Path]) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    fixture_home(home, photo_files)
    work.mkdir()
    (work / ".venv").symlink_to(REPO / ".venv")  # the README's `source .venv/bin/activate`, from the checkout
    script = "\n".join(["set -euo pipefail", *runnable_blocks()])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLEANER_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), COLUMNS="250", NO_COLOR="1")  # wide: table cells keep paths whole
    done = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    shoes = work / "shoes"
    assert (shoes / "gleaner.toml").is_file()
    assert re.search(r"boots\s*│\s*12\b", done.stdout) and re.search(r"nike\s*│\s*12\b", done.stdout), done.stdout
    exported = shoes / "export" / "v1"
    assert (exported / "manifest.csv").is_file()
    assert not (exported / "train").exists()  # --overwrite emptied the ImageFolder export first
    rows = (exported / "manifest.csv").read_text().splitlines()
    assert len(rows) == 1 + 36 and len(list((exported / "images").iterdir())) == 36
    runs = shoes / "runs" / "quick"
    for name in ("report.json", "report.html", "confusion_matrix.png", "model.ts"):
        assert (runs / name).is_file(), name
    assert "Pictures/new-shoe.jpg" in done.stdout and "Pictures/nike/000000000073.jpg" in done.stdout  # file, folder
    scraped = done.stdout.split("Scrape summary", 1)[1].split("URL list summary", 1)
    assert re.search(r"│\s+8 │.*│ 2 \(0 failed\) │", scraped[0]), scraped[0]  # both pages, all 8 images
    assert re.search(r"│\s+4 │", scraped[1].split("\n\n", 1)[0]), scraped[1]  # the 4 rows of urls.csv
    sweep = shoes / "runs" / "sweep"
    assert (sweep / "sweep.csv").is_file() and len((sweep / "trials.csv").read_text().splitlines()) == 1 + 2
