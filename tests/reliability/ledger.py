"""The reliability suite's ledger: every test records the faults it injected and what survived them.

At the end of the session each pytest process (one, or one per xdist worker) writes its entries to
`build/reliability/figures-<worker>.json`, stamped with the test run's id; `tests.reliability.table` merges the
files of the newest run into the Markdown table the README shows (`--write-readme` puts it there). A fault
is one injected event (a SIGKILL, a server restart, a hostile file...); `survived` counts those after which the
rerun ended consistent; `items_lost` and `items_doubled` count images that a source offered and the catalog
lacks, or holds twice, after the final rerun — both must be 0.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["FIGURES", "Entry", "Ledger", "assert_zero_loss", "newest_rows", "peak_child_rss_mb"]

FIGURES = Path(__file__).resolve().parents[2] / "build" / "reliability"


@dataclass
class Entry:
    """One row of the table: a fault kind injected into one command."""

    area: str  # "kill", "servers", "concurrency", "disk", "hostile"
    case: str  # what was done to what, in a user's words: "SIGKILL during `harvest import`"
    faults: int
    survived: int
    items_lost: int = 0
    items_doubled: int = 0
    peak_rss_mb: float | None = None
    note: str = ""


@dataclass
class Ledger:
    entries: list[Entry] = field(default_factory=list)

    def record(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        return entry

    def write(self, run: str, worker: str, folder: Path = FIGURES) -> None:
        if not self.entries:
            return
        folder.mkdir(parents=True, exist_ok=True)
        rows = [asdict(e) for e in self.entries]
        document = {"run": run, "written": time.time(), "rows": rows}
        (folder / f"figures-{worker}.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def newest_rows(folder: Path = FIGURES) -> list[dict[str, object]]:
    """The rows of the newest test run, from all its workers' files, sorted by area and case."""
    documents = [json.loads(path.read_text(encoding="utf-8")) for path in folder.glob("figures-*.json")]
    if not documents:
        return []
    newest = max(documents, key=lambda doc: doc["written"])["run"]
    rows = [row for doc in documents if doc["run"] == newest for row in doc["rows"]]
    return sorted(rows, key=lambda row: (str(row["area"]), str(row["case"])))


def peak_child_rss_mb() -> float:
    """The largest resident set of any waited-for child so far, in MiB (ru_maxrss is in KiB on Linux).

    Children inherit nothing of it across exec on Linux only for the exec'd image; a test that needs one
    command's own peak reads `VmHWM` from /proc/<pid>/status before the child exits instead."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def assert_zero_loss(entry: Entry) -> None:
    """What every row promises: every fault survived, nothing lost, nothing doubled (record first, then assert,
    so that a failing run's table shows the failure too)."""
    assert entry.items_lost == 0, entry
    assert entry.items_doubled == 0, entry
    assert entry.survived == entry.faults, entry
