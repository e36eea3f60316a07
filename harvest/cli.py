"""`harvest`: create workspaces and collect images. Thin commands over the library."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from harvest.demo.cli import demo_command
from harvest.display import escaped, plain
from harvest.engine import FetchOptions
from harvest.importer import import_paths
from harvest.jobs.cli import jobs_app
from harvest.jobs.schedule_cli import schedule_app
from harvest.targets import targets_app
from storage.clikit import (
    App,
    JsonOption,
    WorkspaceOption,
    add_version_option,
    emit_json,
    err_console,
    make_progress,
    out_console,
    user_errors,
)
from storage.ingest import IngestSummary, Outcome
from storage.workspace import init_workspace, open_workspace

app = App(help="Collect images into a Gleaner workspace.", no_args_is_help=True, add_completion=False)
add_version_option(app, "harvest")
app.add_typer(targets_app, name="targets")
app.add_typer(schedule_app, name="schedule")
app.add_typer(jobs_app, name="jobs")
app.command("demo")(demo_command)


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
    shown = {key: escaped(value) for key, value in info.items()}
    out_console.print(f"{verb} [bold]{shown['workspace']}[/]\n  store   {shown['store']}\n  catalog {shown['catalog']}")


# The fetch options every web collector shares (one FetchOptions on the engine).
AllowPrivateOption = typer.Option(
    False, "--allow-private", help="Allow loopback and private addresses (off: SSRF guard; local test sites)."
)
IgnoreRobotsOption = typer.Option(False, "--ignore-robots", help="Do not fetch or obey robots.txt.")
PerHostRateOption = typer.Option(10.0, "--per-host-rate", help="Requests per second to any one host (0: no limit).")
PerHostConcurrencyOption = typer.Option(
    16, "--per-host-concurrency", min=1, help="Requests in progress to any one host."
)
UserAgentOption = typer.Option(None, "--user-agent", help="User-Agent header (default: GleanerBot/...).")
ItemTimeoutOption = typer.Option(
    60.0, "--item-timeout", min=1.0, help="Seconds one page or image may take, retries and waits included."
)


def fetch_options(
    user_agent: str | None,
    per_host_rate: float,
    per_host_concurrency: int,
    allow_private: bool,
    ignore_robots: bool,
    item_timeout: float,
) -> FetchOptions:
    return FetchOptions.from_flags(
        user_agent=user_agent,
        per_host_rate=per_host_rate,
        per_host_concurrency=per_host_concurrency,
        allow_private=allow_private,
        ignore_robots=ignore_robots,
        item_timeout=item_timeout,
    )


@app.command("import")
@user_errors
def import_command(
    paths: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    label: str = typer.Option(None, "--label", "-l", help="Label for every imported image."),
    labels_from_folders: bool = typer.Option(
        False,
        "--labels-from-folders",
        help="Label each image with the first folder under PATH (ImageFolder: PATH/<label>/.../x.jpg).",
    ),
    workers: int = typer.Option(
        None, "--workers", min=1, help="Processes for decoding and hashing (default: one per core)."
    ),
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
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escaped(warning)}", highlight=False, soft_wrap=True)
    if json_output:
        document = {**result.summary.to_json(), "run_id": result.run_id, "seconds": round(elapsed, 3)}
        emit_json({**document, "warnings": result.warnings})
        return
    render_summary(result.summary, elapsed)


@app.command("urls")
@user_errors
def urls_command(
    file: Path = typer.Argument(..., help="URL list: .csv, .tsv, .jsonl, .parquet or .txt (optionally .gz)."),
    url_col: str = typer.Option("url", "--url-col", help="Column (or JSON key) holding the image URL."),
    label_col: str = typer.Option(
        None, "--label-col", help="Column holding each image's label (default: 'label' when the list has it)."
    ),
    label: str = typer.Option(None, "--label", "-l", help="Label for images whose row has none."),
    list_format: str = typer.Option(
        None, "--format", help="List format when the extension does not tell: csv, tsv, jsonl, parquet, txt."
    ),
    allow_private: bool = AllowPrivateOption,
    ignore_robots: bool = IgnoreRobotsOption,
    concurrency: int = typer.Option(32, "--concurrency", min=1, help="Downloads in parallel."),
    per_host_rate: float = PerHostRateOption,
    per_host_concurrency: int = PerHostConcurrencyOption,
    item_timeout: float = ItemTimeoutOption,
    user_agent: str = UserAgentOption,
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Only retry this list's failed URLs; do not read the list for new ones."
    ),
    workers: int = typer.Option(
        None,
        "--workers",
        min=1,
        help="Download processes; each fetches, validates, hashes and stores with --concurrency/N threads "
        "(default: one per core; 1: threads of this process).",
    ),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Download the images of a URL list. Rerun to resume: done URLs are skipped, failed ones retried."""
    from collections import Counter

    from harvest.urls import harvest_urls

    ws = open_workspace(workspace)
    fetch = fetch_options(user_agent, per_host_rate, per_host_concurrency, allow_private, ignore_robots, item_timeout)
    started = time.perf_counter()
    errors: Counter[str] = Counter()
    shown_at = 0.0
    with make_progress(auto_refresh=False) as progress:
        task = progress.add_task("fetching", total=None, rate="")

        def on_start(total: int) -> None:
            progress.update(task, total=total, refresh=True)

        def on_item(_status: str, error_kind: str | None) -> None:
            nonlocal shown_at
            if error_kind:
                errors[error_kind] += 1
            done = progress.tasks[task].completed + 1
            now = time.perf_counter()
            rate = f"{done / max(now - started, 1e-9):,.0f} URL/s"
            shown = " ".join(f"{kind} {count}" for kind, count in errors.most_common(4))
            refresh = now - shown_at >= 0.1  # no refresh thread: redraw at most 10 times a second
            shown_at = now if refresh else shown_at
            progress.update(task, completed=done, rate=f"{rate}  {shown}".rstrip(), refresh=refresh)

        result = harvest_urls(
            ws,
            file,
            url_col=url_col,
            label_col=label_col,
            label=label,
            fmt=list_format,
            fetch=fetch,
            concurrency=concurrency,
            retry_failed=retry_failed,
            workers=workers,
            on_start=on_start,
            on_item=on_item,
        )
    if json_output:
        emit_json(result.to_json())
        return
    render_fetch_summary(result.summary, result.errors, result.previously_done, time.perf_counter() - started)


