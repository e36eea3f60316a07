"""The CLI contract of `train` on what a new user types (issue 15): `train report` rebuilds any missing report
file, paths that cannot be written and files that are not images are one clear line naming the path, one bad
file never stops a batch of predictions, and the help names every augmentation there is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.train.conftest import invoke
from train.augment import augmentation_names
from train.cli import app as train_app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def call(*args: str | Path, columns: int = 80) -> Any:
    result = CliRunner().invoke(train_app, [str(a) for a in args], env={"COLUMNS": str(columns)})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("uncaught exception (a user would see a traceback)") from result.exception
    return result


def refused(*args: str | Path, needle: str) -> str:
    """Exit 1, one `error:` line on stderr, and the same message as `{"error": ...}` on stdout (--json)."""
    result = call(*args, "--json")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert needle in lines[0], lines
    assert json.loads(result.stdout) == {"error": lines[0].removeprefix("error: ")}
    return lines[0]


def test_report_rebuilds_any_missing_file(finished_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = finished_run
    written = (out / "report.json").read_bytes()
    gone = ["report.html", "confusion_matrix.png", "curves.png", "confusion.csv"]
    for name in gone:
        (out / name).unlink()
    document = invoke(train_app, "report", out, "--json")
    for name in gone:
        assert (out / name).is_file(), name
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "report.json").read_bytes() == written  # the report itself is kept as the run wrote it
    assert document == json.loads(written)
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 2  # both plots inlined again
    (out / "report.html").unlink()  # the table output too, not only --json
    assert call("report", out).exit_code == 0 and (out / "report.html").is_file()


def test_export_to_a_path_that_cannot_be_written_is_one_line(finished_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = finished_run
    refused("export", out, "--out", "/proc/x.ts", needle="cannot write /proc/x.ts")
    refused("export", out, "--out", out, needle=f"cannot write {out}")  # a folder where the file should go


def test_predict_reports_bad_files_and_predicts_the_rest(
    finished_run: tuple[Path, dict[str, Any]], digits_dir: Path, tmp_path: Path
) -> None:
    out, _ = finished_run
    note = tmp_path / "note.txt"
    note.write_text("not a picture\n")
    folder = tmp_path / "pictures"
    folder.mkdir()
    for source in sorted((digits_dir / "digit3").glob("*.png"))[:2]:
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "README").write_text("about these pictures\n")
    (folder / "broken.png").write_bytes((digits_dir / "digit3").glob("*.png").__next__().read_bytes()[:40])
    single = sorted((digits_dir / "digit7").glob("*.png"))[0]
    args = ["predict", out, note, single, folder, tmp_path / "absent.png"]
    result = call(*args, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [Path(p["image"]).name for p in document["predictions"]] == [single.name, *sorted(
        p.name for p in folder.glob("*.png") if p.name != "broken.png")]  # fmt: skip
    problems = {Path(p["item"]).name: p["reason"] for p in document["problems"]}
    assert set(problems) == {"note.txt", "README", "broken.png", "absent.png"}, problems
    assert problems["note.txt"].startswith("not an image") and problems["absent.png"] == "no such file"
    assert not any(re.search(r"BytesIO|0x[0-9a-f]{6}|Errno", reason) for reason in problems.values()), problems
    text = call(*args, columns=200)
    assert text.exit_code == 0 and "Traceback" not in text.output
    assert f"skipped {note}: not an image" in text.stderr and "digit" in text.stdout
    refused("predict", out, note, needle=f"{note}: not an image")  # nothing left to predict: an error
    empty = tmp_path / "empty"
    empty.mkdir()
    refused("predict", out, empty, needle="folder holds no files")


def test_version_and_help_name_every_augmentation() -> None:
    version = call("--version")
    assert version.exit_code == 0 and re.fullmatch(r"train \d+\.\d+\S*\n", version.stdout), version.stdout
    help_text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", call("run", "--help", columns=400).stdout).split())
    row = next(line for line in README.splitlines() if line.startswith("| `--augment LIST`"))
    for name in augmentation_names():
        assert re.search(rf"\b{re.escape(name)}\b", help_text), f"train run --help does not name {name}"
        assert f"`{name}`" in row, f"the README's --augment row does not name {name}"
    error = refused("run", "--augment", "flip,wobble", needle="unknown augmentation 'wobble'")
    assert all(name in error for name in augmentation_names())
