"""Shared CLI plumbing for the three typer apps: one-line errors, --json output, rich consoles."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from storage.errors import GleanerError

__all__ = ["JsonOption", "WorkspaceOption", "emit_json", "err_console", "make_progress", "out_console", "user_errors"]

F = TypeVar("F", bound=Callable[..., Any])

# Tables and summaries go to stdout; progress and logs go to stderr so that --json output stays clean.
out_console = Console()
err_console = Console(stderr=True)

WorkspaceOption = typer.Option(
    None, "--workspace", "-w", help="Workspace folder (default: $GLEANER_WORKSPACE, then this folder and its parents)."
)
JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout; progress goes to stderr.")


def user_errors(func: F) -> F:
    """Turn GleanerError (and Ctrl-C) into one clear line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GleanerError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: work done so far is kept; run the command again to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def make_progress(*, transient: bool = False, auto_refresh: bool = True) -> Progress:
    """A progress bar on stderr. `auto_refresh=False` starts no refresh thread (the caller refreshes): commands
    that start worker processes use it, so the workers can be forked from a process with one thread."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        auto_refresh=auto_refresh,
    )


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
