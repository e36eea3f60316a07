"""`train run --folds K`: k-fold cross-validation on a snapshot, for sets whose 10% test split is a handful.

On 200 images the test split holds 20, and one image is 5 points of accuracy. With K folds every image is
tested once, by a model that never saw it: K models (and K linear baselines) are trained, each with one fold
as its test split and a tenth of the rest as validation (early stopping, best epoch). Folds are made of whole
near-duplicate groups (the snapshot's `group`), so no near-copy of a test image is ever trained on. Pooled
figures (accuracy with its Wilson interval, per-class recall) come from all test predictions together;
per-fold accuracies show the spread. Each fold is a full run folder under OUT/folds/fold-N (`train predict`
and `train export` take one of those).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from curate.snapshot import SplitItem, assign_splits
from storage.catalog import finish_run, start_run
from storage.errors import GleanerError
from storage.workspace import Workspace
from train.baseline import linear_baseline
from train.config import TrainConfig
from train.data import SnapshotDataset
from train.evaluate import Predictions
from train.prepare import PreparedData, _stats, load_data
from train.records import replace_run_targets, write_predictions
from train.report import Evaluation, build_report, save_evaluation
from train.run import Callbacks, _evaluate_all, blend_baseline, fit_prepared, plan_run, run_meta
from train.rundir import BASELINE, write_meta

__all__ = ["assign_folds", "fold_data", "load_in_memory", "run_crossval"]


def assign_folds(samples: Sequence[tuple[str, str, str]], k: int, seed: int = 0) -> dict[str, int]:
    """(sha256, label, group) → sha256 → fold 0..k-1. Pure and deterministic.

    Groups are the unit; within each label (a group counts under its majority label) groups go, largest
    first (ties by a seeded hash), to the fold with the fewest images of that label so far: every fold gets
    about 1/k of every class.
    """
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for sha, label, group in samples:
        groups[group].append((sha, label))
    by_label: dict[str, list[tuple[str, list[tuple[str, str]]]]] = defaultdict(list)
    for key, members in groups.items():
        counts = Counter(label for _, label in members)
        by_label[min(counts, key=lambda label: (-counts[label], label))].append((key, members))
    result: dict[str, int] = {}
    for label in sorted(by_label):
        filled = [0] * k
        order = sorted(by_label[label], key=lambda e: (-len(e[1]), hashlib.sha256(f"{seed}:{e[0]}".encode()).digest()))
        for _, members in order:
            fold = min(range(k), key=lambda f: (filled[f], f))
            filled[fold] += len(members)
            for sha, _ in members:
                result[sha] = fold
    return result


def load_in_memory(
    workspace: Workspace, plan: Any, samples: list[Any], config: TrainConfig, callbacks: Callbacks, *, too_large: str
) -> tuple[PreparedData, SnapshotDataset]:
    """Every sample decoded once, into memory, as one split: the folds of cross-validation and of `train audit`
    index into it. `too_large` is the error when the set does not fit in memory."""
    callbacks.phase("loading images")
    whole = load_data(
        workspace, replace(plan, samples=samples), img_size=config.img_size or 32,
        memory_cache_bytes=config.memory_cache_bytes, cache_dir=workspace.root / ".cache" / "train",
        workers=config.workers or None, on_decode=callbacks.on_decode,
    )  # fmt: skip
    everything = whole.splits["train"]
    if everything.images is None:
        raise GleanerError(too_large)
    return whole, everything


def fold_data(base: PreparedData, everything: SnapshotDataset, splits: dict[str, str]) -> PreparedData:
    """A PreparedData whose train/val/test are this fold's, indexing the images decoded once."""
    assert everything.images is not None
    datasets = {}
    for name in ("train", "val", "test"):
        index = [i for i, s in enumerate(everything.samples) if splits[s.sha256] == name]
        samples = [replace(everything.samples[i], split=name) for i in index]
        datasets[name] = SnapshotDataset(
            samples, everything.reader, everything.size, everything.channels, everything.images[index]
        )
    mean, std = _stats(datasets["train"], base.channels)
    return replace(base, splits=datasets, mean=mean, std=std)


def _pool(parts: list[tuple[list[int], Predictions]], total: int, classes: int) -> Predictions:
    """Test predictions of every fold, back in snapshot order."""
    targets = np.zeros(total, np.int64)
    probs = np.zeros((total, classes), np.float32)
    losses = np.zeros(total, np.float32)
    for index, p in parts:
        targets[index], probs[index], losses[index] = p.targets, p.probs, p.losses
    return Predictions(targets, probs, losses)


