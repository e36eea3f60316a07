"""`harvest schedule` (run due jobs in the foreground) and `harvest schedule export` (cron, systemd, k8s)."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType

import typer

from harvest.display import escaped
from harvest.jobs.config import Job, load_jobs
from harvest.jobs.export import DEFAULT_IMAGE, EXPORT_FORMATS, ExportRequest, export_jobs
from harvest.jobs.schedule import ChildRunner, JobResult, Pass, Scheduler
from storage.catalog.runs import last_job_runs
from storage.clikit import (
    JsonOption,
    WorkspaceOption,
    emit_json,
    err_console,
    one_line,
    out_console,
    user_errors,
)
from storage.errors import GleanerError
from storage.workspace import Workspace, open_workspace

__all__ = ["schedule_app"]

schedule_app = typer.Typer(
    help="Run due jobs on their schedules, or export the schedules for cron, systemd or Kubernetes.",
    invoke_without_command=True,
    add_completion=False,
)


@schedule_app.callback()
@user_errors
def schedule_command(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Run the jobs due now (never run counts as due), then exit."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Run due jobs, one at a time, until Ctrl-C; a job missed while no scheduler ran runs once."""
    if ctx.invoked_subcommand is not None:
        return
    with open_workspace(workspace) as ws:
        scheduler = _scheduler(ws, json_output)
        if once:
            result = scheduler.run_pass()
            _show_pass(result, json_output, lines=False)
            if not all(ran.ok for ran in result.ran):
                raise typer.Exit(1)
            return
        try:
            with _sigterm_as_interrupt():
                err_console.print(f"scheduler on {escaped(str(ws.root))}: Ctrl-C stops it", highlight=False)
                scheduler.run_forever(
                    on_pass=lambda result: _show_pass(result, json_output, lines=True), on_error=_pass_failed
                )
        except KeyboardInterrupt:
            err_console.print("scheduler stopped")


def _scheduler(ws: Workspace, json_output: bool) -> Scheduler:
    def last_runs() -> dict[str, datetime]:
        with ws.catalog.read() as conn:
            return last_job_runs(conn)

    return Scheduler(
        jobs=lambda: load_jobs(ws.root),
        last_runs=last_runs,
        runner=ChildRunner(ws.root),
        on_start=_started,
        on_finish=_finished,
    )


def _pass_failed(message: str) -> None:
    err_console.print(
        f"[yellow]warning:[/] {escaped(one_line(message))} (tried again in a minute)", highlight=False, soft_wrap=True
    )


def _started(job: Job) -> None:
    err_console.print(f"{escaped(job.name)}: started (harvest jobs run {escaped(job.name)})", highlight=False)


def _finished(result: JobResult) -> None:
    counts = ", ".join(f"{key} {value}" for key, value in result.counts.items())
    run = f" (run {result.run_id})" if result.run_id is not None else ""
    line = f"{escaped(result.job)}: {escaped(result.status)}{run}" + (f": {counts}" if counts else "")
    if result.error:
        line += f"; {escaped(result.error)}"
    err_console.print(line, highlight=False, soft_wrap=True)


def _show_pass(result: Pass, json_output: bool, *, lines: bool) -> None:
    """--once: one JSON document or a table of next runs; the loop: a JSON line per pass that ran a job."""
    if json_output:
        if not lines:
            emit_json(result.to_json())
        elif result.ran:
            sys.stdout.write(json.dumps(result.to_json(), default=str) + "\n")
            sys.stdout.flush()
        return
    if lines and not result.ran:
        return
    if not lines and not result.ran and result.next:
        out_console.print("nothing due", highlight=False)
    for name, when in result.next:
        shown = when.isoformat(timespec="seconds") if when else "never"
        (out_console if not lines else err_console).print(f"next: {escaped(name)} at {shown}", highlight=False)
    if not result.next:
        err_console.print("no scheduled jobs: add a [[jobs]] table with a schedule to gleaner.toml")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (systemctl stop, kill) stops the scheduler as Ctrl-C does: the job in hand ends cleanly."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@schedule_app.command("export")
@user_errors
def export_command(
    format: str = typer.Option(..., "--format", help=f"Output format: {', '.join(EXPORT_FORMATS)}."),
    job: str = typer.Option(None, "--job", help="Export this job only (default: every scheduled job)."),
    parallelism: int = typer.Option(
        None, "--parallelism", help="k8s: an Indexed Job of N pods, N workers on each run (default 1)."
    ),
    image: str = typer.Option(
        None, "--image", help=f"k8s: the container image with Gleaner (default {DEFAULT_IMAGE})."
    ),
    out: Path = typer.Option(None, "--out", help="Write to this file (systemd: this folder, a file per unit)."),
    workspace: Path = WorkspaceOption,
) -> None:
    """Print crontab lines, systemd service and timer units, or Kubernetes CronJob YAML for the jobs."""
    with open_workspace(workspace) as ws:
        request = ExportRequest(root=ws.root, format=format, job=job, parallelism=parallelism, image=image)
        result = export_jobs(request)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escaped(warning)}", highlight=False, soft_wrap=True)
    if out is None:
        sys.stdout.write(result.text())
        return
    if format == "systemd":
        if out.exists() and not out.is_dir():
            raise GleanerError(f"{out}: --out for systemd is a folder (one file per unit), and this is a file")
        out.mkdir(parents=True, exist_ok=True)
        for name, body in result.files.items():
            (out / name).write_text(body, encoding="utf-8")
        err_console.print(f"wrote {len(result.files)} units to {escaped(str(out))}", highlight=False)
        return
    out.write_text(result.text(), encoding="utf-8")
    err_console.print(f"wrote {escaped(str(out))}", highlight=False)
