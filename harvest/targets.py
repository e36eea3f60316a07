"""`harvest targets`: which labels need more images, how many have arrived, and setting or closing them by hand.

Read and written through storage.catalog.targets, the `targets` table's one writer (the trainer opens runs'
targets there; harvest never imports train). `collected` counts every accepted image of the label added since
the target opened, whichever collector brought it; a target closes (`met`) when it reaches `want`. A run's
target names its folder (relative to the workspace when inside it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer
from rich.table import Table
from sqlalchemy import Connection

from harvest.display import escaped, plain
from storage.catalog.records import default_actor
from storage.catalog.targets import (
    MANUAL,
    MANUAL_REASON,
    OpenTarget,
    Target,
    close_targets,
    list_targets,
    set_manual_target,
)
from storage.clikit import JsonOption, WorkspaceOption, emit_json, out_console, user_errors
from storage.workspace import open_workspace

__all__ = ["MANUAL_REASON", "OpenTarget", "Target", "origin_name", "set_target", "targets_app", "targets_json"]


def origin_name(origin: str, root: Path) -> str:
    """A run folder relative to the workspace when it lies inside it (`runs/first`), else as stored."""
    if origin == MANUAL or not origin.startswith("/"):
        return origin
    try:
        return Path(origin).relative_to(root.resolve()).as_posix()
    except ValueError:
        return origin


def targets_json(found: Sequence[Target], root: Path) -> list[dict[str, object]]:
    return [{**t.to_json(), "origin": origin_name(t.origin, root)} for t in found]


def set_target(
    conn: Connection,
    label: str,
    want: int,
    reason: str | None = None,
    *,
    sources: Sequence[str] = (),
    create: bool = False,
) -> Target | None:
    """Replace the label's open targets with one set by hand; want 0 only closes them (returns None)."""
    return set_manual_target(conn, label, want, reason, sources=sources, create=create, actor=default_actor())


targets_app = typer.Typer(
    help="Collection targets: labels that need more images (from `train run`, or set by hand).",
    invoke_without_command=True,
    add_completion=False,
)


def _workspace(ctx: typer.Context, workspace: Path | None) -> Path | None:
    return workspace or (ctx.obj or {}).get("workspace")


@targets_app.callback()
@user_errors
def targets_command(
    ctx: typer.Context,
    show_all: bool = typer.Option(False, "--all", help="Also list met, closed and replaced targets."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """List the open collection targets, most urgent first, with how many images have arrived for each."""
    ctx.obj = {"workspace": workspace}
    if ctx.invoked_subcommand is not None:
        return
    ws = open_workspace(workspace)
    with ws.catalog.read() as conn:
        found = list_targets(conn, include_closed=show_all)
    if json_output:
        emit_json({"targets": targets_json(found, ws.root)})
        return
    if not found:
        out_console.print("No open targets: run `train run` to get some, or set one with `harvest targets set`.")
        return
    table = Table(title="Collection targets (most urgent first)")
    for column in ("label", "want", "collected", "status", "reason", "from"):
        table.add_column(column, justify="right" if column in ("want", "collected") else "left")
    for t in found:
        status = t.status + (f" (+{len(t.sources)} sources)" if t.sources else "")
        origin = plain(origin_name(t.origin, ws.root))
        table.add_row(plain(t.label), f"{t.want:,}", f"{t.collected:,}", status, plain(t.reason), origin)
    out_console.print(table)


@targets_app.command("set")
@user_errors
def set_command(
    ctx: typer.Context,
    label: str = typer.Argument(..., help="The label that needs images (one the catalog knows, unless --create)."),
    want: int = typer.Option(..., "--want", min=0, help="How many more images to collect (0 closes the target)."),
    sources: list[str] = typer.Option([], "--source", help="A page to collect this label from (repeatable)."),
    reason: str = typer.Option(None, "--reason", help="Why (shown to whoever collects)."),
    create: bool = typer.Option(False, "--create", help="Create the label when the catalog does not have it."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Set a label's target by hand; it replaces the label's open target until it is met, closed or set again."""
    ws = open_workspace(_workspace(ctx, workspace))
    target = ws.catalog.transact(  # run again after a lost connection (a PostgreSQL restart): it replaces
        lambda conn: set_target(conn, label, want, reason, sources=sources, create=create), what="setting the target"
    )
    if json_output:
        document = targets_json([target], ws.root)[0] if target else {"label": label, "want": 0, "status": "closed"}
        emit_json({**document, "open": target is not None})
        return
    if target:
        extra = f", from {len(target.sources)} sources" if target.sources else ""
        out_console.print(
            f"Target set: [bold]{escaped(target.label)}[/] wants {want:,} more images ({escaped(target.reason)}{extra})"
        )
    else:
        out_console.print(f"Closed the open targets of [bold]{escaped(label)}[/]")


@targets_app.command("close")
@user_errors
def close_command(
    ctx: typer.Context,
    label: str = typer.Argument(..., help="The label whose open target to close."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Close a label's open target by hand (it stays listed under --all as `closed`)."""
    ws = open_workspace(_workspace(ctx, workspace))
    closed = ws.catalog.transact(lambda conn: close_targets(conn, label), what="closing the target")
    if json_output:
        emit_json({"label": label, "closed": closed})
        return
    out_console.print(f"Closed the open target of [bold]{escaped(label)}[/]")
