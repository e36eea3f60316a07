"""`harvest import`: files and folders (recursive) into the workspace, in parallel."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.catalog import finish_run, start_run
from storage.ingest import IngestItem, Ingestor, IngestSummary, Outcome, source_for_path
from storage.workspace import Workspace

__all__ = ["ImportResult", "discover", "import_paths"]


@dataclass(frozen=True)
class Candidate:
    path: Path
    folder_label: str | None  # the name of the file's parent folder below the root it was found under


@dataclass
class ImportResult:
    summary: IngestSummary
    run_id: int
    seen: int


def discover(paths: Sequence[Path]) -> Iterator[Candidate]:
    """Yield files under the given paths in a stable order; hidden files and folders are skipped.

    Symlinks to files (dangling ones too) are yielded so that ingest can report them; symlinked folders
    are not followed, which keeps a loop of links from running forever.
    """
    for root in paths:
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                folder = Path(dirpath)
                label = folder.name if folder != root else None
                for name in sorted(filenames):
                    if not name.startswith("."):
                        yield Candidate(folder / name, label)
        else:
            yield Candidate(root, None)  # a file, a dangling link or a missing path: ingest says which


def import_paths(
    workspace: Workspace,
    paths: Sequence[Path],
    *,
    label: str | None = None,
    labels_from_folders: bool = False,
    workers: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> ImportResult:
    """Import every file under `paths`; bad files become problems, never exceptions."""
    candidates = list(discover(paths))  # a list of paths is small; it gives the progress bar its total
    if on_start:
        on_start(len(candidates))
    config = {"paths": [str(p) for p in paths], "label": label, "labels_from_folders": labels_from_folders}
    with workspace.catalog.write() as conn:
        run_id = start_run(conn, "import", config)
    ingestor = Ingestor.for_workspace(workspace, origin="folder", run_id=run_id)
    summary = IngestSummary()

    def items() -> Iterator[IngestItem]:
        for candidate in candidates:
            chosen = (candidate.folder_label if labels_from_folders else None) or label
            yield IngestItem(source=source_for_path(candidate.path), label=chosen, path=str(candidate.path))

    status = "interrupted"
    try:
        for outcome in ingestor.ingest_many(items(), workers=workers, on_outcome=on_outcome):
            summary.add(outcome)
        status = "done"
    finally:
        with workspace.catalog.write() as conn:
            finish_run(conn, run_id, status, summary.to_json())
    return ImportResult(summary=summary, run_id=run_id, seen=summary.total)
