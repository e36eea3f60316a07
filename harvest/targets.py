"""Collection targets: which labels need more images. Training runs write them; people can set them by hand.

Read and written through storage.catalog.targets, the `targets` table's one writer (the trainer opens runs'
targets there; harvest never imports train). One open target per label is listed: one set by hand wins over a
run's, and hand-set targets come first, then the runs' in their order of urgency. `harvest targets set LABEL
--want 0` closes a label's open targets.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from sqlalchemy import Connection

from harvest.display import escaped, plain
from storage.catalog.targets import MANUAL_REASON, OpenTarget, open_targets, set_manual_target
from storage.clikit import JsonOption, WorkspaceOption, emit_json, out_console, user_errors
from storage.workspace import open_workspace

__all__ = ["MANUAL_REASON", "OpenTarget", "list_targets", "set_target", "targets_app"]


def list_targets(conn: Connection) -> list[OpenTarget]:
    """Open targets, one per label, most urgent first (hand-set ones before those of training runs)."""
    return open_targets(conn)


def set_target(conn: Connection, label: str, want: int, reason: str | None = None) -> OpenTarget | None:
    """Replace the label's open targets with one set by hand; want 0 only closes them (returns None)."""
    return set_manual_target(conn, label, want, reason)


targets_app = typer.Typer(
    help="Collection targets: labels that need more images (from `train run`, or set by hand).",
    invoke_without_command=True,
    add_completion=False,
)


@targets_app.callback()
@user_errors
def targets_command(
    ctx: typer.Context,
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """List the open collection targets, most urgent first."""
    ctx.obj = {"workspace": workspace}
    if ctx.invoked_subcommand is not None:
        return
    ws = open_workspace(workspace)
    with ws.catalog.read() as conn:
        found = list_targets(conn)
    if json_output:
        emit_json({"targets": [t.to_json() for t in found]})
        return
    if not found:
        out_console.print("No open targets: run `train run` to get some, or set one with `harvest targets set`.")
        return
    table = Table(title="Collection targets (most urgent first)")
    for column, justify in (("label", "left"), ("want", "right"), ("reason", "left"), ("from", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for target in found:
        table.add_row(plain(target.label), f"{target.want:,}", plain(target.reason), plain(target.origin))
    out_console.print(table)


@targets_app.command("set")
@user_errors
def set_command(
    ctx: typer.Context,
    label: str = typer.Argument(..., help="The label that needs images."),
    want: int = typer.Option(..., "--want", min=0, help="How many more images to collect (0 closes the target)."),
    reason: str = typer.Option(None, "--reason", help="Why (shown to whoever collects)."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Set a label's target by hand; it replaces the label's open target until set again."""
    ws = open_workspace(workspace or (ctx.obj or {}).get("workspace"))
    with ws.catalog.write() as conn:
        target = set_target(conn, label, want, reason)
    document = {"label": label, "want": want, "reason": target.reason if target else None, "open": target is not None}
    if json_output:
        emit_json(document)
        return
    if target:
        out_console.print(
            f"Target set: [bold]{escaped(label)}[/] wants {want:,} more images ({escaped(target.reason)})"
        )
    else:
        out_console.print(f"Closed the open targets of [bold]{escaped(label)}[/]")
