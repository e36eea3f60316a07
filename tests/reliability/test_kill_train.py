"""SIGKILL at seeded random points of `train run`, each followed by `train run --resume` (issue 14, item 3).

The run is the real console script on a real snapshot (scikit-learn's scanned digits, 200 images at 16 px, as
in tests/train), with its default augmentation (so the RNG states must survive the kills), one network and
one torch thread (a CPU run is then repeatable: train/engine.py reseeds every epoch from the seed). First an
uninterrupted run, then ten kills (tests/reliability/kill.py: in the start-up, inside an epoch, after the
last epoch while it evaluates and writes the report; the whole process group or the command alone), each
followed by what a user runs next in the same folder: `train run --resume --out DIR` once a checkpoint
exists, else the same `train run --out DIR` again (what `--resume` tells them without one). The run that
finishes must end with what the uninterrupted one ended with: every epoch's figures in metrics.csv, the test
accuracy and per-class figures of report.json, the test predictions bit for bit, and its catalog run done;
no catalog run may be left "running" (a start killed before its first checkpoint ends up interrupted).
"""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from curate.fsck import FsckReport
from storage.catalog.schema import runs
from storage.workspace import open_workspace
from tests.reliability.kill import BIN, child_environment, fsck_report, kill_points, kill_trials, measure
from tests.reliability.ledger import Entry, Ledger, assert_zero_loss
from tests.train.conftest import SNAPSHOT, make_workspace, write_digits
from train.report import load_evaluation

TRIALS = 10
EPOCHS = 4
OPTIONS = [
    "--dataset", SNAPSHOT, "--epochs", str(EPOCHS), "--img-size", "16", "--batch-size", "16", "--members", "1",
    "--depth", "1", "--device", "cpu", "--seed", "3",
]  # fmt: skip


@pytest.fixture(scope="module")
def digits_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("kill-train")
    write_digits(root / "digits", per_class=20)
    workspace = make_workspace(root / "ws", root / "digits")
    workspace.close()
    yield root / "ws"


def epochs_done(run_dir: Path) -> int:
    """Rows of the run's metrics.csv: epochs finished (the file is rewritten whole after each one)."""
    try:
        return max(0, len((run_dir / "metrics.csv").read_text(encoding="utf-8").splitlines()) - 1)
    except OSError:
        return 0


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def outcome(run_dir: Path) -> dict[str, Any]:
    """What a finished run ended with, without its timings and folder names."""
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    evaluation = load_evaluation(run_dir)
    return {
        "metrics": metrics_rows(run_dir),
        "accuracy": report["accuracy"],
        "accuracy_ci": report["accuracy_ci"],
        "per_class": report["per_class"],
        "confusion": report["confusion"],
        "best_epoch": report["best_epoch"],
        "model_alone": report["model_alone"],
        "probs": evaluation.predictions.probs.tobytes(),
        "sha256": evaluation.sha256,
    }


def train_runs(ws: Path) -> dict[str, list[int]]:
    """The catalog's training runs by status."""
    found: dict[str, list[int]] = {}
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        for run_id, status in conn.execute(select(runs.c.id, runs.c.status).where(runs.c.kind == "train")):
            found.setdefault(status, []).append(int(run_id))
    return found


def finished(ws: Path, run_dir: Path) -> bool:
    """The run in `run_dir` has written its report and its catalog run is done (nothing left to resume)."""
    if not (run_dir / "report.json").is_file():
        return False
    run_id = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["run_id"]
    return run_id in train_runs(ws).get("done", [])


def test_sigkill_during_train_run_then_resume(ledger: Ledger, digits_workspace: Path, tmp_path: Path) -> None:
    ws = digits_workspace
    env = child_environment(tmp_path / "tmp")
    train = str(BIN / "train")

    def command(run_dir: Path) -> list[str]:
        """What a user runs in the folder: a fresh run, or `--resume` once there is a checkpoint."""
        if (run_dir / "checkpoints" / "last.pt").is_file():
            return [train, "run", "--resume", "--out", str(run_dir), "--json", "-w", str(ws)]
        return [train, "run", *OPTIONS, "--out", str(run_dir), "--json", "-w", str(ws)]

    def fsck(_run_dir: Path) -> FsckReport:
        return fsck_report(ws)

    reference = tmp_path / "reference"
    span = measure(command(reference), env, lambda: epochs_done(reference))
    expected = outcome(reference)
    assert json.loads(span.stdout)["status"] == "done" and expected["metrics"], span.stdout

    fresh = lambda n: tmp_path / f"run{n}"  # noqa: E731
    complete = lambda run_dir: finished(ws, run_dir)  # noqa: E731
    # Moments over the whole span, whatever is done: a resumed run starts, loads and evaluates as a fresh one does
    points = kill_points(14_6)
    trials, run_dirs = kill_trials(command, env, points, span, fresh, kills=TRIALS, check=fsck, complete=complete)
    finals = []
    for run_dir in run_dirs:
        if not finished(ws, run_dir):  # the last folder: resume it to its end
            done = subprocess.run(command(run_dir), env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        finals.append(outcome(run_dir))
    same = [final == expected for final in finals]
    statuses = train_runs(ws)
    killed = [trial for trial in trials if trial.kill.killed]
    entry = ledger.record(
        Entry(
            area="kill",
            case=f"SIGKILL at a random point of `train run` ({TRIALS} seeded trials), `train run --resume`",
            faults=len(killed),
            survived=sum(trial.consistent for trial in killed) if all(same) and "running" not in statuses else 0,
            items_lost=0,
            items_doubled=0,
            note=f"{len(run_dirs)} run folder(s) taken to their end, {sum(same)} with the uninterrupted run's "
            "metrics, test accuracy, per-class figures and predictions; catalog runs: "
            + ", ".join(f"{len(ids)} {status}" for status, ids in sorted(statuses.items())),
        )
    )
    details = "\n".join(map(str, trials))
    assert_zero_loss(entry)
    assert len(killed) == TRIALS, details
    for final in finals:
        differing = {key for key in expected if final[key] != expected[key]}
        assert not differing, (differing, {key: (final[key], expected[key]) for key in differing - {"probs"}})
    # No run left "running" by a kill: each folder's run is done (resumed to its end); a start killed before its
    # first checkpoint, which the folder's next start replaced, is recorded as interrupted.
    assert set(statuses) <= {"done", "interrupted"} and statuses["done"], statuses
    assert all(finished(ws, run_dir) for run_dir in run_dirs)