def rate_text(items: int, seconds: float, digits: int = 0) -> str:
    return f"{items / seconds if seconds > 0 else 0.0:,.{digits}f}"


def counts_table(title: str, summary: IngestSummary, extra: dict[str, str]) -> Table:
    """The collectors' counts: every newly stored image is `added`; `set aside` counts those among them that
    ingest set aside as verified near-duplicates of catalogued images (in the dataset once, as the keeper)."""
    table = Table(title=title, show_header=True)
    counts = {
        "added": summary.added,
        "set aside (near-duplicates)": summary.near_duplicates,
        "duplicates": summary.duplicates,
        "rejected": summary.rejected,
        "failed": summary.failed,
    }
    for column in (*counts, *extra):
        table.add_column(column, justify="right")
    table.add_row(*(str(value) for value in counts.values()), *extra.values())
    return table


def render_fetch_summary(summary: IngestSummary, errors: dict[str, int], previously_done: int, elapsed: float) -> None:
    """`harvest urls`' end-of-run tables: counts, errors by kind, then the first problems."""
    fetched = summary.total - previously_done
    out_console.print(counts_table("URL list summary", summary, {"images/s": rate_text(fetched, elapsed)}))
    if previously_done:
        err_console.print(f"{previously_done:,} URL(s) were done by an earlier run and were not fetched again")
    if errors:
        kinds = Table(title="errors by kind", show_header=True)
        kinds.add_column("kind")
        kinds.add_column("count", justify="right")
        for kind, count in sorted(errors.items(), key=lambda pair: -pair[1]):
            kinds.add_row(plain(kind), f"{count:,}")
        out_console.print(kinds)
    render_summary_problems(summary.problems, limit=50, quiet=not summary.total)


