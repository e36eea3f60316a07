"""`harvest demo`: the whole loop on a local shop, with a before/after table of per-class recall.

A user's first command: it shows, offline and on real images, that the targets the first model writes are
what a `targets = true` job collects, and that the next model is better on the class that was scarce.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harvest.demo.loop import Budget, LoopResult, run_loop
from storage.clikit import JsonOption, emit_json, err_console, out_console, user_errors
from storage.errors import GleanerError

__all__ = ["demo_command"]


def _interval(low: float, high: float) -> str:
    return f"[{low:.2f}, {high:.2f}]"


def targets_table(targets: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("label", "want", "collected", "status", "reason"):
        table.add_column(column, justify="right" if column in ("want", "collected") else "left")
    for target in targets:
        table.add_row(
            target["label"], str(target["want"]), str(target["collected"]), target["status"], target["reason"]
        )
    return table


def recall_table(result: LoopResult) -> Table:
    """Per-class recall (95% Wilson interval) on the fixed evaluation split, scarce class first."""
    table = Table(title="recall on the fixed evaluation split (never served by the shop)", title_justify="left")
    for column in ("label", "n", "before", "95% CI", "after", "95% CI ", "change"):
        table.add_column(column, justify="left" if column == "label" else "right")
    labels = sorted(result.recall_before, key=lambda label: (label != result.scarce, label))
    for label in labels:
        before, after = result.recall_before[label], result.recall_after[label]
        change = after.recall - before.recall
        style = "bold" if label == result.scarce else ""
        table.add_row(
            label,
            str(before.total),
            f"{before.recall:.2f}",
            _interval(*before.interval),
            f"{after.recall:.2f}",
            _interval(*after.interval),
            Text(f"{change:+.2f}", style="green" if change > 0 else "red" if change < 0 else ""),
            style=style,
        )
    return table


@user_errors
def demo_command(
    out: Path = typer.Option(Path("demo-shop"), "--out", help="Folder for the workspace, logs and evaluation split."),
    budget: str = typer.Option("full", "--budget", help="full (the demo, minutes) or small (the loop test)."),
    json_output: bool = JsonOption,
) -> None:
    """Run the whole loop on a local shop: scrape → curate → train → targets → targets job → train again."""
    if budget not in ("small", "full"):
        raise GleanerError(f"--budget must be small or full, not {budget!r}")
    if out.exists() and any(out.iterdir()):
        if not (out / "workspace" / "gleaner.toml").is_file():
            raise GleanerError(f"{out} is not empty and holds no demo workspace: give a new or empty --out")
        shutil.rmtree(out)  # an earlier demo's folder: start again from an empty shop workspace
    console: Console = err_console if json_output else out_console

    def show_targets(targets: list[dict[str, Any]]) -> None:
        console.print(targets_table(targets, "what to collect next (most urgent first)"))

    result = run_loop(out, Budget.named(budget), console, on_targets=show_targets)
    if json_output:
        emit_json(result.as_json())
        return
    job = result.job
    console.print(
        f"targets job: added {job.get('added')} images ({job.get('stopped', job.get('status'))}); "
        f"skipped {job.get('skipped', {}).get('total', 0)} of labels without an open target"
    )
    console.print(targets_table(result.targets_after, "targets after the job"))
    console.print(recall_table(result))
    console.print(f"reports: before {result.reports['before']}\n         after  {result.reports['after']}")
    console.print(f"chart:   {result.reports['recall_chart']} (recall before and after, with 95% intervals)")
    console.print(f"the whole loop took {result.seconds:.0f} s (step logs in {out / 'logs'})")
