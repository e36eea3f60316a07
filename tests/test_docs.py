"""The README documents every command and every option of the three CLIs (datasette's test_docs idea).

Each option must be named in its own command's documentation — the command's row of the Commands table and
the sections whose heading names the command — and have help text of its own; an option mentioned only
somewhere else in the file does not count. Options every command shares (`--json`, `--workspace`) are
documented once, in the paragraph that opens "Commands".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from curate.cli import app as curate_app
from harvest.cli import app as harvest_app
from train.cli import app as train_app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
APPS = {"harvest": harvest_app, "curate": curate_app, "train": train_app}
COMMANDS_INTRO = README.split("### Commands", 1)[1].split("\n| command |", 1)[0]
SHARED = {opt for opt in ("--json", "--workspace") if f"`{opt}" in COMMANDS_INTRO}


def _walk(name: str, command: Any) -> Iterator[tuple[str, Any]]:
    if hasattr(command, "commands"):  # a group (typer ships its own click)
        for sub_name, sub in command.commands.items():
            yield from _walk(f"{name} {sub_name}", sub)
    else:
        yield name, command


def _commands() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for name, app in APPS.items():
        found.extend(_walk(name, typer.main.get_command(app)))
    return found


def command_docs(name: str) -> str:
    """The README's text about one command: its rows of the Commands table and the sections headed with it."""
    named = re.compile("`" + re.escape(name) + r"(?=[ `\]])")
    parts = [line for line in README.splitlines() if line.startswith("| `") and named.search(line.split("|")[1])]
    for block in re.split(r"(?m)^(?=#{2,4} )", README):
        heading = block.split("\n", 1)[0]
        if heading.startswith("#") and re.search("`" + re.escape(name) + "`", heading):
            parts.append(block)
    return "\n".join(parts)


def _options(command: Any) -> Iterator[tuple[str, Any]]:
    for param in command.params:
        if type(param).__name__.endswith("Option"):
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    yield opt, param


@pytest.mark.parametrize(("name", "command"), _commands(), ids=[name for name, _ in _commands()])
def test_command_and_options_are_documented(name: str, command: Any) -> None:
    docs = command_docs(name)
    assert docs, f"README has no row of the Commands table and no section for `{name}`"
    assert (command.help or "").strip(), f"`{name}` has no help text"
    for opt, param in _options(command):
        assert (param.help or "").strip(), f"{opt} of `{name}` has no help text"
        if opt not in SHARED:
            assert opt in docs, f"{opt} of `{name}` is not in that command's README row or section"


def test_shared_options_are_documented_once_for_all() -> None:
    assert {"--json", "--workspace"} == SHARED, COMMANDS_INTRO


def test_quickstart_has_the_two_commands() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quickstart and "make test" in quickstart
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_pictures_are_shown_and_exist() -> None:
    """Every picture in docs/ is in the README, and every picture the README shows is in docs/."""
    root = Path(__file__).resolve().parent.parent
    shown = set(re.findall(r"!\[[^\]]*\]\((docs/[^)]+)\)", README))
    present = {f"docs/{p.name}" for p in (root / "docs").glob("*.png")}
    assert shown == present, (shown - present, present - shown)
    assert {"docs/review-grid.png", "docs/dedupe-report.png", "docs/confusion-matrix.png", "docs/curves.png",
            "docs/demo-recall.png"} <= shown  # fmt: skip
