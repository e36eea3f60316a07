"""`harvest jobs list` and `harvest jobs run NAME`: the collection jobs of gleaner.toml. Thin over the library:
the config (harvest.jobs.config), the worker (harvest.jobs.runner), the schedule (harvest.jobs.schedule)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from harvest.display import escaped, plain
from harvest.jobs.config import Job, find_job, load_jobs
from storage.catalog.runs import last_job_runs
from storage.clikit import JsonOption, WorkspaceOption, emit_json, err_console, out_console, user_errors
from storage.workspace import open_workspace

if TYPE_CHECKING:  # the worker loads the web collectors: `harvest jobs list` does not pay for them
    from harvest.jobs.runner import JobReport

__all__ = ["jobs_app", "jobs_json"]

jobs_app = typer.Typer(help="Collection jobs declared in gleaner.toml.", no_args_is_help=True)


def _next_run(job: Job, last: datetime | None, now: datetime) -> datetime | None:
    """When the scheduler runs the job next: now when it is due (never run, or a slot missed since its last
    start), else its next slot (harvest.jobs.schedule.next_due, what `harvest schedule` itself decides by)."""
    from harvest.jobs.schedule import next_due

    return next_due(job, last, now)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def jobs_json(jobs: list[Job], last: dict[str, datetime], now: datetime) -> list[dict[str, Any]]:
    """`jobs list --json`'s entries: each job's schedule, sources, next run (now when it is due) and last run's
    start."""
    return [
        {
            "name": job.name,
            "schedule": job.schedule,
            "timezone": job.timezone,
            "targets": job.targets,
            "max_images": job.max_images,
            "max_per_label": job.max_per_label,
            "sources": [source.to_json() for source in job.sources],
            "next_run": _iso(_next_run(job, last.get(job.name), now)),
            "last_run": _iso(last.get(job.name)),
        }
        for job in jobs
    ]


@jobs_app.command("list")
@user_errors
def list_command(workspace: Path = WorkspaceOption, json_output: bool = JsonOption) -> None:
    """The jobs of gleaner.toml: schedule, sources, next and last run."""
    ws = open_workspace(workspace)
    jobs = load_jobs(ws.root)
    with ws.catalog.read() as conn:
        last = last_job_runs(conn)
    found = jobs_json(jobs, last, datetime.now(UTC))
    if json_output:
        emit_json({"jobs": found})
        return
    if not found:
        err_console.print("no jobs: add a [[jobs]] table to gleaner.toml (see README, Collection jobs)")
        return
    table = Table(title="Collection jobs", show_header=True)
    for column in ("name", "schedule", "targets", "sources", "next run", "last run"):
        table.add_column(column)
    for entry in found:
        kinds = ", ".join(next(iter(source)) for source in entry["sources"])
        table.add_row(
            plain(entry["name"]),
            plain(f"{entry['schedule']} ({entry['timezone']})" if entry["schedule"] else "-"),
            "yes" if entry["targets"] else "no",
            plain(f"{len(entry['sources'])}: {kinds}"),
            entry["next_run"] or "-",
            entry["last_run"] or "never",
        )
    out_console.print(table)


@jobs_app.command("run")
@user_errors
def run_command(
    name: str = typer.Argument(..., help="The job's name in gleaner.toml."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Run the job once: start its run, or join the run in progress as another worker. Exits 0 when the run's
    work is done (130 when interrupted: the next run resumes)."""
    from harvest.jobs.runner import run_job

    ws = open_workspace(workspace)
    job = find_job(load_jobs(ws.root), name)

    def on_event(what: str, detail: str) -> None:
        err_console.print(f"[dim]{escaped(what)}[/] {escaped(detail)}", highlight=False, soft_wrap=True)

    report = run_job(ws, job, on_event=on_event)
    if json_output:
        emit_json(report.to_json())
    else:
        _render(report)
    if report.stopped == "interrupted":
        raise typer.Exit(130)


def _render(report: JobReport) -> None:
    from harvest.cli import counts_table, render_summary_problems

    document = report.to_json()
    skipped = document["skipped"]
    extra = {"skipped": str(skipped["total"]), "run": str(report.run_id), "status": report.status}
    out_console.print(counts_table(f"Job {plain(report.job)}", report.run.summary, extra))
    if skipped["total"]:
        table = Table(title="skipped (not fetched or not ingested)", show_header=True)
        table.add_column("why")
        table.add_column("count", justify="right")
        for why, count in skipped["by_reason"].items():
            table.add_row(plain(why.replace("_", " ")), f"{count:,}")
        out_console.print(table)
    if report.targets:
        table = Table(title="targets", show_header=True)
        for column in ("label", "want", "collected", "status"):
            table.add_column(column)
        for target in report.targets:
            table.add_row(plain(target["label"]), str(target["want"]), str(target["collected"]), target["status"])
        out_console.print(table)
    render_summary_problems(report.run.summary.problems, limit=50, quiet=not report.run.summary.total)
    if report.stopped:
        err_console.print(f"stopped: {escaped(report.stopped)}")
    if not report.finished and report.status == "running":
        err_console.print("other workers are still finishing this run")
