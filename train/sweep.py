"""`train sweep`: every combination of learning rates and epoch counts, repeated with different seeds.

The images are decoded once and shared by all trials. Each combination reports the median over its repeats
of the final epoch's train/validation accuracy and loss and of the wall time; the best combination (highest
median validation accuracy, then lowest validation loss) is marked in the table, the CSV and the HTML page.
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from itertools import product
from pathlib import Path
from typing import Any

from storage.catalog import finish_run, start_run
from storage.errors import GleanerError
from storage.workspace import Workspace
from train.config import TrainConfig
from train.run import Callbacks, fit_prepared, prepare_run, run_meta
from train.rundir import write_meta

__all__ = ["SWEEP_FIELDS", "SweepRow", "run_sweep", "summarize"]

SWEEP_FIELDS = ("lr", "epochs", "repeats", "train_acc", "val_acc", "train_loss", "val_loss", "seconds", "best")


@dataclass
class SweepRow:
    lr: float
    epochs: int
    repeats: int
    train_acc: float
    val_acc: float | None
    train_loss: float
    val_loss: float | None
    seconds: float
    best: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def summarize(trials: Sequence[dict[str, Any]]) -> list[SweepRow]:
    """Median per (lr, epochs) over repeats; the best row is marked. Pure, for tests."""
    groups: dict[tuple[float, int], list[dict[str, Any]]] = {}
    for trial in trials:
        groups.setdefault((trial["lr"], trial["epochs"]), []).append(trial)
    rows = []
    for (lr, epochs), members in groups.items():
        rows.append(
            SweepRow(
                lr=lr,
                epochs=epochs,
                repeats=len(members),
                train_acc=_median([m["train_acc"] for m in members]) or 0.0,
                val_acc=_median([m["val_acc"] for m in members]),
                train_loss=_median([m["train_loss"] for m in members]) or 0.0,
                val_loss=_median([m["val_loss"] for m in members]),
                seconds=_median([m["seconds"] for m in members]) or 0.0,
            )
        )

    def score(row: SweepRow) -> tuple[float, float]:
        if row.val_acc is None:
            return (row.train_acc, -row.train_loss)
        return (row.val_acc, -(row.val_loss or 0.0))

    if rows:
        max(rows, key=score).best = True
    return rows


def _write_outputs(out: Path, rows: list[SweepRow], trials: list[dict[str, Any]], title: str) -> None:
    with (out / "sweep.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SWEEP_FIELDS)
        writer.writeheader()
        writer.writerows(row.to_json() for row in rows)
    with (out / "trials.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(trials[0]))
        writer.writeheader()
        writer.writerows(trials)
    (out / "sweep.json").write_text(
        json.dumps({"rows": [r.to_json() for r in rows], "trials": trials}, indent=2), encoding="utf-8"
    )
    head = "".join(f"<th>{escape(name)}</th>" for name in SWEEP_FIELDS[:-1])
    body = []
    for row in rows:
        data = row.to_json()
        cells = "".join(f"<td>{'' if data[k] is None else escape(str(data[k]))}</td>" for k in SWEEP_FIELDS[:-1])
        style = ' style="background:#e6f4ea;font-weight:600"' if row.best else ""
        mark = " ★ best" if row.best else ""
        body.append(f"<tr{style}>{cells}<td>{mark}</td></tr>")
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sweep</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem}td,th{padding:.3rem .7rem;border-bottom:1px solid #ddd}"
        "th{background:#f4f4f4;text-align:left}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>Medians over repeats of the final epoch; time is wall seconds per trial.</p>"
        f"<table><thead><tr>{head}<th></th></tr></thead><tbody>{''.join(body)}</tbody></table></body></html>"
    )
    (out / "sweep.html").write_text(html, encoding="utf-8")


def run_sweep(
    workspace: Workspace,
    out: Path,
    base: TrainConfig,
    lrs: Sequence[float],
    epochs: Sequence[int],
    *,
    repeats: int = 1,
    dataset: str | None = None,
    callbacks: Callbacks | None = None,
) -> dict[str, Any]:
    """Run every (lr, epochs) combination `repeats` times (seeds seed, seed+1, ...) into OUT/<trial>/."""
    if repeats < 1:
        raise GleanerError(f"--repeats must be at least 1, not {repeats}")
    callbacks = callbacks or Callbacks()
    if base.patience is None:
        base = base.with_changes(patience=0)  # trials are compared at their last epoch: all run to the end
    if epochs and base.epochs is None:
        base = base.with_changes(epochs=max(epochs))  # the defaults (patience) follow the longest trial
    base, chosen, _, data = prepare_run(workspace, base, dataset, callbacks=callbacks)
    assert base.epochs is not None
    lrs, epochs = list(lrs) or [base.lr], list(epochs) or [base.epochs]
    out.mkdir(parents=True, exist_ok=True)
    grid = [(lr, ep, rep) for (lr, ep), rep in product(product(lrs, epochs), range(repeats))]
    with workspace.catalog.write() as conn:
        run_id = start_run(conn, "sweep", {**base.to_json(), "lrs": lrs, "epochs_grid": epochs, "repeats": repeats})
    trials: list[dict[str, Any]] = []
    status = "failed"
    try:
        for number, (lr, ep, rep) in enumerate(grid, start=1):
            config = base.with_changes(lr=lr, epochs=ep, seed=base.seed + rep)
            trial_dir = out / f"lr{lr:g}-ep{ep}-r{rep}"
            meta = run_meta(config, data, run_id, workspace, chosen)
            write_meta(trial_dir, meta)
            callbacks.phase(f"trial {number}/{len(grid)}: lr {lr:g}, {ep} epochs, repeat {rep + 1}")
            started = time.perf_counter()
            trainer, _ = fit_prepared(trial_dir, config, data, meta, callbacks=callbacks)
            last = trainer.state.history[-1]
            trials.append(
                {
                    "lr": lr, "epochs": ep, "repeat": rep, "seed": config.seed, "train_acc": last.train_acc,
                    "val_acc": last.val_acc, "train_loss": last.train_loss, "val_loss": last.val_loss,
                    "seconds": round(time.perf_counter() - started, 2), "run_dir": str(trial_dir),
                }
            )  # fmt: skip
        rows = summarize(trials)
        _write_outputs(out, rows, trials, f"Sweep: {base.model} on {data.snapshot.name}")
        best = next(row for row in rows if row.best)
        status = "done"
        return {
            "run_id": run_id,
            "out": str(out),
            "snapshot": data.snapshot.name,
            "rows": [r.to_json() for r in rows],
            "best": best.to_json(),
            "trials": trials,
            "files": {name: str(out / name) for name in ("sweep.csv", "sweep.html", "trials.csv", "sweep.json")},
        }
    finally:
        with workspace.catalog.write() as conn:
            finish_run(conn, run_id, status, {"out": str(out), "trials": len(trials), "status": status})
