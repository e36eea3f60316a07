"""The CLI contract of `curate` on what a new user types (issue 15): exports that would mix snapshots are
refused, option values that cannot be right are refused, paths that cannot be written are one clear line (with
`{"error": ...}` on stdout under --json), and unlabelled images are named "(unlabelled)", never Python's None."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from curate.cli import app
from curate.splits import parse_ratios
from harvest.importer import import_paths
from storage.workspace import Workspace
from tests.curate.test_dedupe import without_ingest_check

RUNNER = CliRunner()


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def curate(ws: Path, *args: str | Path) -> Result:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GLEANER_")}
    result = RUNNER.invoke(app, [*map(str, args), "-w", str(ws)], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("uncaught exception (a user would see a traceback)") from result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def ok(ws: Path, *args: str | Path) -> Any:
    result = curate(ws, *args, "--json")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def refused(ws: Path, *args: str | Path, needle: str, json_output: bool = True) -> str:
    """A user error: exit 1, one line on stderr naming the problem; with --json, `{"error": that line}` on stdout."""
    result = curate(ws, *args, *(["--json"] if json_output else []))
    assert result.code == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0], lines
    if json_output:
        assert json.loads(result.stdout) == {"error": lines[0].removeprefix("error: ")}
    else:
        assert result.stdout == ""
    return lines[0]


@pytest.fixture
def dataset(workspace: Workspace, photo_files: list[Path], tmp_path: Path) -> Workspace:
    """12 photos in two labels, and a mirrored copy of the first cat that has no label."""
    workspace = without_ingest_check(workspace)
    data = tmp_path / "data"
    for index, photo in enumerate(photo_files[:12]):
        target = data / ("cats" if index % 2 else "dogs") / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(photo.read_bytes())
    import_paths(workspace, [data], labels_from_folders=True, workers=1)
    loose = tmp_path / "loose"
    loose.mkdir()
    ImageOps.mirror(Image.open(photo_files[1]).convert("RGB")).save(loose / "copy.jpg", quality=90)
    import_paths(workspace, [loose], workers=1)
    return workspace


def exported_images(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def test_export_refuses_a_non_empty_folder_unless_overwrite(dataset: Workspace, tmp_path: Path) -> None:
    ws, out = dataset.root, tmp_path / "export"
    first = ok(ws, "snapshot", "--name", "v1", "--threshold", "0")
    assert ok(ws, "export", "--format", "imagefolder", "--out", out, "--snapshot", "v1")["images"] == 12
    # a second snapshot with two images fewer and other splits
    listing = ok(ws, "label", "history", "--limit", "200")["events"]
    two = [e["sha256"] for e in listing if e["sha256"]][:2]
    ok(ws, "label", "set", "--clear", *two)
    second = ok(ws, "snapshot", "--name", "v2", "--threshold", "0", "--seed", "3")
    assert second["image_count"] == first["image_count"] - 2 == 10
    before = exported_images(out)
    refused(ws, "export", "--format", "imagefolder", "--out", out, "--snapshot", "v2", needle="is not empty")
    assert exported_images(out) == before  # nothing written, nothing removed
    done = ok(ws, "export", "--format", "imagefolder", "--out", out, "--snapshot", "v2", "--overwrite")
    assert done["images"] == 10
    assert len(exported_images(out)) == 10  # only v2: nothing of v1 left behind
    assert Counter(p.parent.parent.name for p in exported_images(out)) == Counter(second["meta"]["splits"])
    # --overwrite never empties the workspace (or a folder holding it)
    refused(ws, "export", "--format", "csv", "--out", ws, "--overwrite", needle="holds")
    assert (ws / "gleaner.toml").is_file()


def test_export_paths_that_cannot_be_written_are_one_line(dataset: Workspace, tmp_path: Path) -> None:
    ws = dataset.root
    ok(ws, "snapshot", "--name", "v1", "--threshold", "0")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    refused(ws, "export", "--format", "csv", "--out", a_file, needle="is a file, not a folder")
    assert a_file.read_text() == "mine\n"
    refused(ws, "export", "--format", "csv", "--out", "/proc/nope", needle="/proc/nope")
    refused(ws, "export", "--format", "csv", "--out", "/proc/nope", needle="/proc/nope", json_output=False)


def test_dedupe_refuses_thresholds_and_html_paths_that_cannot_work(dataset: Workspace) -> None:
    ws = dataset.root
    for value in ("500", "-3", "129"):
        refused(ws, "dedupe", "--threshold", value, needle="--threshold must be a distance from 0 to 128")
        refused(ws, "snapshot", "--threshold", value, needle="--threshold must be")
    refused(ws, "dedupe", "--html", "/proc/d.html", needle="cannot write /proc/d.html")
    assert ok(ws, "dedupe", "--threshold", "128")["clusters"]  # the bounds themselves are accepted


def test_snapshot_ratios_must_add_up(dataset: Workspace) -> None:
    ws = dataset.root
    refused(ws, "snapshot", "--ratios", "80/10/20", needle="must add up to 100")
    assert ok(ws, "snapshots") == {"snapshots": []}  # nothing frozen
    assert parse_ratios("0.7,0.15,0.15") == pytest.approx((0.7, 0.15, 0.15))
    assert parse_ratios("60/20/20") == pytest.approx((0.6, 0.2, 0.2))
    with pytest.raises(ValueError, match="add up"):
        parse_ratios("8/1/1")


def test_review_port_out_of_range_is_one_line(dataset: Workspace) -> None:
    refused(dataset.root, "review", "--port", "99999", "--no-open", needle="--port must be 0-65535", json_output=False)
    refused(dataset.root, "review", "--port", "-1", "--no-open", needle="--port must be", json_output=False)


def test_unlabelled_images_are_named_not_none(dataset: Workspace) -> None:
    ws = dataset.root
    table = curate(ws, "dedupe")
    assert table.code == 0, table.stderr
    assert "(unlabelled)" in table.stdout and "None" not in table.stdout, table.stdout
    document = ok(ws, "dedupe")
    [cluster] = [c for c in document["clusters"] if len(c["members"]) == 2]
    page = Path(document["html"]).read_text(encoding="utf-8")
    assert "(unlabelled)" in page and "· None<br>" not in page and "None" not in page.split("<h1>", 1)[1]
    assert cluster["keeper"]


def test_version(dataset: Workspace) -> None:
    result = RUNNER.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("curate ") and result.stdout.split()[1][0].isdigit()


def test_usage_errors_honour_json_in_a_real_process(workspace: Workspace) -> None:
    """A value click refuses (not a number, a missing option) is a user error too: with --json, stdout holds
    `{"error": ...}` and stderr one line; without --json, click's usage box as before."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "curate.cli", *args, "-w", str(workspace.root)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    for args, needle in (
        (["dedupe", "--threshold", "abc"], "Invalid value for '--threshold'"),
        (["label", "merge", "cat"], "Missing option '--into'"),
    ):
        done = run(*args, "--json")
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], done.stderr
        assert json.loads(done.stdout) == {"error": lines[0].removeprefix("error: ")}
    plain = run("dedupe", "--threshold", "abc")
    assert plain.returncode == 2 and plain.stdout == "" and "Usage: " in plain.stderr
    assert json.loads(run("labels", "--json").stdout) == {"labels": {}, "unlabelled": 0}
