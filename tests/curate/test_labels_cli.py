"""`curate labels` and `curate label add|rename|merge|set|history` through the real CLI, with --json."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from curate.cli import app
from storage.catalog import SourceInfo
from storage.ingest import IngestItem, Ingestor, source_for_path
from storage.workspace import init_workspace
from tests.hostile import valid_png


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


RUNNER = CliRunner()


def curate(ws: Path, *args: str | Path, env: dict[str, str] | None = None) -> Result:
    """`curate ARGS -w WS`, in process (fast), from the folder holding the workspace, no GLEANER_* leaking in."""
    environment: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GLEANER_")}
    environment.update(env or {})
    with contextlib.chdir(ws.parent):
        result = RUNNER.invoke(app, [*map(str, args), "-w", str(ws)], env=environment)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("uncaught exception (a user would see a traceback)") from result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def curate_process(ws: Path, *args: str) -> Result:
    """The same through a real process, as scripts run it: 80-column stderr that is not a terminal."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_") and k != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "curate.cli", *args, "-w", str(ws)],
        cwd=ws.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def ok(ws: Path, *args: str | Path, env: dict[str, str] | None = None) -> Any:
    result = curate(ws, *args, "--json", env=env)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.json()


def fails(ws: Path, *args: str | Path, needle: str) -> str:
    """A user error: non-zero exit, one line on stderr that says what is wrong, and (--json) the same message as
    `{"error": ...}`, the only document on stdout."""
    result = curate(ws, *args, "--json")
    assert result.code != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines
    assert needle in lines[0], lines
    assert json.loads(result.stdout) == {"error": lines[0].removeprefix("error: ")}
    return lines[0]


def labels(ws: Path) -> dict[str, int]:
    document = ok(ws, "labels")
    assert set(document) == {"labels", "unlabelled"}
    return dict(document["labels"])


@functools.cache
def colliding_pngs() -> tuple[bytes, bytes]:
    """Two valid PNGs whose sha256 digests share their first 6 hex digits (a birthday search, ~5,000 tries)."""
    seen: dict[str, bytes] = {}
    counter = 0
    while True:
        data = valid_png(16, 16, text=str(counter).encode())
        prefix = hashlib.sha256(data).hexdigest()[:6]
        if prefix in seen:
            return seen[prefix], data
        seen[prefix] = data
        counter += 1


@dataclass(frozen=True)
class Catalogued:
    ws: Path
    cats: list[str]  # sha256 of the images labelled cat
    dogs: list[str]
    twins: list[str]  # two unlabelled images whose digests share a 6-digit prefix


@pytest.fixture
def catalogued(tmp_path: Path, photo_files: list[Path]) -> Catalogued:
    workspace, _ = init_workspace(tmp_path / "ws")
    ingest = Ingestor.for_workspace(workspace)
    shas: dict[str, list[str]] = {"cat": [], "dog": [], "": []}
    for label, paths in (("cat", photo_files[:3]), ("dog", photo_files[3:5])):
        for path in paths:
            outcome = ingest.ingest(IngestItem(source=source_for_path(path), label=label, path=str(path)))
            assert outcome.status == "added" and outcome.sha256
            shas[label].append(outcome.sha256)
    for i, data in enumerate(colliding_pngs()):
        outcome = ingest.ingest(IngestItem(source=SourceInfo(kind="url", uri=f"http://x.invalid/{i}.png"), data=data))
        # same pixels, other bytes, but 16 px: too small for the ingest-time near-duplicate check
        assert outcome.status == "added" and outcome.sha256
        shas[""].append(outcome.sha256)
    workspace.close()
    return Catalogued(workspace.root, shas["cat"], shas["dog"], shas[""])


def test_labels_counts_current_labels(catalogued: Catalogued) -> None:
    assert labels(catalogued.ws) == {"cat": 3, "dog": 2}


def test_label_add(catalogued: Catalogued) -> None:
    assert ok(catalogued.ws, "label", "add", "bird", "fish") == {"created": ["bird", "fish"]}
    assert ok(catalogued.ws, "label", "add", "bird", "cat", "owl") == {"created": ["owl"]}
    assert labels(catalogued.ws) == {"bird": 0, "cat": 3, "dog": 2, "fish": 0, "owl": 0}
    fails(catalogued.ws, "label", "add", "a/b", needle="invalid label name")