def run_crossval(
    workspace: Workspace,
    out: Path,
    config: TrainConfig,
    k: int,
    *,
    dataset: str | None = None,
    callbacks: Callbacks | None = None,
) -> dict[str, Any]:
    """Train K folds into OUT/folds/fold-N, write the pooled report into OUT; returns the summary."""
    if k < 2:
        raise GleanerError(f"--folds must be at least 2, not {k}")
    callbacks = callbacks or Callbacks()
    out = Path(out)
    if (out / "folds").exists():
        raise GleanerError(f"{out} already holds a cross-validation; choose another --out")
    # defaults come from the snapshot's own training split, about the size of each fold's (0.9 x (k-1)/k)
    config, chosen, plan = plan_run(workspace, config, dataset)
    samples = [replace(s, split="train") for s in plan.samples]
    groups = {e.sha256: e.group for e in plan.entries}
    folds = assign_folds([(s.sha256, s.label, groups[s.sha256]) for s in samples], k, config.seed)
    if min(Counter(folds.values()).values(), default=0) == 0 or len(set(folds.values())) < k:
        raise GleanerError(f"snapshot {plan.snapshot.name} has too few near-duplicate groups for {k} folds")
    if callbacks.on_defaults:
        callbacks.on_defaults(chosen)
    whole, everything = load_in_memory(
        workspace, plan, samples, config, callbacks,
        too_large="--folds needs the dataset decoded in memory; it is too large (use the snapshot's split)",
    )  # fmt: skip
    with workspace.catalog.write() as conn:
        run_id = start_run(
            conn, "train", {**config.to_json(), "folds": k, "run_dir": str(out), "snapshot": plan.snapshot.name}
        )
    status, outcome = "failed", {"run_dir": str(out)}
    started = time.perf_counter()
    try:
        fold_rows, model_parts, baseline_parts = [], [], []
        for fold in range(k):
            callbacks.phase(f"fold {fold + 1}/{k}")
            rest = [SplitItem(s.sha256, s.label, groups[s.sha256]) for s in samples if folds[s.sha256] != fold]
            splits = {**assign_splits(rest, (0.9, 0.1, 0.0), config.seed + fold)}
            splits.update({s.sha256: "test" for s in samples if folds[s.sha256] == fold})
            data = fold_data(whole, everything, splits)
            fold_dir = out / "folds" / f"fold-{fold + 1}"
            meta = run_meta(config, data, run_id, workspace, chosen)
            write_meta(fold_dir, {**meta, "fold": fold + 1, "folds": k})
            base = linear_baseline({n: (d.images, d.targets) for n, d in data.splits.items()}, len(data.labels))  # type: ignore[misc]
            (fold_dir / BASELINE).write_text(json.dumps(base.to_json(), indent=2), encoding="utf-8")
            trainer, _ = fit_prepared(fold_dir, config, data, meta, callbacks=callbacks)
            alone = blend_baseline(trainer, data, base)
            test = _evaluate_all(trainer, data, config.batch_size or 256)["test"]
            index = [i for i, s in enumerate(everything.samples) if splits[s.sha256] == "test"]
            model_parts.append((index, test))
            baseline_parts.append((index, base.predictions))
            fold_rows.append(
                {"fold": fold + 1, "test_images": len(index), "accuracy": round(test.accuracy, 4),
                 "baseline": round(base.accuracy or 0.0, 4), "model_alone": alone["accuracy"],
                 "blend": alone["blend"], "best_epoch": trainer.state.best_epoch}
            )  # fmt: skip
        pooled = _pool(model_parts, len(everything), len(whole.labels))
        pooled_baseline = _pool(baseline_parts, len(everything), len(whole.labels))
        evaluation = Evaluation(whole.labels, [s.sha256 for s in everything.samples], pooled)
        save_evaluation(out, evaluation)
        base_correct = int((pooled_baseline.predicted == pooled_baseline.targets).sum())
        from storage.intervals import wilson_interval

        interval = wilson_interval(base_correct, len(everything))
        baseline = {
            "model": "linear (logistic regression on pixels)", "accuracy": round(base_correct / len(everything), 4),
            "accuracy_ci": None if interval is None else [round(v, 4) for v in interval],
        }  # fmt: skip
        spread = {
            "accuracy_mean": round(statistics.mean(r["accuracy"] for r in fold_rows), 4),
            "accuracy_sd": round(statistics.pstdev(r["accuracy"] for r in fold_rows), 4),
        }
        write_meta(out, {**run_meta(config, whole, run_id, workspace, chosen), "folds": k})
        report = build_report(
            out, evaluation, history=[], counts=whole.counts, meta={
                "run_dir": str(out), "run_id": run_id, "snapshot": whole.snapshot.name, "model": config.model,
                "baseline": baseline, "chosen": chosen, "folds": fold_rows, **spread,
            }, image_of=lambda i: everything.images[i].numpy(),  # type: ignore[index]
        )  # fmt: skip
        rows = [
            {"sha256": s.sha256, "split": "test", "true_label": s.label,
             "predicted_label": whole.labels[int(p)], "confidence": float(c), "loss": float(loss)}
            for s, p, c, loss in zip(
                everything.samples, pooled.predicted, pooled.confidence, pooled.losses, strict=True
            )
        ]  # fmt: skip
        from train.feedback import Target

        targets = [Target(t["label"], t["want"], t["reason"], t["urgency"], t["snapshot_count"], None, None)
                   for t in report["targets"]]  # fmt: skip
        with workspace.catalog.write() as conn:
            written = write_predictions(conn, run_id, rows)
            replace_run_targets(conn, targets, run_id, measured=whole.labels, origin=str(out.resolve()))
        warnings = [report["versus_baseline"]["text"]] if report["versus_baseline"]["verdict"] != "above" else []
        status = "done"
        summary = {
            "run_id": run_id, "run_dir": str(out), "status": status, "snapshot": whole.snapshot.name,
            "model": config.model, "folds": fold_rows, **spread, "accuracy": report["accuracy"],
            "accuracy_ci": report["accuracy_ci"], "baseline": baseline, "versus_baseline": report["versus_baseline"],
            "per_class": report["per_class"], "targets": report["targets"], "chosen": chosen,
            "config": config.to_json(), "train_seconds": round(time.perf_counter() - started, 2),
            "predictions": written, "report": str(out / "report.html"), "warnings": warnings,
        }  # fmt: skip
        outcome = {k_: v for k_, v in summary.items() if k_ not in ("per_class",)}
        return summary
    finally:
        with workspace.catalog.write() as conn:
            finish_run(conn, run_id, status, outcome)
