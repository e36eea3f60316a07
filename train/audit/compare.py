"""`train audit --compare`: what fixing the labels gained. After a review has changed labels of the audited
snapshot (suggestions accepted, or other labels chosen), two models are trained with the audit's configuration
on the snapshot's own train/val/test split: one on the labels as audited, one on the labels as they are now.
Both are tested on the same test images, against the corrected labels (the best truth there is; the audited
labels' figures are given too). The comparison is written into the audit's report.json and report.html.

Images relabelled to a label the audit did not know, rejected, or set aside as duplicates since keep their
audited label in both models (counted as "ignored").
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from storage.catalog.audits import current_labels
from storage.errors import GleanerError
from storage.workspace import Workspace
from train.audit.report import load_audit_report, save_audit_report
from train.audit.run import AUDIT_FILE
from train.config import TrainConfig
from train.data import SnapshotDataset
from train.engine import Trainer
from train.evaluate import Predictions, predict
from train.loaders import make_batches
from train.prepare import PreparedData, load_data, plan_snapshot
from train.run import Callbacks, fit_prepared, run_meta
from train.rundir import write_meta

__all__ = ["compare_corrected", "fit_model", "predictions_on", "relabel"]


def relabel(data: PreparedData, new_labels: dict[str, str]) -> PreparedData:
    """The same images with some labels replaced (sha256 → label of data.labels); images stay where they were."""
    index = {name: k for k, name in enumerate(data.labels)}
    splits = {}
    for name, ds in data.splits.items():
        samples = [
            replace(s, label=new_labels[s.sha256], target=index[new_labels[s.sha256]]) if s.sha256 in new_labels else s
            for s in ds.samples
        ]
        splits[name] = SnapshotDataset(samples, ds.reader, ds.size, ds.channels, ds.images)
    return replace(data, splits=splits)


def fit_model(
    run_dir: Path, config: TrainConfig, data: PreparedData, workspace: Workspace, callbacks: Callbacks | None = None
) -> Trainer:
    """Train a model on data's train split (val for the best epoch) in a fresh `run_dir`; its trainer."""
    shutil.rmtree(run_dir, ignore_errors=True)
    meta = run_meta(config, data, None, workspace, {})
    write_meta(run_dir, meta)
    trainer, _ = fit_prepared(run_dir, config, data, meta, callbacks=callbacks)
    return trainer


def predictions_on(trainer: Any, test: SnapshotDataset) -> Predictions:
    batches = make_batches(test, 256, device=trainer.device)
    return predict(trainer.net, batches, trainer.device, amp_dtype=trainer.eval_dtype, channels_last=True)


def _accuracy(predicted: np.ndarray, truth: np.ndarray) -> float | None:
    return round(float(np.mean(predicted == truth)), 4) if len(truth) else None


def compare_corrected(workspace: Workspace, out: Path, *, callbacks: Callbacks | None = None) -> dict[str, Any]:
    """Retrain on the corrected and on the audited labels; the audit report with its "comparison"."""
    callbacks = callbacks or Callbacks()
    out = Path(out)
    report = load_audit_report(out)
    saved = json.loads((out / AUDIT_FILE).read_text(encoding="utf-8"))
    config = TrainConfig.from_json(saved["train"])
    plan = plan_snapshot(workspace, saved["snapshot"], labels=saved["labels"], channels=saved["channels"])
    with workspace.catalog.read() as conn:
        now = current_labels(conn, [s.sha256 for s in plan.samples])
    known = set(plan.labels)
    changed: dict[str, str] = {}
    for sample in plan.samples:
        label = now.get(sample.sha256, sample.label)
        if label is not None and label != sample.label and label in known:
            changed[sample.sha256] = label
    ignored = sum(1 for s in plan.samples if now.get(s.sha256, s.label) != s.label and s.sha256 not in changed)
    if not changed:
        raise GleanerError(
            f"no label of snapshot {saved['snapshot']} has changed since the audit: accept suggestions in review "
            "(or `curate label set`) first"
        )
    callbacks.phase("loading images")
    audited = load_data(
        workspace, plan, img_size=config.img_size or 32, memory_cache_bytes=config.memory_cache_bytes,
        cache_dir=workspace.root / ".cache" / "train", workers=config.workers or None, on_decode=callbacks.on_decode,
    )  # fmt: skip
    corrected = relabel(audited, changed)
    test_truth = corrected.splits["test"].targets.numpy()
    test_given = audited.splits["test"].targets.numpy()
    models: dict[str, dict[str, Any]] = {}
    for name, data in (("audited labels", audited), ("corrected labels", corrected)):
        callbacks.phase(f"training on the {name}")
        trainer = fit_model(out / "compare" / name.split()[0], config, data, workspace, callbacks)
        predicted = predictions_on(trainer, data.splits["test"]).predicted
        models[name] = {
            "accuracy": round(float(np.mean(predicted == test_truth)), 4) if len(test_truth) else None,
            "accuracy_on_audited_labels": round(float(np.mean(predicted == test_given)), 4)
            if len(test_given)
            else None,
            "test_images": len(test_truth),
        }
    test_shas = {s.sha256 for s in audited.splits["test"].samples}
    gain = (models["corrected labels"]["accuracy"] or 0.0) - (models["audited labels"]["accuracy"] or 0.0)
    report["comparison"] = {
        "changed": len(changed), "changed_in_test": sum(1 for sha in changed if sha in test_shas), "ignored": ignored,
        "tested_on": f"test split of snapshot {saved['snapshot']}, with the corrected labels",
        "models": models, "gain": round(gain, 4),
    }  # fmt: skip
    save_audit_report(out, report)
    return report
