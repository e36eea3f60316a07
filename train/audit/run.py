"""`train audit`: K models on K folds of a snapshot, grouped by near-duplicate group, so that every image gets class
probabilities from a model that saw neither it nor any near-copy of it; then the suspected label errors.

The fold models are trained with `train run`'s defaults chosen from the snapshot (the same engine, early stopping
on a tenth of each fold's training images), except `--members`: 1 network per fold instead of 3 below 2,000
images, which would make five folds three times as slow for probabilities that rank the same suspects
(bench/label_errors.py). No linear baseline is fitted or blended. On a CPU the folds train side by side in
worker processes (train.audit.folds); this process alone writes the catalog.

OUT holds audit.json (what the audit is: snapshot, class order, fold of every image, config), folds/fold-N/ (a
run folder per fold with its checkpoints, and oof.npz once the fold is done), and the report: report.json and
report.html. The probabilities go to the catalog fold by fold (storage.catalog.audits); the suspects when all
folds are done. `--resume` continues a killed audit with the folds not done (an interrupted fold continues from
its last epoch checkpoint).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from curate.snapshot import SplitItem, assign_splits
from storage.catalog import finish_run, start_run
from storage.catalog.audits import AuditPrediction, finish_audit, replace_suspects, start_audit, write_audit_predictions
from storage.catalog.runs import mark_run
from storage.errors import GleanerError
from storage.workspace import Workspace
from train.audit.folds import FoldJob, FoldResult, fold_processes, run_folds
from train.checkpoint import LAST
from train.config import TrainConfig
from train.crossval import assign_folds, fold_data, load_in_memory
from train.run import Callbacks, plan_run, run_meta
from train.rundir import write_meta

__all__ = ["AUDIT_FILE", "AUDIT_MEMBERS", "run_audit"]

log = logging.getLogger(__name__)
AUDIT_FILE = "audit.json"
OOF_FILE = "oof.npz"
AUDIT_MEMBERS = 1  # networks per fold model unless --members says otherwise (see the module docstring)


def _read_audit(out: Path) -> dict[str, Any]:
    path = out / AUDIT_FILE
    if not path.is_file():
        raise GleanerError(f"{out} holds no audit to resume (no {AUDIT_FILE}); start it without --resume")
    return json.loads(path.read_text(encoding="utf-8"))


def run_audit(
    workspace: Workspace,
    out: Path,
    config: TrainConfig,
    k: int = 5,
    *,
    dataset: str | None = None,
    resume: bool = False,
    rank_by: str = "self_confidence",
    callbacks: Callbacks | None = None,
    on_fold: Callable[[int, int], None] | None = None,
    parallel: int | None = None,
) -> dict[str, Any]:
    """Audit a snapshot into OUT; returns the audit report (train.audit.report)."""
    from train.audit.report import write_audit_report

    callbacks = callbacks or Callbacks()
    out = Path(out)
    saved: dict[str, Any] | None = None
    if resume:
        saved = _read_audit(out)
        config, k, dataset = TrainConfig.from_json(saved["train"]), int(saved["folds"]), saved["snapshot"]
        rank_by = saved.get("rank_by", rank_by)
    elif (out / AUDIT_FILE).exists():
        raise GleanerError(f"{out} already holds an audit: pass --resume to continue it, or choose another --out")
    if k < 2:
        raise GleanerError(f"--folds must be at least 2, not {k}")
    if config.members is None and config.model == "smallcnn":
        config = config.with_changes(members=AUDIT_MEMBERS)
    config, chosen, plan = plan_run(
        workspace, config, dataset, saved={"labels": saved["labels"], "channels": saved["channels"],
                                           "chosen": saved["chosen"]} if saved else None,
    )  # fmt: skip
    samples = [replace(s, split="train") for s in plan.samples]
    groups = {e.sha256: e.group for e in plan.entries}
    if saved:
        folds = {sha: int(f) for sha, f in saved["fold_of"].items()}
        if set(folds) != {s.sha256 for s in samples}:
            raise GleanerError(f"snapshot {plan.snapshot.name} no longer matches the audit in {out}")
    else:
        folds = {sha: f + 1 for sha, f in assign_folds([(s.sha256, s.label, groups[s.sha256]) for s in samples], k,
                                                       config.seed).items()}  # fmt: skip
        if len(set(folds.values())) < k:
            raise GleanerError(f"snapshot {plan.snapshot.name} has too few near-duplicate groups for {k} folds")
    if callbacks.on_defaults and not saved:
        callbacks.on_defaults(chosen)
    whole, everything = load_in_memory(
        workspace, plan, samples, config, callbacks,
        too_large="train audit needs the snapshot decoded in memory; it is too large",
    )  # fmt: skip
    with workspace.catalog.write() as conn:
        if saved:
            run_id = int(saved["run_id"])
            mark_run(conn, run_id, "running")
        else:
            run_id = start_run(conn, "audit", {**config.to_json(), "folds": k, "run_dir": str(out),
                                                "snapshot": plan.snapshot.name})  # fmt: skip
            start_audit(conn, run_id, plan.snapshot.name, whole.labels, k)
    if not saved:
        out.mkdir(parents=True, exist_ok=True)
        document = {
            "run_id": run_id, "snapshot": plan.snapshot.name, "labels": whole.labels, "channels": whole.channels,
            "folds": k, "rank_by": rank_by, "train": config.to_json(), "chosen": chosen, "fold_of": folds,
            "workspace": str(workspace.root),
        }  # fmt: skip
        (out / AUDIT_FILE).write_text(json.dumps(document, indent=1), encoding="utf-8")
    status, outcome = "interrupted", {"run_dir": str(out)}
    started = time.perf_counter()
    probs = np.zeros((len(everything), len(whole.labels)), np.float32)
    fold_rows = []
    try:
        jobs = []
        for fold in range(1, k + 1):
            fold_dir = out / "folds" / f"fold-{fold}"
            index = [i for i, s in enumerate(everything.samples) if folds[s.sha256] == fold]
            done = fold_dir / OOF_FILE
            if done.is_file():
                stored = np.load(done)
                probs[stored["index"]] = stored["probs"]
                fold_rows.append({**json.loads(str(stored["row"])), "resumed": True})
                continue
            rest = [SplitItem(s.sha256, s.label, groups[s.sha256]) for s in samples if folds[s.sha256] != fold]
            splits = assign_splits(rest, (0.9, 0.1, 0.0), config.seed + fold)
            splits.update({everything.samples[i].sha256: "test" for i in index})
            data = fold_data(whole, everything, splits)
            meta = {**run_meta(config, data, run_id, workspace, chosen), "fold": fold, "folds": k, "audit": True}
            again = (fold_dir / "checkpoints" / LAST).is_file()
            write_meta(fold_dir, meta)
            jobs.append(FoldJob(fold, k, fold_dir, config, data, meta, index, again))

        def finished(result: FoldResult) -> None:
            """A fold's probabilities into the catalog, then its oof.npz: the fold counts as done only then."""
            probs[result.index] = result.probs
            with workspace.catalog.write() as conn:
                write_audit_predictions(conn, run_id, [
                    AuditPrediction(everything.samples[i].sha256, everything.samples[i].label,
                                    groups[everything.samples[i].sha256], result.fold, probs[i].tolist())
                    for i in result.index
                ])  # fmt: skip
            fold_dir = out / "folds" / f"fold-{result.fold}"
            tmp = fold_dir / f".{OOF_FILE}"
            with tmp.open("wb") as handle:
                np.savez(handle, index=np.asarray(result.index, np.int64), probs=result.probs,
                         row=json.dumps(result.row))  # fmt: skip
            tmp.replace(fold_dir / OOF_FILE)
            fold_rows.append({**result.row, "resumed": False})
            if on_fold:
                on_fold(len(fold_rows), k)

        if on_fold:
            on_fold(len(fold_rows), k)
        processes, threads = fold_processes(parallel, config.device, len(jobs))
        run_folds(jobs, processes, threads, finished, callbacks)
        fold_rows.sort(key=lambda row: int(row["fold"]))
        if on_fold:
            on_fold(k, k)
        callbacks.phase("finding suspects")
        report = write_audit_report(
            out, whole.labels, everything.samples, [groups[s.sha256] for s in everything.samples], probs,
            meta={"run_id": run_id, "run_dir": str(out), "snapshot": whole.snapshot.name, "folds": fold_rows,
                  "config": config.to_json(), "chosen": chosen, "rank_by": rank_by,
                  "seconds": round(time.perf_counter() - started, 1)},
            images=everything.images,
        )  # fmt: skip
        with workspace.catalog.write() as conn:
            replace_suspects(conn, run_id, report.pop("_suspects"))
            finish_audit(conn, run_id)
        status = "done"
        outcome = {key: report[key] for key in ("run_dir", "snapshot", "images", "suspect_count", "oof_accuracy")}
        return report
    except Exception:
        status = "failed"
        raise
    finally:
        with workspace.catalog.write() as conn:
            finish_run(conn, run_id, status, outcome)
