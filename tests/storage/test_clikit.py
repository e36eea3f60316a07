"""storage.clikit.user_errors, the one place the three CLIs turn user errors into one line (and, with --json,
`{"error": ...}` on stdout): a failed file operation on a path the user named is such an error; an OSError that
names no path is a bug or the system, and keeps its traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from storage.clikit import JsonOption, add_version_option, user_errors
from storage.errors import GleanerError


def make_app() -> typer.Typer:
    app = typer.Typer()
    add_version_option(app, "demo")

    @app.command("read")
    @user_errors
    def read(path: Path, json_output: bool = JsonOption) -> None:
        """Print a file (a real read: the OSError is the operating system's)."""
        typer.echo(path.read_text())

    @app.command("fail")
    @user_errors
    def fail(json_output: bool = JsonOption) -> None:
        """A library error, and an OSError about no path."""
        if json_output:
            raise GleanerError("no snapshots yet")
        raise OSError("the system failed")

    @app.command("save")
    @user_errors
    def save(path: Path, json_output: bool = JsonOption) -> None:
        """Write through an open file, as exports and object stores do: ENOSPC then names no path."""
        with open(path, "wb") as handle:
            handle.write(b"x" * 65536)
            handle.flush()

    return app


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_is_one_line_also_without_a_path() -> None:
    """Issue 16, item 17: ENOSPC from a write names no path, so it kept its traceback."""
    app = make_app()
    plain = CliRunner().invoke(app, ["save", "/dev/full"])
    assert plain.exit_code == 1 and not isinstance(plain.exception, OSError)
    assert plain.stderr.strip().splitlines() == [
        "error: no space left on the disk (No space left on device): free some space and run the command again; "
        "work committed before it is kept"
    ]
    as_json = CliRunner().invoke(app, ["save", "/dev/full", "--json"])
    assert "No space left" in json.loads(as_json.stdout)["error"]


def test_an_unreadable_path_is_one_line_and_json(tmp_path: Path) -> None:
    app, missing = make_app(), tmp_path / "absent.txt"
    plain = CliRunner().invoke(app, ["read", str(missing)])
    assert plain.exit_code == 1 and plain.stdout == ""
    assert plain.stderr.strip().splitlines() == [f"error: {missing}: No such file or directory"]
    as_json = CliRunner().invoke(app, ["read", str(tmp_path), "--json"])  # a folder: IsADirectoryError
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == {"error": f"{tmp_path}: Is a directory"}
    assert as_json.stderr.strip() == f"error: {tmp_path}: Is a directory"


def test_library_errors_and_bugs() -> None:
    app = make_app()
    failed = CliRunner().invoke(app, ["fail", "--json"])
    assert failed.exit_code == 1 and json.loads(failed.stdout) == {"error": "no snapshots yet"}
    bug = CliRunner().invoke(app, ["fail"])
    assert isinstance(bug.exception, OSError)  # not swallowed: a traceback a developer needs
    with pytest.raises(OSError, match="the system failed"):
        CliRunner().invoke(app, ["fail"], catch_exceptions=False)


def test_version_option() -> None:
    shown = CliRunner().invoke(make_app(), ["--version"])
    assert shown.exit_code == 0 and shown.stdout.startswith("demo ") and shown.stdout.strip() != "demo unknown"
