"""Snapshots are leak-free, stratified and deterministic; every export format loads with its usual reader."""

from __future__ import annotations

import csv
import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import webdataset
from torchvision.datasets import ImageFolder
from typer.testing import CliRunner

from curate.cli import app as curate_app
from curate.dedupe.clusters import load_hash_rows, pair_distances
from curate.snapshot import load_manifest
from curate.splits import SplitItem, assign_splits, parse_ratios
from harvest.importer import import_paths
from storage.hashes.compare import DEFAULT_THRESHOLD
from storage.workspace import Workspace
from tests.curate.test_dedupe import make_copies, without_ingest_check


def run(workspace: Workspace, *args: str) -> dict:
    result = CliRunner().invoke(curate_app, [*args, "--json", "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def dataset(workspace: Workspace, photo_files: list[Path], tmp_path: Path) -> Workspace:
    """40 distinct photos in two labels, plus 10 of them with 4 transformed copies each."""
    workspace = without_ingest_check(workspace)
    make_copies(photo_files[:10], tmp_path / "data")
    singles = tmp_path / "data"
    for index, photo in enumerate(photo_files[10:40]):
        target = singles / ("cats" if index % 2 else "dogs") / photo.name
        target.write_bytes(photo.read_bytes())
    import_paths(workspace, [singles], labels_from_folders=True, workers=1)
    return workspace


def test_snapshot_never_splits_a_near_duplicate_group(dataset: Workspace) -> None:
    info = run(dataset, "snapshot", "--name", "v1", "--ratios", "60/20/20")
    assert info["image_count"] == 10 * 5 + 30
    _, entries = load_manifest(dataset, "v1")
    split_of = {e.sha256: e.split for e in entries}
    shas, arrays = load_hash_rows(dataset, list(split_of))
    index = {sha: k for k, sha in enumerate(shas)}
    pairs = list(combinations(shas, 2))
    left = [index[a] for a, _ in pairs]
    right = [index[b] for _, b in pairs]
    close = pair_distances(arrays, np.array(left), np.array(right)) <= DEFAULT_THRESHOLD
    crossing = [(a, b) for (a, b), near in zip(pairs, close, strict=True) if near and split_of[a] != split_of[b]]
    assert crossing == []
    assert sum(close) >= 10 * 4  # the copies really are near-duplicates of their originals
    for label in ("cats", "dogs"):
        counts = Counter(e.split for e in entries if e.label == label)
        assert set(counts) == {"train", "val", "test"}  # stratified: every label in every split


def test_snapshots_are_deterministic_and_immutable(dataset: Workspace) -> None:
    run(dataset, "snapshot", "--name", "a", "--seed", "7")
    run(dataset, "snapshot", "--name", "b", "--seed", "7")
    _, first = load_manifest(dataset, "a")
    _, second = load_manifest(dataset, "b")
    assert first == second
    result = CliRunner().invoke(curate_app, ["snapshot", "--name", "a", "-w", str(dataset.root)])
    assert result.exit_code == 1 and "already exists" in result.stderr
    listed = run(dataset, "snapshots")["snapshots"]
    assert [s["name"] for s in listed] == ["a", "b"]


def test_exports_load_with_imagefolder_and_webdataset(dataset: Workspace, tmp_path: Path) -> None:
    run(dataset, "snapshot", "--name", "v1")
    _, entries = load_manifest(dataset, "v1")
    by_split = Counter(e.split for e in entries)

    run(dataset, "export", "--format", "imagefolder", "--out", str(tmp_path / "if"))
    for split, count in by_split.items():
        folder = ImageFolder(str(tmp_path / "if" / split))
        assert len(folder) == count and set(folder.classes) <= {"cats", "dogs"}
        image, _label = folder[0]
        assert image.size[0] > 0

    shards = run(dataset, "export", "--format", "webdataset", "--out", str(tmp_path / "wds"))
    assert shards["shards"] >= 3
    train = sorted(str(p) for p in (tmp_path / "wds" / "train").glob("*.tar"))
    samples = list(webdataset.WebDataset(train, shardshuffle=False).decode("pil").to_tuple("__key__", "cls", "json"))
    assert len(samples) == by_split["train"]
    classes = (tmp_path / "wds" / "classes.txt").read_text().split()
    assert all(classes[int(cls)] == meta["label"] for _key, cls, meta in samples)

    run(dataset, "export", "--format", "csv", "--out", str(tmp_path / "csv"))
    with open(tmp_path / "csv" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(entries) and all((tmp_path / "csv" / r["path"]).is_file() for r in rows)
    run(dataset, "export", "--format", "jsonl", "--out", str(tmp_path / "jsonl"))
    lines = (tmp_path / "jsonl" / "manifest.jsonl").read_text().splitlines()
    assert {json.loads(line)["sha256"] for line in lines} == {e.sha256 for e in entries}


def test_unknown_format_and_missing_snapshot_are_clear_errors(workspace: Workspace, tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(curate_app, ["export", "--format", "zip", "--out", str(tmp_path), "-w", str(workspace.root)])
    assert bad.exit_code == 1 and "unknown export format" in bad.stderr
    none = runner.invoke(curate_app, ["export", "--format", "csv", "--out", str(tmp_path), "-w", str(workspace.root)])
    assert none.exit_code == 1 and "no snapshots yet" in none.stderr


def test_split_assignment_rules() -> None:
    assert parse_ratios("80/10/10") == pytest.approx((0.8, 0.1, 0.1))
    with pytest.raises(ValueError):
        parse_ratios("50/50")
    items = [SplitItem(f"{i:04d}", "a" if i % 3 else "b", f"g{i // 4}") for i in range(400)]
    splits = assign_splits(items, (0.8, 0.1, 0.1), seed=1)
    for group in {item.group for item in items}:
        assert len({splits[item.sha256] for item in items if item.group == group}) == 1
    counts = Counter(splits.values())
    assert abs(counts["train"] - 320) <= 8 and abs(counts["val"] - 40) <= 8
    assert assign_splits(items, (0.8, 0.1, 0.1), seed=1) == splits
    assert assign_splits(items, (0.8, 0.1, 0.1), seed=2) != splits
