"""`curate dedupe` on real photos and their transformed copies, and on imagededup's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from sqlalchemy import select
from typer.testing import CliRunner

from curate.cli import app as curate_app
from curate.dedupe.clusters import image_groups, load_hash_rows, pair_distances
from harvest.importer import import_paths
from storage.catalog.schema import images
from storage.hashes.compare import HashArrays, distance
from storage.hashes.compute import ImageHashes
from storage.workspace import Workspace, open_workspace


def run(workspace: Workspace, *args: str) -> dict:
    result = CliRunner().invoke(curate_app, [*args, "--json", "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def screenshot(photo: Image.Image) -> Image.Image:
    """The photo scaled into an application window: grey frame, title bar with dark 'text', margins."""
    canvas = Image.new("RGB", (photo.width + 120, photo.height + 140), (236, 236, 236))
    bar = Image.new("RGB", (canvas.width, 34), (60, 63, 70))
    for x in range(40, 200, 9):
        bar.paste((220, 220, 220), (x, 12, x + 5, 22))
    canvas.paste(bar, (0, 0))
    canvas.paste(photo.resize((photo.width - 20, photo.height - 20)), (70, 90))
    return canvas


def make_copies(photo_files: list[Path], out: Path) -> dict[str, list[Path]]:
    """Per original: a mirrored copy, a 90° turn, a 5% crop and a screenshot, labelled like the original."""
    groups: dict[str, list[Path]] = {}
    for index, source in enumerate(photo_files):
        label = "cats" if index % 2 else "dogs"
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        base = Image.open(source).convert("RGB")
        w, h = base.size
        variants = {
            "orig": base,
            "mirror": ImageOps.mirror(base),
            "turn": base.transpose(Image.Transpose.ROTATE_90),
            "crop": base.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
            "shot": screenshot(base),
        }
        paths = []
        for name, image in variants.items():
            path = folder / f"{source.stem}-{name}.{'png' if name == 'shot' else 'jpg'}"
            image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)
            paths.append(path)
        groups[source.stem] = paths
    return groups


def without_ingest_check(workspace: Workspace) -> Workspace:
    """A workspace whose ingest does not flag near-duplicates, so that `curate dedupe` sees them all."""
    config = workspace.root / "gleaner.toml"
    config.write_text(config.read_text().replace("min_side = 8", "min_side = 8\nnear_duplicates = false"))
    return open_workspace(workspace.root)


@pytest.fixture
def copies_workspace(workspace: Workspace, photo_files: list[Path], tmp_path: Path) -> tuple[Workspace, dict]:
    workspace = without_ingest_check(workspace)
    groups = make_copies(photo_files[:12], tmp_path / "copies")
    result = import_paths(workspace, [tmp_path / "copies"], labels_from_folders=True, workers=1)
    assert result.summary.added == 12 * 5
    return workspace, groups


def test_transformed_copies_group_with_their_originals(copies_workspace: tuple[Workspace, dict]) -> None:
    workspace, groups = copies_workspace
    report = run(workspace, "dedupe")
    found = {frozenset(Path(m["sources"][0]).stem.rsplit("-", 1)[0] for m in c["members"]) for c in report["clusters"]}
    assert found == {frozenset([stem]) for stem in groups}, found  # one group per original, nothing mixed
    kinds = [{Path(m["sources"][0]).stem.rsplit("-", 1)[1] for m in c["members"]} for c in report["clusters"]]
    assert all({"orig", "mirror", "turn", "crop"} <= found_kinds for found_kinds in kinds), kinds
    # Groups are stars around their keeper (no chaining): one of these 12 screenshots is trimmed badly enough at
    # hash time to be out of its original's reach (it was grouped through its crop before).
    assert sum("shot" in found_kinds for found_kinds in kinds) >= 11
    assert all(m["distance"] <= report["threshold"] for c in report["clusters"] for m in c["members"])
    for cluster in report["clusters"]:
        keeper = next(m for m in cluster["members"] if m["sha256"] == cluster["keeper"])
        # the photo, not its screenshot: that has more pixels, but less of them are the photo
        assert not Path(keeper["sources"][0]).stem.endswith("-shot")
        assert cluster["conflict"] is False
    assert Path(report["html"]).read_text().count("<figure") == sum(len(c["members"]) for c in report["clusters"])


def test_apply_marks_non_keepers_and_undo_restores(copies_workspace: tuple[Workspace, dict]) -> None:
    workspace, _ = copies_workspace
    before = run(workspace, "labels")["labels"]
    applied = run(workspace, "dedupe", "--apply")
    assert applied["marked"] == applied["duplicates"] >= 12 * 4 - 1
    with workspace.catalog.read() as conn:
        marked = conn.execute(select(images.c.sha256, images.c.duplicate_of)).all()
    keepers = {c["keeper"] for c in applied["clusters"]}
    assert {dup for _, dup in marked if dup} == keepers
    assert sum(run(workspace, "labels")["labels"].values()) == 12 * 5 - applied["marked"]  # duplicates do not count
    assert run(workspace, "dedupe", "--apply")["marked"] == 0  # idempotent
    assert run(workspace, "dedupe", "--undo")["cleared"] == applied["marked"]
    assert run(workspace, "labels")["labels"] == before


def test_ingest_flags_near_duplicates_of_catalogued_images(
    workspace: Workspace, photo_files: list[Path], tmp_path: Path
) -> None:
    groups = make_copies(photo_files[:3], tmp_path / "copies")
    originals = [paths[0] for paths in groups.values()]
    first = import_paths(workspace, originals, workers=1).summary
    assert (first.added, first.duplicates) == (3, 0)
    # mirror, turn and crop (recall 1.0 in bench/dedupe_eval.py; screenshots are measured there, at 0.99)
    copies = [p for paths in groups.values() for p in paths[1:4]]
    second = import_paths(workspace, copies, workers=2).summary
    # every new image counts as added; those set aside as verified near-duplicates are counted among them
    assert (second.added, second.duplicates, second.near_duplicates) == (9, 0, 9)
    with workspace.catalog.read() as conn:
        marks = dict(conn.execute(select(images.c.sha256, images.c.duplicate_of)).all())
    keepers = {sha for sha, dup in marks.items() if dup is None}
    assert len(keepers) == 3 and {dup for dup in marks.values() if dup} == keepers
    unrelated = import_paths(workspace, photo_files[5:8], workers=1).summary
    assert (unrelated.added, unrelated.near_duplicates) == (3, 0)


def test_label_conflicts_are_flagged(workspace: Workspace, photo_files: list[Path], tmp_path: Path) -> None:
    workspace = without_ingest_check(workspace)
    base = Image.open(photo_files[0]).convert("RGB")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    base.save(tmp_path / "a" / "x.jpg", quality=92)
    ImageOps.mirror(base).save(tmp_path / "b" / "y.jpg", quality=92)
    import_paths(workspace, [tmp_path], labels_from_folders=True, workers=1)
    report = run(workspace, "dedupe")
    assert len(report["clusters"]) == 1 and report["clusters"][0]["conflict"] is True
    assert report["conflicts"] == 1


def test_imagededup_ground_truth(workspace: Workspace, near_duplicates_dir: Path) -> None:
    workspace = without_ingest_check(workspace)
    mixed = near_duplicates_dir / "mixed_images"
    result = import_paths(workspace, [mixed, near_duplicates_dir / "ukbench00120_gray.jpg"], workers=1)
    assert [p["item"] for p in result.summary.problems] == [str(mixed / "ukbench09268_corrupt.jpg")]
    report = run(workspace, "dedupe")
    names = [sorted(Path(m["sources"][0]).name for m in c["members"]) for c in report["clusters"]]
    assert names == [["ukbench00120.jpg", "ukbench00120_gray.jpg", "ukbench00120_hflip.jpg", "ukbench00120_resize.jpg"]]


def test_vectorised_pair_distance_equals_the_reference(copies_workspace: tuple[Workspace, dict]) -> None:
    workspace, _ = copies_workspace
    shas, arrays = load_hash_rows(workspace)
    with workspace.catalog.read() as conn:
        blobs = {sha: blob for sha, blob in conn.execute(select(images.c.sha256, images.c.hash_variants))}
    hashes = [ImageHashes.from_blob(blobs[sha]) for sha in shas]
    rng = np.random.default_rng(0)
    left, right = rng.integers(0, len(shas), 200), rng.integers(0, len(shas), 200)
    expected = [distance(hashes[i], hashes[j]) for i, j in zip(left, right, strict=True)]
    assert pair_distances(arrays, left, right).tolist() == expected
    groups = image_groups(shas, HashArrays.from_hashes(hashes))
    assert len(set(groups.values())) == 12


def test_tiny_images_need_a_stricter_threshold() -> None:
    from storage.hashes.compare import SMALL_THRESHOLD, pair_threshold

    assert pair_threshold(640, 480) == 22
    assert pair_threshold(28, 480) == pair_threshold(28, 28) == SMALL_THRESHOLD
    assert pair_threshold(28, 28, threshold=4) == 4
