"""`curate check` on real photos plus copies made blurry, dark, bright, blank, stretched and tiny."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter
from sqlalchemy import select
from typer.testing import CliRunner

from curate.cli import app as curate_app
from curate.quality import QualityMetrics, Thresholds, dataset_flags, image_flags, measure
from harvest.importer import import_paths
from storage.catalog import image_sources, iter_images
from storage.catalog.schema import quality_flags
from storage.workspace import Workspace


def _variants(photo: Path, out: Path) -> dict[str, Path]:
    out.mkdir()
    base = Image.open(photo).convert("RGB")
    made = {
        "blurry": base.filter(ImageFilter.GaussianBlur(6)),
        "dark": ImageEnhance.Brightness(base).enhance(0.12),
        "bright": Image.eval(base, lambda v: 235 + v // 20),
        "low_information": Image.new("RGB", base.size, (120, 130, 140)),
        "odd_aspect_ratio": base.resize((base.width, max(16, base.width // 5))),
        "too_small": base.resize((24, 20)),
    }
    paths = {}
    for name, image in made.items():
        paths[name] = out / f"{name}.png"
        image.save(paths[name])
    return paths


def test_each_defect_earns_its_flag_and_good_photos_stay_clean(
    workspace: Workspace, photo_files: list[Path], tmp_path: Path
) -> None:
    defects = _variants(photo_files[3], tmp_path / "bad")
    good = photo_files[:24]
    import_paths(workspace, [*good, *defects.values()], workers=1)
    result = CliRunner().invoke(curate_app, ["check", "--json", "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_sha = {entry["sha256"]: set(entry["flags"]) for entry in report["flagged"]}
    with workspace.catalog.read() as conn:
        uri_of = {row["sha256"]: image_sources(conn, row["sha256"])[0]["uri"] for row in iter_images(conn)}
        stored = {(sha, flag) for sha, flag in conn.execute(select(quality_flags.c.sha256, quality_flags.c.flag))}
    flagged_names = {Path(uri_of[sha]).stem: flags for sha, flags in by_sha.items()}
    for name in defects:
        assert name in flagged_names.get(name, set()), f"{name}: got {flagged_names.get(name)}"
    clean_photos = [p for p in good if p.stem not in flagged_names]
    assert len(clean_photos) >= 20, flagged_names  # real photos are mostly unflagged
    assert stored == {(sha, flag) for sha, flags in by_sha.items() for flag in flags}
    assert report["measured"] == len(good) + len(defects)

    again = json.loads(CliRunner().invoke(curate_app, ["check", "--json", "-w", str(workspace.root)]).stdout)
    assert again["measured"] == 0 and again["flagged"] == report["flagged"]  # metrics are kept, flags recomputed


def test_dataset_flags_mark_greyscale_only_among_colour() -> None:
    def metrics(gray: bool, side: int = 100) -> QualityMetrics:
        return QualityMetrics(side, side, 500.0, 30.0, 200.0, 7.0, gray)

    mostly_colour = {"a": metrics(False), "b": metrics(False), "c": metrics(True)}
    assert set(dataset_flags(mostly_colour)["c"]) == {"grayscale"}
    mostly_grey = {"a": metrics(True), "b": metrics(True), "c": metrics(False)}
    assert all("grayscale" not in flags for flags in dataset_flags(mostly_grey).values())
    sizes = {str(i): metrics(False) for i in range(9)} | {"huge": metrics(False, 1000)}
    assert set(dataset_flags(sizes)["huge"]) == {"odd_size"}


def test_measure_is_resolution_independent(photo_files: list[Path]) -> None:
    image = Image.open(photo_files[0]).convert("RGB")
    big = image.resize((image.width * 3, image.height * 3))
    assert image_flags(measure(image)) == image_flags(measure(big, big.width, big.height)) == {}
    assert image_flags(measure(image), Thresholds(blurry=1e9)).keys() == {"blurry"}
