"""Shared CLI plumbing for the three typer apps: one-line errors, --json output, rich consoles."""

from __future__ import annotations

import errno
import functools
import importlib.metadata
import json
import logging
import re
import sqlite3
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
import typer.main
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from storage.errors import GleanerError

__all__ = [
    "DISK_FULL_MESSAGE",
    "App",
    "JsonOption",
    "WorkspaceOption",
    "add_version_option",
    "disk_full_reason",
    "emit_json",
    "err_console",
    "make_progress",
    "one_line",
    "out_console",
    "user_errors",
]

F = TypeVar("F", bound=Callable[..., Any])

# Tables and summaries go to stdout; progress and logs go to stderr so that --json output stays clean.
out_console = Console()
err_console = Console(stderr=True)

WorkspaceOption = typer.Option(
    None, "--workspace", "-w", help="Workspace folder (default: $GLEANER_WORKSPACE, then this folder and its parents)."
)
JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout; progress goes to stderr.")


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
_PG_DISK_FULL = "53100"  # SQLSTATE disk_full
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")
DISK_FULL_MESSAGE = (
    "no space left on the disk ({reason}): free some space and run the command again; work committed before it is kept"
)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, its causes and contexts, and the driver errors SQLAlchemy wraps (`.orig`), each once."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is known for known in seen):
            continue
        seen.append(item)
        orig = getattr(item, "orig", None)
        todo += [item.__cause__, item.__context__, orig if isinstance(orig, BaseException) else None]
    return seen


def disk_full_reason(exc: BaseException) -> str | None:
    """Why `exc` means a full disk (or quota) under the catalog or the store, or None when it does not: an
    OSError with ENOSPC/EDQUOT, SQLite's SQLITE_FULL, or PostgreSQL's disk_full, anywhere in its chain."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno in _FULL_ERRNOS:
            return item.strerror or "no space left on device"
        if isinstance(item, sqlite3.Error) and (
            getattr(item, "sqlite_errorcode", None) == _SQLITE_FULL or "database or disk is full" in str(item)
        ):
            return "database or disk is full"
        if getattr(item, "sqlstate", None) == _PG_DISK_FULL or getattr(item, "pgcode", None) == _PG_DISK_FULL:
            return "the database server's disk is full"
    return None


def one_line(message: str) -> str:
    """A message as one line: SQLAlchemy's "(Background on this error at: ...)" dropped, line breaks joined."""
    lines = [line.strip() for line in _BACKGROUND.sub("", message).splitlines() if line.strip()]
    return "; ".join(lines) or message.strip()


def _os_error_line(exc: OSError) -> str:
    """`PATH: reason` for a failed file operation on a path the user gave (a missing folder, /proc, a file
    where a folder was expected): the message a person can act on, without Python's exception class."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    return f"{exc.filename}: {reason}"


def _fail(message: str, *, json_output: bool, code: int = 1) -> typer.Exit:
    """Print the one error line (and with --json the `{"error": ...}` document on stdout); the Exit to raise."""
    message = one_line(message)
    if json_output:
        emit_json({"error": message})
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def user_errors(func: F) -> F:
    """Turn GleanerError, a failed file operation (OSError on a named path), a full disk (under the catalog,
    SQLite or PostgreSQL, or the store) and Ctrl-C into one clear line on stderr and a non-zero exit, never a
    traceback. A command with a `json_output` parameter (`--json`) also gets `{"error": "..."}` on stdout, so a
    script that parses stdout learns why."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        json_output = bool(kwargs.get("json_output"))
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: work done so far is kept; run the command again to resume")
            raise typer.Exit(130) from None
        except Exception as exc:
            full = disk_full_reason(exc)
            if full is not None:
                raise _fail(DISK_FULL_MESSAGE.format(reason=full), json_output=json_output) from None
            if isinstance(exc, GleanerError):
                raise _fail(str(exc), json_output=json_output) from None
            if isinstance(exc, OSError) and exc.filename is not None:
                raise _fail(_os_error_line(exc), json_output=json_output) from None
            raise  # not about a path the user named: a bug or the system, keep the traceback

    return wrapper  # type: ignore[return-value]


class App(typer.Typer):
    """A typer app whose usage errors (a bad option value, a missing argument) honour --json as user errors do:
    `{"error": "..."}` on stdout and one `error:` line on stderr (exit 2, as click exits), instead of only the
    framed usage box, which a script parsing stdout never sees. Without --json nothing changes."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        argv = list(kwargs.get("args") or sys.argv[1:])
        if "--json" not in argv or args:
            return super().__call__(*args, **kwargs)
        command = typer.main.get_command(self)
        try:
            code = command.main(args=argv, prog_name=kwargs.get("prog_name"), standalone_mode=False)
        except typer.Abort:
            err_console.print("[yellow]interrupted[/]")
            raise SystemExit(130) from None
        except Exception as exc:
            # click's UsageError family (typer vendors click, so matched by shape): exit code 2, a message
            format_message, exit_code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
            if not callable(format_message) or not isinstance(exit_code, int):
                raise
            if exit_code != 2 or type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]
                raise SystemExit(exit_code) from None
            raise SystemExit(_fail(format_message(), json_output=True, code=exit_code).exit_code) from None
        raise SystemExit(code if isinstance(code, int) else 0)


def add_version_option(app: typer.Typer, prog: str) -> None:
    """`PROG --version`: prints `PROG <version of the installed gleaner package>` and exits."""

    def show_version(value: bool) -> None:
        if value:
            try:
                version = importlib.metadata.version("gleaner")
            except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
                version = "unknown"
            typer.echo(f"{prog} {version}")
            raise typer.Exit()

    def callback(
        version: bool = typer.Option(
            False, "--version", callback=show_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        pass

    callback.__doc__ = app.info.help if isinstance(app.info.help, str) else None
    app.callback()(callback)


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
