"""`curate`: labels, integrity checks and (later) dedupe, review and export. Thin commands over the library."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from curate.check import check_quality
from curate.dedupe.clusters import (
    DEFAULT_THRESHOLD,
    apply_report,
    choose_keeper,
    confirm_duplicates,
    dedupe_decisions,
    ensure_hashes,
    find_clusters,
    mark_not_duplicates,
    undo_duplicates,
)
from curate.export import EXPORTERS, export_formats, prepare_out
from curate.fsck import fsck
from curate.report_html import check_writable, label_text, write_dedupe_html
from curate.snapshot import create_snapshot, delete_snapshot, list_snapshots, load_manifest
from curate.splits import SPLITS, parse_ratios
from storage.catalog import (
    add_label,
    default_actor,
    delete_label,
    label_counts,
    label_history,
    merge_labels,
    normalize_label,
    rename_label,
    resolve_sha,
    set_label,
    unlabelled_count,
)
from storage.catalog.images import image_exts
from storage.clikit import (
    App,
    JsonOption,
    WorkspaceOption,
    add_version_option,
    emit_json,
    make_progress,
    out_console,
    user_errors,
)
from storage.errors import GleanerError
from storage.workspace import Workspace, open_workspace

app = App(help="Curate a Gleaner dataset: labels, integrity, duplicates.", no_args_is_help=True, add_completion=False)
add_version_option(app, "curate")
label_app = typer.Typer(help="Manage labels; every change is kept in the label history.", no_args_is_help=True)
app.add_typer(label_app, name="label")

HASH_BITS = 128  # pHash + dHash: the largest distance a --threshold can name


def _check_threshold(threshold: int) -> int:
    if not 0 <= threshold <= HASH_BITS:
        raise GleanerError(
            f"--threshold must be a distance from 0 to {HASH_BITS} (pHash + dHash bits), not {threshold}"
        )
    return threshold


@app.command("labels")
@user_errors
def labels_command(
    suspects: bool = typer.Option(
        False, "--suspects", help="List the suspected label errors of the newest `train audit`, most likely first."
    ),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Current labels with their image counts, and how many images have none (rejected, duplicate and missing
    images not counted); with --suspects, the labels that are probably wrong."""
    ws = open_workspace(workspace)
    if suspects:
        _print_suspects(ws, json_output)
        return
    with ws.catalog.read() as conn:
        counts = label_counts(conn)
        unlabelled = unlabelled_count(conn)
    if json_output:
        emit_json({"labels": counts, "unlabelled": unlabelled})
        return
    table = Table(title="Labels")
    table.add_column("label")
    table.add_column("images", justify="right")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    table.add_row("[dim](unlabelled)[/]", f"[dim]{unlabelled:,}[/]")
    table.add_section()
    table.add_row("[bold]total", f"[bold]{sum(counts.values()) + unlabelled:,}")
    out_console.print(table)


