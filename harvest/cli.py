"""`harvest`: create workspaces and collect images. Thin commands over the library."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from harvest.importer import import_paths
from storage.clikit import JsonOption, WorkspaceOption, emit_json, err_console, make_progress, out_console, user_errors
from storage.ingest import IngestSummary, Outcome
from storage.workspace import init_workspace, open_workspace

app = typer.Typer(help="Collect images into a Gleaner workspace.", no_args_is_help=True, add_completion=False)


@app.command("init")
@user_errors
def init_command(
    directory: Path = typer.Argument(..., help="Folder for the workspace (created if needed)."),
    store: str = typer.Option(
        None, "--store", help="Object store URL: a folder (default DIR/store) or s3://bucket/prefix."
    ),
    catalog: str = typer.Option(
        None, "--catalog", help="Catalog URL (default sqlite:///DIR/catalog.db; postgresql://...)."
    ),
    endpoint_url: str = typer.Option(None, "--endpoint-url", help="S3 endpoint of an S3-compatible server."),
    addressing_style: str = typer.Option(None, "--addressing-style", help="S3 addressing: auto, path or virtual."),
    json_output: bool = JsonOption,
) -> None:
    """Create DIR/gleaner.toml with the store and catalog to use (safe to repeat)."""
    workspace, created = init_workspace(
        directory, store_url=store, catalog_url=catalog, endpoint_url=endpoint_url, addressing_style=addressing_style
    )
    info = {
        "workspace": str(workspace.root),
        "created": created,
        "store": workspace.store.url,
        "catalog": workspace.catalog.engine.url.render_as_string(hide_password=True),
    }
    if json_output:
        emit_json(info)
        return
    verb = "Created" if created else "Already a workspace:"
    out_console.print(f"{verb} [bold]{info['workspace']}[/]\n  store   {info['store']}\n  catalog {info['catalog']}")


@app.command("import")
@user_errors
def import_command(
    paths: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    label: str = typer.Option(None, "--label", "-l", help="Label for every imported image."),
    labels_from_folders: bool = typer.Option(
        False, "--labels-from-folders", help="Label each image with the name of its folder (ImageFolder layout)."
    ),
    workers: int = typer.Option(None, "--workers", help="Processes for decoding and hashing (default: one per core)."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Import image files and folders. Bad files are listed with a reason and never stop the run."""
    ws = open_workspace(workspace)
    started = time.perf_counter()
    with make_progress() as progress:
        task = progress.add_task("importing", total=None, rate="")

        def on_start(total: int) -> None:
            progress.update(task, total=total)

        def on_outcome(_outcome: Outcome) -> None:
            done = progress.tasks[task].completed + 1
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=done, rate=f"{done / elapsed:,.0f} img/s")

        result = import_paths(
            ws,
            paths,
            label=label,
            labels_from_folders=labels_from_folders,
            workers=workers,
            on_start=on_start,
            on_outcome=on_outcome,
        )
    elapsed = time.perf_counter() - started
    if json_output:
        emit_json({**result.summary.to_json(), "run_id": result.run_id, "seconds": round(elapsed, 3)})
        return
    render_summary(result.summary, elapsed)


def render_summary(summary: IngestSummary, elapsed: float) -> None:
    """The collectors' end-of-run table: counts, then each problem with its reason."""
    table = Table(title="Import summary", show_header=True)
    for column in ("added", "duplicates", "rejected", "failed", "images/s"):
        table.add_column(column, justify="right")
    rate = summary.total / elapsed if elapsed > 0 else 0.0
    table.add_row(
        str(summary.added), str(summary.duplicates), str(summary.rejected), str(summary.failed), f"{rate:,.0f}"
    )
    out_console.print(table)
    if summary.problems:
        problems = Table(title=f"{len(summary.problems)} problem(s)", show_header=True)
        problems.add_column("item", overflow="fold")
        problems.add_column("reason", overflow="fold")
        for problem in summary.problems:
            problems.add_row(problem["item"], problem["reason"])
        out_console.print(problems)
    elif summary.total:
        err_console.print("[green]no problems[/]")


if __name__ == "__main__":  # pragma: no cover
    app()
