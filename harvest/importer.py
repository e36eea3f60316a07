"""`harvest import` and the `folder` source: files and folders (recursive) into the workspace, in parallel."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harvest.engine import Engine, Run
from harvest.labels import InvalidLabel, collector_label, fallback_label
from harvest.paths import file_source, printable_path
from storage.catalog.known_files import known_files
from storage.errors import GleanerError
from storage.ingest import IngestItem, IngestSummary, Outcome
from storage.workspace import Workspace

__all__ = [
    "FolderSource",
    "ImportResult",
    "class_folder_warning",
    "discover",
    "folder_label",
    "import_paths",
]


@dataclass(frozen=True)
class Candidate:
    path: Path
    folder_label: str | None  # the first folder under the root it was found under (None: at the top level)
    root: Path | None = None  # the folder argument it was found under (None: a file argument)


@dataclass
class ImportResult:
    summary: IngestSummary
    run_id: int
    seen: int
    warnings: list[str] = field(default_factory=list)


def folder_label(path: Path, root: Path) -> str | None:
    """The first folder under `root` on the way to the file (ImageFolder layout: root/a/b/x.jpg is `a`);
    None for a file at the top level of `root`."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None


def class_folder_warning(root: Path, count: int) -> str:
    """What --labels-from-folders says when a root holds images but no sub-folders (a class folder)."""
    return (
        f"{printable_path(root)}: --labels-from-folders found no sub-folders, so its {count:,} image(s) are"
        " unlabelled; labels come from the folders under the path given (root/<label>/...): give the parent"
        " folder, or use --label"
    )


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
                for name in sorted(filenames):
                    if not name.startswith("."):
                        yield Candidate(folder / name, folder_label(folder / name, root), root)
        else:
            yield Candidate(root, None)  # a file, a dangling link or a missing path: ingest says which


@dataclass
class FolderSource:
    """Files and folders (recursive); the workers read each file themselves."""

    paths: Sequence[Path]
    label: str | None = None
    labels_from_folders: bool = False
    on_start: Callable[[int], None] | None = None
    skip_catalogued: bool = False  # a job's folder: files already catalogued from the same path (same size,
    # not modified since) are passed over before admission, so a budgeted job moves on through the folder
    kind: str = "import"
    _candidates: list[Candidate] | None = field(default=None, init=False, repr=False)

    def config(self) -> dict[str, Any]:
        paths = [printable_path(os.path.abspath(p)) for p in self.paths]
        return {"paths": paths, "label": self.label, "labels_from_folders": self.labels_from_folders}

    def check(self) -> None:
        """User errors, before a run is recorded: a bad --label, no path that exists, nothing to import."""
        fallback_label(self.label)
        missing = [path for path in self.paths if not os.path.lexists(path)]
        if missing and len(missing) == len(self.paths):  # among others, a missing path is one rejected item
            raise GleanerError(f"{', '.join(str(p) for p in missing)}: no such file or folder")
        self._candidates = list(discover(self.paths))  # small; it gives the progress bar its total
        if not self._candidates:
            raise GleanerError(f"no images found in {', '.join(str(p) for p in self.paths)} (hidden files are skipped)")

    def collect(self, engine: Engine, run: Run) -> None:
        candidates = self._candidates if self._candidates is not None else list(discover(self.paths))
        if self.skip_catalogued:
            candidates = self._not_catalogued(engine, run, candidates)
        if self.on_start:
            self.on_start(len(candidates))
        fallback = fallback_label(self.label)

        def items() -> Iterator[IngestItem]:
            for c in candidates:
                source = file_source(c.path)
                try:
                    label = (collector_label(c.folder_label) if self.labels_from_folders else None) or fallback
                except InvalidLabel as exc:  # this item only: the run goes on
                    engine.reject(run, source.uri, str(exc))
                    continue
                yield IngestItem(source=source, label=label, path=str(c.path))

        if self.labels_from_folders:
            warnings = _class_folders(candidates)
            run.report.setdefault("warnings", []).extend(warnings)  # recorded with the run; the CLI prints them
        for _outcome in engine.ingest(run, items(), origin="folder"):
            pass

    @staticmethod
    def _not_catalogued(engine: Engine, run: Run, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates the catalog does not hold yet from their path; the others are counted in the run's
        report (`already_catalogued`)."""
        uris = {c.path: file_source(c.path).uri for c in candidates}
        paths = list(uris.values())
        known = engine.workspace.catalog.transact(lambda conn: known_files(conn, paths), write=False)
        fresh = []
        for candidate in candidates:
            entry = known.get(uris[candidate.path])
            try:
                stat = os.stat(candidate.path)
            except OSError:
                fresh.append(candidate)  # the ingest reports what is wrong with it
                continue
            if entry is None or not entry.matches(stat.st_size, stat.st_mtime):
                fresh.append(candidate)
        skipped = len(candidates) - len(fresh)
        if skipped:
            run.report["already_catalogued"] = int(run.report.get("already_catalogued", 0)) + skipped
        return fresh


def _class_folders(candidates: list[Candidate]) -> list[str]:
    """A warning per folder argument whose images are all at its top level (nothing to take labels from)."""
    by_root: dict[Path, list[Candidate]] = {}
    for candidate in candidates:
        if candidate.root is not None:
            by_root.setdefault(candidate.root, []).append(candidate)
    return [
        class_folder_warning(root, len(found))
        for root, found in by_root.items()
        if all(c.folder_label is None for c in found)
    ]


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
    source = FolderSource(paths, label=label, labels_from_folders=labels_from_folders, on_start=on_start)
    run = Engine(workspace, workers=workers, on_outcome=on_outcome).run(source)
    warnings = list(run.report.get("warnings", []))
    return ImportResult(summary=run.summary, run_id=run.id, seen=run.summary.total, warnings=warnings)