def _print_suspects(ws: Workspace, json_output: bool) -> None:
    from curate.suspects import list_suspects

    found = list_suspects(ws)
    if json_output:
        emit_json(found)
        return
    table = Table(title=f"Suspected label errors (audit of {found['audit']['snapshot']}, most likely first)")
    for column in ("sha256", "label", "suggested", "score", "sources"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for item in found["suspects"]:
        table.add_row(
            item["sha256"][:12], escape(item["label"]), escape(item["suggested"]), f"{item['score']:.3f}",
            ", ".join(item["sources"]),
        )  # fmt: skip
    out_console.print(table)
    out_console.print(f"{len(found['suspects'])} suspects; `curate label set` or `curate review` fixes them")


@label_app.command("add")
@user_errors
def label_add(
    names: list[str] = typer.Argument(..., help="New label names."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Create labels (existing ones are left as they are)."""
    ws = open_workspace(workspace)
    with ws.catalog.write() as conn:
        created = [normalize_label(name) for name in names if add_label(conn, name, actor=default_actor())]
    _report(json_output, {"created": created}, f"created {len(created)} label(s): {', '.join(created) or '-'}")


@label_app.command("rename")
@user_errors
def label_rename(old: str, new: str, workspace: Path = WorkspaceOption, json_output: bool = JsonOption) -> None:
    """Rename a label; its images keep it under the new name."""
    ws = open_workspace(workspace)
    with ws.catalog.write() as conn:
        count = rename_label(conn, old, new, actor=default_actor())
    _report(json_output, {"renamed": old, "to": new, "images": count}, f"renamed {old} → {new} ({count} images)")


@label_app.command("merge")
@user_errors
def label_merge(
    sources: list[str] = typer.Argument(..., help="Labels to merge away."),
    into: str = typer.Option(..., "--into", help="The label that receives their images."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Move every image of SOURCES to --into and remove the SOURCES labels."""
    ws = open_workspace(workspace)
    with ws.catalog.write() as conn:
        moved = merge_labels(conn, sources, into, actor=default_actor())
    _report(
        json_output,
        {"merged": sources, "into": into, "images": moved},
        f"merged {', '.join(sources)} → {into} ({moved} images)",
    )


@label_app.command("delete")
@user_errors
def label_delete(
    name: str = typer.Argument(..., help="The label to remove."), workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:  # fmt: skip
    """Remove a label; its images become unlabelled (each change is kept in the label history)."""
    ws = open_workspace(workspace)
    with ws.catalog.write() as conn:
        count = delete_label(conn, name, actor=default_actor())
    _report(json_output, {"deleted": name, "images": count}, f"deleted {name}; {count} image(s) are now unlabelled")


@label_app.command("set")
@user_errors
def label_set(
    label: str = typer.Argument(None, help="The label to give (created if new); with --clear, the first SHA256."),
    shas: list[str] = typer.Argument(None, help="Image sha256 digests or unique prefixes (6+ hex digits)."),
    from_file: Path = typer.Option(None, "--from-file", help="Read digests from a file, one per line."),
    clear: bool = typer.Option(False, "--clear", help="Remove the images' label instead: `label set --clear SHA...`."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Set the label of images by sha256 (a human decision: it overrides labels from collectors)."""
    wanted = list(shas or [])
    if clear:  # every argument is an image; a leading '-' (the old placeholder label) is still accepted
        wanted = [label, *wanted] if label not in (None, "-") else wanted
    elif label is None:
        raise GleanerError("name the label to give (or use --clear to remove the images' label)")
    if from_file:
        try:
            wanted += [line.strip() for line in from_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise GleanerError(f"cannot read {from_file}: {exc.strerror}") from None
    if not wanted:
        raise GleanerError("name at least one image (sha256 arguments or --from-file)")
    ws = open_workspace(workspace)
    with ws.catalog.write() as conn:
        full = [resolve_sha(conn, sha) for sha in wanted]
        changed = set_label(conn, full, None if clear else label, actor=default_actor(), origin="human")
    target = "no label" if clear else label
    _report(
        json_output,
        {"label": None if clear else label, "changed": changed, "images": len(full)},
        f"{changed} of {len(full)} image(s) now have {target}",
    )


@label_app.command("history")
@user_errors
def label_history_command(
    sha: str = typer.Argument(None, help="An image's sha256 (or prefix); all images when omitted."),
    limit: int = typer.Option(50, "--limit", help="How many events, newest first."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Who changed which label, when, from what to what."""
    ws = open_workspace(workspace)
    with ws.catalog.read() as conn:
        events = label_history(conn, resolve_sha(conn, sha) if sha else None, limit=limit)
    if json_output:
        emit_json({"events": events})
        return
    table = Table(title="Label history")
    for column in ("when", "image", "action", "before", "after", "origin", "who"):
        table.add_column(column)
    for event in events:
        table.add_row(
            f"{event['at']:%Y-%m-%d %H:%M:%S}",
            (event["sha256"] or "")[:12],
            event["action"],
            event["before"] or "",
            event["after"] or "",
            event["origin"],
            event["actor"],
        )
    out_console.print(table)


@app.command("fsck")
@user_errors
def fsck_command(
    fix: bool = typer.Option(False, "--fix", help="Delete orphan objects; mark missing and corrupt images."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Check that every catalog image has an object whose bytes hash to its sha256, and find orphans."""
    ws = open_workspace(workspace)
    with make_progress(transient=True) as progress:
        task = progress.add_task("checking", total=None, rate="")
        report = fsck(
            ws,
            fix=fix,
            on_start=lambda total: progress.update(task, total=total),
            on_checked=lambda: progress.advance(task),
        )
    if json_output:
        emit_json(report.to_json())
    else:
        verdict = "[green]ok[/]" if report.ok else "[red]problems found[/]"
        out_console.print(f"checked {report.checked:,} images: {verdict}")
        for name in ("missing", "corrupt", "orphans"):
            items = getattr(report, name)
            if items:
                out_console.print(f"[bold]{name}[/] ({len(items)}):")
                for item in items[:50]:
                    out_console.print(f"  {item}", highlight=False)
                if len(items) > 50:
                    out_console.print(f"  … and {len(items) - 50} more (use --json for all)")
        if report.fixed:
            out_console.print("fixed: " + ", ".join(f"{k} {v}" for k, v in report.fixed.items()))
    if not report.ok and not fix:
        raise typer.Exit(1)


@app.command("check")
@user_errors
def check_command(
    remeasure: bool = typer.Option(False, "--remeasure", help="Measure every image again, not only new ones."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Quality checks: blurry, dark, bright, low-information, odd aspect ratio, too small, greyscale, odd size."""
    ws = open_workspace(workspace)
    with make_progress(transient=True) as progress:
        task = progress.add_task("measuring", total=None, rate="")
        report = check_quality(
            ws,
            remeasure=remeasure,
            on_start=lambda total: progress.update(task, total=total),
            on_progress=lambda: progress.advance(task),
        )
    if json_output:
        emit_json(report.to_json())
        return
    table = Table(title=f"Quality flags ({report.checked:,} images, {report.measured:,} measured now)")
    table.add_column("flag")
    table.add_column("images", justify="right")
    for flag, count in report.counts.items():
        table.add_row(flag, f"{count:,}")
    out_console.print(table)
    out_console.print("flags are stored in the catalog; `curate review` filters by them", highlight=False)


def _dedupe_decision(
    ws: Workspace,
    json_output: bool,
    not_duplicate: tuple[str, str] | None,
    duplicate: tuple[str, str] | None,
    keeper: str | None,
    decisions: bool,
) -> bool:
    """Record or list a person's near-duplicate decision, if one was asked for; True when one was."""
    if not_duplicate:
        a, b = mark_not_duplicates(ws, *not_duplicate, default_actor())
        _report(json_output, {"not_duplicates": [a, b]}, f"{a[:12]} and {b[:12]} are not duplicates: never grouped")
    elif duplicate:
        kept, copy = confirm_duplicates(ws, *duplicate, default_actor())
        _report(json_output, {"duplicate": copy, "keeper": kept}, f"{copy[:12]} is a duplicate of {kept[:12]}")
    elif keeper:
        chosen = choose_keeper(ws, keeper, default_actor())
        _report(json_output, {"keeper": chosen}, f"{chosen[:12]} is its group's keeper")
    elif decisions:
        history = dedupe_decisions(ws)
        if json_output:
            emit_json({"decisions": history})
        else:
            table = Table(title="Near-duplicate decisions")
            for column in ("when", "who", "decision", "images", "in force"):
                table.add_column(column)
            for row in history:
                shas = " ".join(str(s)[:12] for s in (row["a"], row["b"]) if s)
                table.add_row(
                    str(row["at"])[:19], str(row["actor"]), str(row["kind"]), shas, "no" if row["revoked_at"] else "yes"
                )
            out_console.print(table)
    else:
        return False
    return True


@app.command("dedupe")
@user_errors
def dedupe_command(
    threshold: int = typer.Option(
        DEFAULT_THRESHOLD, "--threshold", help="Largest pHash+dHash distance (0-128) that still counts as a copy."
    ),
    apply: bool = typer.Option(False, "--apply", help="Mark non-keepers as duplicates (reversible with --undo)."),
    undo: bool = typer.Option(False, "--undo", help="Clear every duplicate mark."),
    not_duplicate: tuple[str, str] | None = typer.Option(
        None, "--not-duplicate", help="Two sha256s (or prefixes) that are different images: never grouped."
    ),
    duplicate: tuple[str, str] | None = typer.Option(
        None, "--duplicate", help="KEEPER COPY: confirm that COPY is a duplicate of KEEPER (set aside, kept so)."
    ),
    keeper: str = typer.Option(None, "--keeper", help="sha256 (or prefix) to keep as its group's keeper."),
    decisions: bool = typer.Option(False, "--decisions", help="List the decisions people made, with history."),
    html_path: Path = typer.Option(None, "--html", help="Where to write the HTML report (default: WORKSPACE/reports)."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Find near-duplicate groups (flips, turns, crops, screenshots too), verified on the pixels; a dry run unless
    --apply. Unverified matches are listed as candidates for review, never set aside."""
    _check_threshold(threshold)
    ws = open_workspace(workspace)
    if _dedupe_decision(ws, json_output, not_duplicate, duplicate, keeper, decisions):
        return
    if undo:
        cleared = undo_duplicates(ws)
        _report(json_output, {"cleared": cleared}, f"cleared {cleared} duplicate mark(s)")
        return
    page_path = check_writable(html_path or ws.root / "reports" / "dedupe.html")
    with make_progress(transient=True) as progress:
        task = progress.add_task("hashing", total=None, rate="")
        ensure_hashes(ws, on_progress=lambda done, total: progress.update(task, completed=done, total=total))
        progress.update(task, description="verifying candidates", completed=0, total=None)
        report = find_clusters(
            ws, threshold, on_progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    changed = apply_report(ws, report) if apply else 0
    with ws.catalog.read() as conn:
        ext_of = image_exts(conn)
    page = write_dedupe_html(report, ws.store, ext_of, page_path)
    if json_output:
        emit_json({**report.to_json(), "applied": apply, "marked": changed, "html": str(page)})
        return
    table = Table(title=f"Verified near-duplicate groups ({report.images:,} images, threshold {threshold})")
    for column in ("keeper", "size", "members", "max distance", "labels"):
        table.add_column(column)
    for cluster in report.clusters[:30]:
        labels = sorted({label_text(m["label"]) for m in cluster.members})
        shown = ", ".join(labels) + (" [red](conflict)[/]" if cluster.conflict else "")
        table.add_row(
            cluster.keeper[:12],
            str(len(cluster.members)),
            " ".join(m["sha256"][:8] for m in cluster.members[1:6]),
            str(max(m["distance"] for m in cluster.members)),
            shown,
        )
    out_console.print(table)
    summary = report.to_json()
    out_console.print(
        f"{len(report.clusters)} group(s), {summary['duplicates']} duplicate(s), {summary['conflicts']} conflict(s); "
        f"{len(report.candidates)} unverified candidate pair(s) to review (never set aside); "
        f"{len(report.exact)} image(s) seen at several sources. Report: {page}",
        highlight=False,
    )
    if apply:
        out_console.print(f"marked {changed} image(s) as duplicates (undo: curate dedupe --undo)", highlight=False)
    elif report.clusters:
        out_console.print("dry run: nothing changed; --apply marks the non-keepers", highlight=False)


snapshot_app = typer.Typer(
    help="Freeze the dataset into an immutable, leak-free train/val/test version; `snapshot delete NAME` removes one."
)
app.add_typer(snapshot_app, name="snapshot")


@snapshot_app.callback(invoke_without_command=True)
@user_errors
def snapshot_command(
    ctx: typer.Context,
    name: str = typer.Option(None, "--name", help="Snapshot name (default: snap-YYYYmmdd-HHMMSS)."),
    ratios: str = typer.Option(
        "80/10/10", "--ratios", help="train/val/test shares adding up to 100 (or 1), e.g. 80/10/10 or 0.7,0.15,0.15."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the split assignment (same seed, same splits)."),
    threshold: int = typer.Option(
        DEFAULT_THRESHOLD, "--threshold", help="Near-duplicate threshold (0-128) for leak-free splits."
    ),
    accepted_only: bool = typer.Option(False, "--accepted-only", help="Only images accepted in review."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Freeze labelled, non-duplicate, non-rejected images into an immutable, leak-free train/val/test version."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        parsed = parse_ratios(ratios)
    except ValueError as exc:
        raise GleanerError(str(exc)) from None
    _check_threshold(threshold)
    ws = open_workspace(workspace)
    info = create_snapshot(ws, name=name, ratios=parsed, seed=seed, threshold=threshold, accepted_only=accepted_only)
    if json_output:
        emit_json(info.to_json())
        return
    table = Table(title=f"Snapshot {info.name} ({info.image_count:,} images, {info.meta['groups']:,} groups)")
    table.add_column("label")
    for split in SPLITS:
        table.add_column(split, justify="right")
    per_label = info.meta.get("per_label", {})
    for label, counts in per_label.items():
        table.add_row(label, *(f"{counts.get(split, 0):,}" for split in SPLITS))
    out_console.print(table)
    out_console.print(f"manifest: {ws.store.url_for(info.manifest_key)}", highlight=False)


@snapshot_app.command("delete")
@user_errors
def snapshot_delete_command(
    name: str = typer.Argument(..., help="The snapshot to remove (`curate snapshots` lists them)."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Remove a snapshot (its catalog row and manifest); the images stay in the catalog and the store."""
    ws = open_workspace(workspace)
    info = delete_snapshot(ws, name)
    if json_output:
        emit_json({"deleted": info.to_json()})
        return
    out_console.print(f"deleted snapshot {info.name} ({info.image_count:,} images; the images stay)", highlight=False)


@app.command("snapshots")
@user_errors
def snapshots_command(workspace: Path = WorkspaceOption, json_output: bool = JsonOption) -> None:
    """List the snapshots, oldest first."""
    ws = open_workspace(workspace)
    known = list_snapshots(ws)
    if json_output:
        emit_json({"snapshots": [s.to_json() for s in known]})
        return
    table = Table(title="Snapshots")
    for column in ("name", "images", "splits", "created"):
        table.add_column(column)
    for snap in known:
        splits = ", ".join(f"{k} {v}" for k, v in snap.meta.get("splits", {}).items())
        table.add_row(snap.name, f"{snap.image_count:,}", splits, f"{snap.created_at:%Y-%m-%d %H:%M}")
    out_console.print(table)


@app.command("export")
@user_errors
def export_command(
    format_name: str = typer.Option(..., "--format", help="imagefolder, csv, jsonl or webdataset."),
    out: Path = typer.Option(..., "--out", help="Output folder (created; must be empty unless --overwrite)."),
    snapshot: str = typer.Option(None, "--snapshot", help="Snapshot name (default: the newest)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Empty a non-empty --out folder first."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Write a snapshot in a standard layout: ImageFolder tree per split, CSV/JSONL manifests, WebDataset shards."""
    formats = export_formats()
    if format_name not in formats:
        raise GleanerError(f"unknown export format {format_name!r}; choose one of {', '.join(formats)}")
    ws = open_workspace(workspace)
    info, entries = load_manifest(ws, snapshot)
    prepare_out(out, overwrite=overwrite, keep=[ws.root, Path.cwd()])
    counts = EXPORTERS[format_name](entries, ws.store, out)
    document = {"snapshot": info.name, "format": format_name, "out": str(out), **counts}
    _report(
        json_output,
        document,
        f"exported snapshot {info.name} as {format_name} to {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
    )


@app.command("review")
@user_errors
def review_command(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --allow-remote (no TLS)."
    ),
    port: int = typer.Option(None, "--port", help="Port (default: 8765, or a free one when taken; 0: a free one)."),
    no_open: bool = typer.Option(False, "--no-open", help="Do not open a browser; just print the URL."),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a --host other than loopback (anyone who can reach it and has a link)."
    ),
    allow_host: list[str] = typer.Option(
        [], "--allow-host", help="Another Host name to serve with --allow-remote (a DNS name of this machine)."
    ),
    workspace: Path = WorkspaceOption,
) -> None:
    """Review labels, duplicates and model mistakes in a local, keyboard-first web app (prints a one-time URL)."""
    from curate.review.server import serve  # web dependencies load only for this command
    from storage.clikit import err_console

    if port is not None and not 0 <= port <= 65535:
        raise GleanerError(f"--port must be 0-65535 (0: a free one), not {port}")
    ws = open_workspace(workspace)
    serve(
        ws,
        host=host,
        port=port,
        open_browser=not no_open,
        announce=typer.echo,
        warn=lambda message: err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False),
        allow_remote=allow_remote,
        allowed_hosts=allow_host,
        announce_token=lambda token: err_console.print(
            f"scripts: send the header Authorization: Bearer {token} (the URL above opens one browser, once)",
            highlight=False,
            soft_wrap=True,
        ),
    )


def _report(json_output: bool, document: dict[str, object], message: str) -> None:
    if json_output:
        emit_json(document)
    else:
        out_console.print(message, highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app()
