"""`harvest import` through the real console entry points: JSON contract, hostile input, labels, S3."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.hostile import make_hostile_corpus, valid_png
from tests.support.servers import S3Server

SUMMARY_KEYS = {"added", "duplicates", "rejected", "failed", "problems"}


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The whole of stdout must be exactly one JSON document."""
        return json.loads(self.stdout)


def cli(tool: str, *args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """Run `python -m <tool>.cli ARGS` as a user would (no GLEANER_* leaking in, 80-column stderr)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_") and k != "COLUMNS"}
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", f"{tool}.cli", *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def harvest(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> Result:
    return cli("harvest", *args, cwd=cwd, env=env)


def curate(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> Result:
    return cli("curate", *args, cwd=cwd, env=env)


def ok_json(result: Result) -> Any:
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.json()


def assert_summary(document: Any, **expected: int) -> None:
    assert set(document) >= SUMMARY_KEYS, document
    for key in ("added", "duplicates", "rejected", "failed"):
        assert type(document[key]) is int, (key, document)
    assert isinstance(document["problems"], list)
    assert all(
        set(p) >= {"item", "reason"} and all(isinstance(p[k], str) for k in ("item", "reason"))
        for p in document["problems"]
    )
    assert {k: document[k] for k in expected} == expected, document


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    info = ok_json(harvest("init", root, "--json", cwd=tmp_path))
    assert info["created"] is True
    assert Path(info["workspace"]) == root.resolve()
    return root


def copy_photos(photo_files: list[Path], folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in photo_files[start : start + count]:
        target = folder / path.name
        shutil.copyfile(path, target)
        copies.append(target)
    return copies


def test_init_is_safe_to_repeat(tmp_path: Path, ws: Path) -> None:
    again = ok_json(harvest("init", ws, "--json", cwd=tmp_path))
    assert again["created"] is False
    assert (ws / "gleaner.toml").is_file()


def test_import_photos_twice(tmp_path: Path, ws: Path, photos_dir: Path, photo_files: list[Path]) -> None:
    first = harvest("import", photos_dir, "--json", "-w", ws, cwd=tmp_path)
    assert first.stdout.lstrip().startswith("{") and first.stdout.rstrip().endswith("}")
    assert "importing" not in first.stdout  # the progress bar goes to stderr
    assert_summary(ok_json(first), added=len(photo_files), duplicates=0, rejected=0, failed=0)
    assert first.json()["problems"] == []

    second = ok_json(harvest("import", photos_dir, "--json", cwd=ws))  # found from the current folder
    assert_summary(second, added=0, duplicates=len(photo_files), rejected=0, failed=0)

    report = ok_json(curate("fsck", "--json", "-w", ws, cwd=tmp_path))
    assert report["ok"] is True
    assert (report["missing"], report["corrupt"], report["orphans"]) == ([], [], [])
    assert report["checked"] == len(photo_files)


def test_mixed_folder_of_good_and_hostile_files(tmp_path: Path, ws: Path, photo_files: list[Path]) -> None:
    folder = tmp_path / "mixed"
    good = copy_photos(photo_files, folder, 20)
    expected = make_hostile_corpus(folder / "junk")
    shutil.copyfile(photo_files[40], folder / ".hidden.jpg")  # hidden files are skipped
    (folder / ".cache").mkdir()
    shutil.copyfile(photo_files[41], folder / ".cache" / "thumb.jpg")

    result = harvest("import", folder, "--json", "-w", ws, cwd=tmp_path)
    document = ok_json(result)
    assert_summary(document, added=len(good), duplicates=0, rejected=len(expected), failed=0)
    reasons = {Path(p["item"]).name: p["reason"] for p in document["problems"]}
    assert set(reasons) == set(expected)
    for name, needle in expected.items():
        assert needle.lower() in reasons[name].lower(), (name, reasons[name])
    items = {p["item"] for p in document["problems"]}
    assert str((folder / "junk" / "dangling.jpg").absolute()) in items  # the path as the user named it

    report = ok_json(curate("fsck", "--json", "-w", ws, cwd=tmp_path))
    assert report["ok"] is True
    assert report["checked"] == len(good)


def test_human_readable_summary_lists_problems(tmp_path: Path, ws: Path, photo_files: list[Path]) -> None:
    folder = tmp_path / "few"
    copy_photos(photo_files, folder, 2)
    (folder / "notes.jpg").write_text("just text\n")
    result = harvest("import", folder, "-w", ws, cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Import summary" in result.stdout
    assert "notes.jpg" in result.stdout
    assert "text file" in result.stdout


def labels(ws: Path, cwd: Path) -> dict[str, int]:
    document = ok_json(curate("labels", "--json", "-w", ws, cwd=cwd))
    assert set(document) == {"labels", "unlabelled"}  # unlabelled: images without a label
    return dict(document["labels"])


def test_label_option(tmp_path: Path, ws: Path, photo_files: list[Path]) -> None:
    folder = tmp_path / "batch"
    copy_photos(photo_files, folder, 5)
    assert_summary(ok_json(harvest("import", folder, "--label", "cat", "--json", "-w", ws, cwd=tmp_path)), added=5)
    assert labels(ws, tmp_path) == {"cat": 5}


def test_labels_from_folders(tmp_path: Path, ws: Path, photo_files: list[Path]) -> None:
    root = tmp_path / "imagefolder"
    copy_photos(photo_files, root / "cat", 3)
    copy_photos(photo_files, root / "dog", 2, start=3)
    copy_photos(
        photo_files, root / "dog" / "puppy", 2, start=5
    )  # the first folder under the root names the label (ImageFolder)
    copy_photos(photo_files, root, 1, start=7)  # directly under the root: no folder label

    document = ok_json(harvest("import", root, "--labels-from-folders", "--json", "-w", ws, cwd=tmp_path))
    assert_summary(document, added=8, rejected=0)
    assert labels(ws, tmp_path) == {"cat": 3, "dog": 4}

    # --label is the fallback for files outside a class folder; existing labels are kept.
    document = ok_json(
        harvest("import", root, "--labels-from-folders", "--label", "misc", "--json", "-w", ws, cwd=tmp_path)
    )
    assert_summary(document, added=0, duplicates=8)
    assert labels(ws, tmp_path) == {"cat": 3, "dog": 4, "misc": 1}


def test_import_single_files_and_missing_paths(tmp_path: Path, ws: Path, photo_files: list[Path]) -> None:
    png = tmp_path / "small.png"
    png.write_bytes(valid_png(32, 32))
    document = ok_json(
        harvest("import", photo_files[0], png, tmp_path / "absent.jpg", "--json", "-w", ws, cwd=tmp_path)
    )
    assert_summary(document, added=2, rejected=1, failed=0)
    assert document["problems"][0]["item"].endswith("absent.jpg")
    assert "unreadable" in document["problems"][0]["reason"]


def test_workspace_not_found_is_one_clear_error(tmp_path: Path, photo_files: list[Path]) -> None:
    empty = tmp_path / "nowhere"
    empty.mkdir()
    for result in (
        harvest("import", photo_files[0], "--json", cwd=empty),
        harvest("import", photo_files[0], "--json", "-w", empty, cwd=tmp_path),
        curate("labels", "--json", cwd=empty),
    ):
        assert result.code != 0
        assert "harvest init" in result.json()["error"]  # --json: the error is the one document on stdout
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith("error:"), result.stderr
        assert "harvest init" in " ".join(result.stderr.split())
    assert not (empty / "gleaner.toml").exists()


def test_workspace_not_found_error_fits_on_one_line(tmp_path: Path, photo_files: list[Path]) -> None:
    empty = tmp_path / "nowhere"
    empty.mkdir()
    result = harvest("import", photo_files[0], "--json", cwd=empty)
    assert result.code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.s3
def test_import_into_s3_is_readable_with_plain_boto3(
    tmp_path: Path, s3_server: S3Server, photo_files: list[Path]
) -> None:
    bucket = f"acc-{uuid.uuid4().hex[:12]}"
    env = s3_server.env()
    root = tmp_path / "s3ws"
    info = ok_json(
        harvest(
            "init",
            root,
            "--store",
            f"s3://{bucket}/prefix",
            "--endpoint-url",
            s3_server.endpoint_url,
            "--addressing-style",
            "path",
            "--json",
            cwd=tmp_path,
            env=env,
        )
    )
    assert info["store"] == f"s3://{bucket}/prefix"
    folder = tmp_path / "photos"
    copies = copy_photos(photo_files, folder, 12, start=100)

    document = ok_json(harvest("import", folder, "--json", "--workers", "2", "-w", root, cwd=tmp_path, env=env))
    assert_summary(document, added=12, duplicates=0, rejected=0, failed=0)

    client = s3_server.client()
    for path in copies:
        sha = sha256_of(path)
        body = client.get_object(Bucket=bucket, Key=f"prefix/images/{sha[:2]}/{sha}.jpg")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == sha
        assert body == path.read_bytes()
    listed = client.list_objects_v2(Bucket=bucket, Prefix="prefix/images/")
    assert listed["KeyCount"] == 12
    assert not (root / "store").exists()  # nothing went to a local folder by mistake

    again = ok_json(harvest("import", folder, "--json", "--workers", "1", "-w", root, cwd=tmp_path, env=env))
    assert_summary(again, added=0, duplicates=12)
    assert ok_json(curate("fsck", "--json", "-w", root, cwd=tmp_path, env=env))["ok"] is True