def render_summary(summary: IngestSummary, elapsed: float) -> None:
    """The collectors' end-of-run table: counts, then each problem with its reason."""
    out_console.print(counts_table("Import summary", summary, {"images/s": rate_text(summary.total, elapsed)}))
    render_summary_problems(summary.problems, quiet=not summary.total)


# --- harvest scrape --------------------------------------------------------------------------------------------


@app.command("scrape")
@user_errors
def scrape_command(
    urls: list[str] = typer.Argument(..., help="Page URLs to start from (the seeds)."),
    label: str = typer.Option(None, "--label", "-l", help="Label for every image (the fallback of --label-from)."),
    label_from: str = typer.Option(
        None,
        "--label-from",
        help="Label from the page: css:SELECTOR (text of the first match), url:REGEX (first group), or alt.",
    ),
    select: str = typer.Option(None, "--select", help="CSS selector of the img elements to take (default: all)."),
    follow: str = typer.Option(None, "--follow", help="CSS selector of the links to follow, e.g. 'li.next a'."),
    depth: int = typer.Option(
        None, "--depth", help="Link hops from the seeds (default: 0, or 50 with --follow).", min=0
    ),
    render: bool = typer.Option(False, "--render", help="Load pages in Chromium and scroll (JavaScript pages)."),
    scroll: int = typer.Option(10, "--scroll", help="With --render: at most this many scrolls per page.", min=0),
    max_images: int = typer.Option(None, "--max-images", help="Fetch at most N images in this run.", min=0),
    max_pages: int = typer.Option(
        None, "--max-pages", help="Fetch at most N pages in this run (default 10,000; a rerun continues).", min=1
    ),
    concurrency: int = typer.Option(16, "--concurrency", help="Fetches in flight at once.", min=1, max=512),
    allow_private: bool = AllowPrivateOption,
    ignore_robots: bool = IgnoreRobotsOption,
    per_host_rate: float = PerHostRateOption,
    per_host_concurrency: int = PerHostConcurrencyOption,
    item_timeout: float = ItemTimeoutOption,
    user_agent: str = UserAgentOption,
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Only retry the URLs that failed in earlier runs of this scrape."
    ),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Collect images from web pages; rerun the same command to resume, skipping what is done."""
    from harvest.scrape.crawler import ScrapeOptions, ScrapeProgress, scrape

    options = ScrapeOptions(
        seeds=tuple(urls),
        label=label,
        label_from=label_from,
        select=select,
        follow=follow,
        depth=depth,
        render=render,
        scroll=scroll,
        max_images=max_images,
        max_pages=max_pages,
        concurrency=concurrency,
        allow_private=allow_private,
        ignore_robots=ignore_robots,
        retry_failed=retry_failed,
        fetch=fetch_options(
            user_agent, per_host_rate, per_host_concurrency, allow_private, ignore_robots, item_timeout
        ),
    )
    ws = open_workspace(workspace)
    with make_progress() as progress:
        pages_task = progress.add_task("pages", total=None, rate="")
        images_task = progress.add_task("images", total=None, rate="")

        def on_progress(state: ScrapeProgress) -> None:
            errors = ", ".join(f"{kind} {count}" for kind, count in state.errors.most_common(4))
            pages = state.pages_done + state.pages_failed
            progress.update(pages_task, completed=pages, total=max(state.pages_queued, pages) or None)
            progress.update(
                images_task,
                completed=state.images_done,
                total=max(state.images_queued, state.images_done) or None,
                rate=f"{state.rate:,.0f} img/s" + (f" · errors: {errors}" if errors else ""),
            )

        result = scrape(ws, options, on_progress=on_progress)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escaped(warning)}", highlight=False, soft_wrap=True)
    if result.error is not None:  # nothing it was asked could be done: the summary with --json, and one line
        if json_output:
            emit_json({**result.to_json(), "error": result.error})
        err_console.print(f"[bold red]error:[/] {escaped(result.error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if json_output:
        emit_json(result.to_json())
        return
    document = result.to_json()
    pages = document["pages"]
    extra = {
        "pages": f"{pages['fetched']} ({pages['failed']} failed)",
        "pending": str(pages["pending"] + document["images"]["pending"]),
        "images/s": rate_text(result.summary.total, result.seconds, digits=1),
    }
    out_console.print(counts_table("Scrape summary", result.summary, extra))
    render_summary_problems(result.summary.problems)
    if document["limited"] and not result.pages_limited:  # the page budget said so in its warning
        err_console.print("stopped at --max-images; run the same command again to continue")


# --- harvest watch ---------------------------------------------------------------------------------------------


@app.command("watch")
@user_errors
def watch_command(
    directory: Path = typer.Argument(..., help="Folder to watch (sub-folders too)."),
    label: str = typer.Option(None, "--label", "-l", help="Label for the images (with --labels-from-folders: top)."),
    labels_from_folders: bool = typer.Option(
        False, "--labels-from-folders", help="Label an image in DIR/NAME/... with NAME (the top level gets --label)."
    ),
    once: bool = typer.Option(False, "--once", help="Ingest what is there (waits for files being written), then end."),
    poll: bool = typer.Option(False, "--poll", help="Poll instead of file-system events (network drives)."),
    move_to: Path = typer.Option(None, "--move-to", help="Move each stored file to this folder (sub-folders kept)."),
    delete: bool = typer.Option(False, "--delete", help="Delete each file once its image is stored."),
    settle: float = typer.Option(
        2.0, "--settle", help="Seconds a file's size and mtime must stay the same before it is taken.", min=0
    ),
    rescan_every: float = typer.Option(30.0, "--rescan-every", help="Seconds between full scans of the folder."),
    stuck_after: float = typer.Option(
        600.0, "--stuck-after", help="A file still being written after this many seconds is reported, not taken."
    ),
    workers: int = typer.Option(
        None, "--workers", min=1, help="Processes for decoding and hashing (default: one per core)."
    ),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Ingest images as they arrive in a folder (screenshots, downloads), each once it is complete. Runs until
    Ctrl-C or SIGTERM, which finish the file in hand and print the summary."""
    from harvest.engine import Engine
    from harvest.watch import WatchOptions, WatchSource

    options = WatchOptions(
        directory, label=label, labels_from_folders=labels_from_folders, once=once, poll=poll, move_to=move_to,
        delete=delete, settle=settle, rescan=rescan_every, stuck_after=stuck_after,
    )  # fmt: skip
    colours = {"added": "green", "duplicate": "cyan", "rejected": "red", "failed": "red", "stuck": "yellow"}

    def on_event(what: str, detail: str) -> None:
        if what == "mode":
            err_console.print(
                f"watching [bold]{escaped(source.options.root)}[/] ({escaped(detail)}); Ctrl-C to stop", highlight=False
            )
        else:
            colour = colours.get(what, "dim")
            err_console.print(f"[{colour}]{escaped(what)}[/] {escaped(detail)}", highlight=False, soft_wrap=True)

    source = WatchSource(options, on_event=on_event)
    ws = open_workspace(workspace)
    run = Engine(ws, workers=workers).run(source)
    if json_output:
        emit_json(run.to_json())
        return
    render_summary(run.summary, run.seconds)


def render_summary_problems(problems: list[dict[str, str]], *, limit: int | None = None, quiet: bool = False) -> None:
    """The problems table of every collector: one row per item with its reason, at most `limit` rows (the
    rest are counted; --json has them all). With no problems, a green line unless `quiet` (nothing was done)."""
    if not problems:
        if not quiet:
            err_console.print("[green]no problems[/]")
        return
    shown = problems[:limit] if limit is not None else problems
    table = Table(title=f"{len(problems):,} problem(s)", show_header=True)
    table.add_column("item", overflow="fold")
    table.add_column("reason", overflow="fold")
    for problem in shown:
        table.add_row(plain(problem["item"]), plain(problem["reason"]))
    out_console.print(table)
    if len(problems) > len(shown):
        err_console.print(f"... and {len(problems) - len(shown):,} more (all of them with --json)")


if __name__ == "__main__":  # pragma: no cover
    app()
