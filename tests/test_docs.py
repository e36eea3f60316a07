"""The README documents every command and every option of the three CLIs (datasette's test_docs idea)."""

from __future__ import annotations

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


@pytest.mark.parametrize(("name", "command"), _commands(), ids=[name for name, _ in _commands()])
def test_command_and_options_are_documented(name: str, command: Any) -> None:
    assert f"`{name}" in README, f"README does not document `{name}`"
    for param in command.params:
        if type(param).__name__.endswith("Option"):
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert opt in README, f"README does not mention {opt} of `{name}`"


def test_quickstart_has_the_two_commands() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quickstart and "make test" in quickstart
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "make test" in ci
