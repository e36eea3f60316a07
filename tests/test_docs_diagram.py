"""The README's diagram names only commands that exist (issue 15 item 14): every word in `harvest (...)`,
`curate (...)` and `train (...)` is a subcommand of that CLI."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from curate.cli import app as curate_app
from harvest.cli import app as harvest_app
from train.cli import app as train_app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
APPS = {"harvest": harvest_app, "curate": curate_app, "train": train_app}


def diagram() -> str:
    """The first code block: the picture under the title."""
    return README.split("```", 2)[1]


def named(tool: str) -> list[str]:
    """The words in `tool (...)` (the list may wrap onto the next line; `→` starts what the step gives)."""
    found = re.search(rf"\b{tool} \(([^)]*)\)", diagram())
    assert found, f"the diagram has no `{tool} (...)`"
    listed = found.group(1).split("→", 1)[0]
    return re.findall(r"[a-z][a-z-]*", listed)


def test_the_diagram_names_only_real_commands() -> None:
    for tool, app in APPS.items():
        commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
        words = named(tool)
        assert words, tool
        missing = [word for word in words if word not in commands]
        assert not missing, f"the README diagram names `{tool} {missing}`, which {tool} --help does not list"