def test_label_rename(catalogued: Catalogued) -> None:
    assert ok(catalogued.ws, "label", "rename", "cat", "feline") == {"renamed": "cat", "to": "feline", "images": 3}
    assert labels(catalogued.ws) == {"dog": 2, "feline": 3}
    fails(catalogued.ws, "label", "rename", "feline", "dog", needle="already exists")
    fails(catalogued.ws, "label", "rename", "cat", "kitty", needle="no label named 'cat'")
    assert labels(catalogued.ws) == {"dog": 2, "feline": 3}
    events = ok(catalogued.ws, "label", "history")["events"]
    assert (events[0]["action"], events[0]["before"], events[0]["after"]) == ("rename", "cat", "feline")


def test_label_merge(catalogued: Catalogued) -> None:
    fails(catalogued.ws, "label", "merge", "cat", "nosuch", "--into", "animal", needle="no label named 'nosuch'")
    assert labels(catalogued.ws) == {"cat": 3, "dog": 2}  # the failed merge changed nothing
    document = ok(catalogued.ws, "label", "merge", "cat", "dog", "--into", "animal")
    assert document == {"merged": ["cat", "dog"], "into": "animal", "images": 5}
    assert labels(catalogued.ws) == {"animal": 5}
    history = ok(catalogued.ws, "label", "history", catalogued.dogs[0])["events"]
    assert [(e["action"], e["before"], e["after"]) for e in history] == [("set", "dog", "animal"), ("set", None, "dog")]


def test_label_set_by_prefix_and_full_sha(catalogued: Catalogued) -> None:
    cat = catalogued.cats[0]
    twin = catalogued.twins[0]
    document = ok(catalogued.ws, "label", "set", "bird", cat[:8], twin.upper(), env={"GLEANER_ACTOR": "ana"})
    assert document == {"label": "bird", "changed": 2, "images": 2}
    assert labels(catalogued.ws) == {"bird": 2, "cat": 2, "dog": 2}
    assert ok(catalogued.ws, "label", "set", "bird", cat)["changed"] == 0  # already so: no new event

    events = ok(catalogued.ws, "label", "history", cat[:10])["events"]
    assert [(e["action"], e["before"], e["after"], e["origin"]) for e in events] == [
        ("set", "cat", "bird", "human"),
        ("set", None, "cat", "folder"),
    ]
    assert events[0]["actor"] == "ana"
    assert all(e["sha256"] == cat for e in events)
    assert [e["sha256"] for e in ok(catalogued.ws, "label", "history", "--limit", "1")["events"]] == [twin]


def test_label_set_from_file(catalogued: Catalogued, tmp_path: Path) -> None:
    listing = tmp_path / "shas.txt"
    listing.write_text("\n".join([catalogued.dogs[0], "", f"  {catalogued.dogs[1][:12]}  ", *catalogued.twins]) + "\n")
    document = ok(catalogued.ws, "label", "set", "reviewed", "--from-file", listing)
    assert document == {"label": "reviewed", "changed": 4, "images": 4}
    assert labels(catalogued.ws) == {"cat": 3, "dog": 0, "reviewed": 4}
    # A relative path (the CLI runs in the folder holding the workspace), so the message stays short.
    fails(catalogued.ws, "label", "set", "x", "--from-file", "absent.txt", needle="cannot read absent.txt")


def test_label_set_clear(catalogued: Catalogued) -> None:
    cleared = ok(catalogued.ws, "label", "set", "-", catalogued.cats[0], catalogued.cats[1], "--clear")
    assert cleared == {"label": None, "changed": 2, "images": 2}
    assert labels(catalogued.ws) == {"cat": 1, "dog": 2}
    assert "-" not in labels(catalogued.ws)
    event = ok(catalogued.ws, "label", "history", catalogued.cats[0])["events"][0]
    assert (event["action"], event["before"], event["after"]) == ("clear", "cat", None)


