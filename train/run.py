"""`train run` as a library call: snapshot → datasets → model → engine → test evaluation → report → catalog.

The catalog gets a `runs` row (kind "train"), per-image predictions (misclassified or unsure ones marked for
review) and the new collection targets, which replace the open targets of earlier runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from storage.catalog import finish_run, start_run
from storage.errors import GleanerError
from storage.workspace import Workspace
from train.checkpoint import LAST
from train.config import TrainConfig
from train.engine import EpochRecord, Trainer, resolve_device
from train.evaluate import Predictions, predict
from train.feedback import Target
from train.loaders import make_batches
from train.models import default_normalization
from train.prepare import PreparedData, prepare_data
from train.records import mark_run, replace_run_targets, write_predictions
from train.report import Evaluation, build_report, save_evaluation
from train.rundir import build_net, read_meta, write_meta
from train.weights import freeze_backbone, load_weights

__all__ = ["Callbacks", "fit_prepared", "run_meta", "run_training"]

log = logging.getLogger(__name__)


@dataclass
class Callbacks:
    """Progress hooks for the CLI: decoding, batches within an epoch, finished epochs, phases."""

    on_decode: Callable[[int, int], None] | None = None
    on_batch: Callable[[int, int], None] | None = None
    on_epoch: Callable[[EpochRecord], None] | None = None
    on_phase: Callable[[str], None] | None = None

    def phase(self, text: str) -> None:
        if self.on_phase:
            self.on_phase(text)


def run_meta(config: TrainConfig, data: PreparedData, run_id: int | None, workspace: Workspace) -> dict[str, Any]:
    normal = default_normalization(config.model, data.channels)
    mean, std = normal if normal else (data.mean, data.std)
    return {
        "train": config.to_json(),
        "snapshot": data.snapshot.name,
        "labels": data.labels,
        "channels": data.channels,
        "img_size": data.img_size,
        "mean": mean,
        "std": std,
        "run_id": run_id,
        "workspace": str(workspace.root),
        "dataset_counts": data.counts,
        "splits": {name: len(ds) for name, ds in data.splits.items()},
        "in_memory": data.in_memory,
        "created_at": datetime.now(UTC).isoformat(),
    }


def fit_prepared(
    run_dir: Path,
    config: TrainConfig,
    data: PreparedData,
    meta: dict[str, Any],
    *,
    resume: bool = False,
    callbacks: Callbacks | None = None,
    stop_after: int | None = None,
) -> tuple[Trainer, dict[str, Any]]:
    """Build the model and train it in `run_dir`; used by `train run` and by each sweep trial."""
    callbacks = callbacks or Callbacks()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # the initial weights depend on the seed only
    net = build_net(config, len(data.labels), data.channels, meta["mean"], meta["std"])
    weights_info: dict[str, Any] | None = None
    if config.weights and not resume:
        weights_info = load_weights(net.body, config.weights, config.model)
    if config.freeze_backbone:
        freeze_backbone(net.body)
    train = make_batches(
        data.splits["train"], config.batch_size, shuffle=True, balanced=config.balanced, seed=config.seed,
        workers=config.workers, device=device,
    )  # fmt: skip
    val = make_batches(data.splits["val"], max(256, config.batch_size), workers=config.workers, device=device)
    trainer = Trainer(net, config, device, run_dir, train, val if len(data.splits["val"]) else None)
    if resume:
        trainer.resume()
    trainer.fit(on_epoch=callbacks.on_epoch, on_batch=callbacks.on_batch, stop_after=stop_after)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[trainer.amp_dtype]
    return trainer, {"weights": weights_info, "device": str(device), "precision": precision}


def _evaluate_all(trainer: Trainer, data: PreparedData, batch_size: int) -> dict[str, Predictions]:
    result = {}
    for name, dataset in data.splits.items():
        batches = make_batches(dataset, max(256, batch_size), workers=trainer.config.workers, device=trainer.device)
        result[name] = predict(trainer.net, batches, trainer.device, amp_dtype=trainer.eval_dtype, channels_last=True)
    return result


def _prediction_rows(data: PreparedData, results: dict[str, Predictions]) -> list[dict[str, Any]]:
    rows = []
    for name, p in results.items():
        for sample, predicted, confidence, loss in zip(
            data.splits[name].samples, p.predicted, p.confidence, p.losses, strict=True
        ):
            rows.append(
                {
                    "sha256": sample.sha256,
                    "split": name,
                    "true_label": sample.label,
                    "predicted_label": data.labels[int(predicted)],
                    "confidence": float(confidence),
                    "loss": float(loss),
                }
            )
    return rows


def _image_of(data: PreparedData) -> Callable[[int], Any]:
    test = data.splits["test"]
    return lambda i: test.images[i].numpy() if test.images is not None else test.load(i)


def run_training(
    workspace: Workspace,
    run_dir: Path,
    config: TrainConfig,
    *,
    dataset: str | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    callbacks: Callbacks | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train, evaluate on the test split, write the report and update the catalog; returns the run summary.

    With `resume`, the run dir's config is used, changed only by `overrides` (epochs, device, precision,
    workers, patience); `stop_after` ends the call after that many epochs in all, as if the process had been killed.
    """
    callbacks = callbacks or Callbacks()
    run_dir = Path(run_dir)
    saved: dict[str, Any] | None = None
    if resume:
        saved = read_meta(run_dir)
        if not (run_dir / "checkpoints" / LAST).is_file():
            raise GleanerError(f"{run_dir} has no checkpoint to resume from; start it again without --resume")
        config = TrainConfig.from_json({**saved["train"], **(overrides or {})})
        if (run_dir / "report.json").is_file() and config.epochs <= saved["train"]["epochs"]:
            raise GleanerError(f"{run_dir} has finished; pass a larger --epochs to train it further")
        dataset = saved["snapshot"]
    elif (run_dir / "checkpoints" / LAST).exists():
        raise GleanerError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    callbacks.phase("loading images")
    data = prepare_data(
        workspace,
        dataset,
        img_size=config.img_size,
        memory_cache_bytes=config.memory_cache_bytes,
        cache_dir=workspace.root / ".cache" / "train",
        workers=config.workers or None,
        labels=saved["labels"] if saved else None,
        channels=saved["channels"] if saved else None,
        on_decode=callbacks.on_decode,
    )
    with workspace.catalog.write() as conn:
        if saved and saved.get("run_id"):
            run_id = int(saved["run_id"])
            mark_run(conn, run_id, "running")
        else:
            recorded = {**config.to_json(), "run_dir": str(run_dir), "snapshot": data.snapshot.name}
            run_id = start_run(conn, "train", recorded)
    meta = run_meta(config, data, run_id, workspace)
    if saved:
        meta = {**saved, "train": config.to_json()}
    write_meta(run_dir, meta)
    started = time.perf_counter()
    outcome: dict[str, Any] = {"run_dir": str(run_dir), "status": "failed"}
    try:
        callbacks.phase("training")
        trainer, fit_info = fit_prepared(
            run_dir, config, data, meta, resume=resume, callbacks=callbacks, stop_after=stop_after
        )
        train_seconds = time.perf_counter() - started
        state = trainer.state
        if state.epochs_done < config.epochs and not state.stopped_early:
            outcome = {"run_id": run_id, "run_dir": str(run_dir), "status": "interrupted"}
            return {**outcome, "epochs_done": state.epochs_done}
        callbacks.phase("evaluating")
        results = _evaluate_all(trainer, data, config.batch_size)
        evaluation = Evaluation(data.labels, [s.sha256 for s in data.splits["test"].samples], results["test"])
        save_evaluation(run_dir, evaluation)
        history = [vars(r) for r in state.history]
        report_meta = {"run_dir": str(run_dir), "run_id": run_id, "snapshot": data.snapshot.name, "model": config.model}
        callbacks.phase("writing the report")
        report = build_report(
            run_dir, evaluation, history=history, counts=data.counts, meta=report_meta,
            best_epoch=state.best_epoch, image_of=_image_of(data),
        )  # fmt: skip
        warnings = [f"the {name} split of snapshot {data.snapshot.name} is empty" for name in ("val", "test")
                    if not len(data.splits[name])]  # fmt: skip
        for warning in warnings:
            log.warning(warning)
        targets = [Target(t["label"], t["want"], t["reason"], t["urgency"], 0, None, None) for t in report["targets"]]
        summary = {
            "run_id": run_id,
            "run_dir": str(run_dir),
            "status": "done",
            "snapshot": data.snapshot.name,
            "model": config.model,
            "device": fit_info["device"],
            "precision": fit_info["precision"],
            "epochs_done": state.epochs_done,
            "best_epoch": state.best_epoch,
            "stopped_early": state.stopped_early,
            "train_seconds": round(train_seconds, 2),
            "accuracy": report["accuracy"],
            "val_accuracy": round(results["val"].accuracy, 4) if len(results["val"].targets) else None,
            "train_accuracy": round(results["train"].accuracy, 4),
            "per_class": report["per_class"],
            "targets": report["targets"],
            "weights": fit_info["weights"],
            "report": str(run_dir / "report.html"),
            "warnings": warnings,
        }
        with workspace.catalog.write() as conn:
            summary["predictions"] = write_predictions(conn, run_id, _prediction_rows(data, results))
            replace_run_targets(conn, targets, run_id)
        outcome = {k: v for k, v in summary.items() if k != "per_class"}
        return summary
    except KeyboardInterrupt:
        outcome["status"] = "interrupted"
        raise
    finally:
        with workspace.catalog.write() as conn:
            finish_run(conn, run_id, outcome["status"], outcome)