def test_label_set_errors(catalogued: Catalogued) -> None:
    shared = catalogued.twins[0][:6]
    assert catalogued.twins[1].startswith(shared)
    fails(catalogued.ws, "label", "set", "x", shared, needle="ambiguous")
    fails(catalogued.ws, "label", "history", shared, needle="ambiguous")
    unknown = next(
        p
        for p in ("000000", "ffffff", "123456")
        if not any(s.startswith(p) for s in catalogued.cats + catalogued.dogs + catalogued.twins)
    )
    fails(catalogued.ws, "label", "set", "x", unknown, needle="no image with sha256 starting")
    fails(catalogued.ws, "label", "set", "x", "abc", needle="at least 6 hex digits")
    fails(catalogued.ws, "label", "set", "x", "zzzzzzzz", needle="not a sha256")
    fails(catalogued.ws, "label", "set", "x", needle="name at least one image")
    # One bad digest among good ones: nothing is changed.
    fails(catalogued.ws, "label", "set", "x", catalogued.cats[0], unknown, needle="no image")
    assert labels(catalogued.ws) == {"cat": 3, "dog": 2}


def test_unknown_full_sha_error_fits_on_one_line(catalogued: Catalogued) -> None:
    result = curate_process(catalogued.ws, "label", "set", "x", "0" * 64, "--json")
    assert result.code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_user_error_in_a_real_process(catalogued: Catalogued) -> None:
    result = curate_process(catalogued.ws, "label", "rename", "cat", "dog", "--json")
    assert result.code == 1
    message = "label 'dog' already exists; use `curate label merge cat --into dog`"
    assert json.loads(result.stdout) == {"error": message}
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {message}"]
    assert ok(catalogued.ws, "labels") == {"labels": {"cat": 3, "dog": 2}, "unlabelled": 2}


def test_labels_table_has_an_unlabelled_row(catalogued: Catalogued) -> None:
    table = curate(catalogued.ws, "labels")
    assert table.code == 0, table.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in table.stdout.splitlines()
            if line.count("│") == 3}  # fmt: skip
    assert rows == {"cat": "3", "dog": "2", "(unlabelled)": "2", "total": "7"}, table.stdout
    assert ok(catalogued.ws, "labels")["unlabelled"] == 2


def test_label_delete(catalogued: Catalogued) -> None:
    assert ok(catalogued.ws, "label", "delete", "cat") == {"deleted": "cat", "images": 3}
    assert ok(catalogued.ws, "labels") == {"labels": {"dog": 2}, "unlabelled": 5}
    event = ok(catalogued.ws, "label", "history", catalogued.cats[0])["events"][0]
    assert (event["action"], event["before"], event["after"]) == ("clear", "cat", None)
    latest = ok(catalogued.ws, "label", "history", "--limit", "1")["events"][0]
    assert (latest["action"], latest["before"], latest["sha256"]) == ("delete", "cat", None)
    fails(catalogued.ws, "label", "delete", "cat", needle="no label named 'cat'")


def test_label_set_clear_takes_only_digests(catalogued: Catalogued) -> None:
    cleared = ok(catalogued.ws, "label", "set", "--clear", catalogued.cats[0], catalogued.dogs[0][:8])
    assert cleared == {"label": None, "changed": 2, "images": 2}
    assert ok(catalogued.ws, "labels") == {"labels": {"cat": 2, "dog": 1}, "unlabelled": 4}
    fails(catalogued.ws, "label", "set", needle="name the label to give")


def test_label_merge_into_itself_is_refused(catalogued: Catalogued) -> None:
    fails(catalogued.ws, "label", "merge", "cat", "--into", "cat", needle="cannot merge 'cat' into itself")
    assert labels(catalogued.ws) == {"cat": 3, "dog": 2}
    assert ok(catalogued.ws, "label", "merge", "cat", "dog", "--into", "dog")["images"] == 3  # into among sources
    assert labels(catalogued.ws) == {"dog": 5}


def test_labels_follow_the_label_rule(catalogued: Catalogued) -> None:
    """Issue 16, item 15: case, ligature, NFD and invisible variants were separate labels; `..` and NUL got in."""
    assert ok(catalogued.ws, "label", "add", "CAT", "c\u200bat", "Bird", "bird", "e\u0301te\u0301") == {
        "created": ["Bird", "été"]
    }
    fails(catalogued.ws, "label", "add", "..", needle="'..'")
    fails(catalogued.ws, "label", "add", "a\x01b", needle="control character U+0001")
    fails(catalogued.ws, "label", "add", "猫" * 70, needle="at most 200")
    ok(catalogued.ws, "label", "set", "DOG", catalogued.twins[0])
    assert labels(catalogued.ws) == {"Bird": 0, "cat": 3, "dog": 3, "été": 0}
    fails(catalogued.ws, "label", "set", "..", catalogued.twins[1], needle="'..'")
