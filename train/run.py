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
from typing import Any, cast

import torch
from sqlalchemy import Connection

from storage.catalog import finish_run, start_run
from storage.errors import GleanerError
from storage.intervals import wilson_interval
from storage.workspace import Workspace
from train.baseline import BaselineResult, linear_baseline
from train.blend import choose_blend, default_blend, fold_baseline
from train.checkpoint import LAST
from train.config import TrainConfig
from train.defaults import choose_defaults
from train.engine import EpochRecord, Trainer, resolve_device
from train.evaluate import Predictions, predict
from train.feedback import Target
from train.loaders import make_batches
from train.models import Net, default_normalization
from train.preflight import check_config, check_weights_fit
from train.prepare import PreparedData, SnapshotPlan, load_data, plan_snapshot
from train.records import get_run, mark_run, replace_run_targets, write_predictions
from train.report import Evaluation, build_report, save_evaluation
from train.rundir import BASELINE, build_net, read_meta, save_baseline, write_meta
from train.weights import freeze_backbone, load_weights

__all__ = [
    "CALIBRATION_IMAGES",
    "Callbacks",
    "blend_baseline",
    "default_run_dir",
    "fit_prepared",
    "prepare_run",
    "run_baseline",
    "run_meta",
    "run_training",
]

CALIBRATION_IMAGES = 2048  # clean training images the batch-norm statistics are recomputed on, per epoch

log = logging.getLogger(__name__)


@dataclass
class Callbacks:
    """Progress hooks for the CLI: decoding, batches within an epoch, finished epochs, phases."""

    on_decode: Callable[[int, int], None] | None = None
    on_batch: Callable[[int, int], None] | None = None
    on_epoch: Callable[[EpochRecord], None] | None = None
    on_phase: Callable[[str], None] | None = None
    on_defaults: Callable[[dict[str, dict[str, Any]]], None] | None = None

    def phase(self, text: str) -> None:
        if self.on_phase:
            self.on_phase(text)


def run_meta(
    config: TrainConfig,
    data: PreparedData,
    run_id: int | None,
    workspace: Workspace,
    chosen: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    normal = default_normalization(config.model, data.channels)
    mean, std = normal if normal else (data.mean, data.std)
    return {
        "train": config.to_json(),
        "chosen": chosen or {},
        "snapshot": data.snapshot.name,
        "snapshot_origin": data.origin,
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


def default_run_dir(workspace: Workspace) -> Path:
    """WORKSPACE/runs/<UTC timestamp>: a fresh folder per run when --out is not given."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = workspace.root / "runs" / stamp
    suffix = 1
    while path.exists():
        suffix += 1
        path = workspace.root / "runs" / f"{stamp}-{suffix}"
    return path


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
        data.splits["train"], config.n_batch, shuffle=True, balanced=config.balanced, seed=config.seed,
        workers=config.workers, device=device,
    )  # fmt: skip
    val = make_batches(data.splits["val"], max(256, config.n_batch), workers=config.workers, device=device)
    trainer = Trainer(
        net, config, device, run_dir, train, val if len(data.splits["val"]) else None, _calibration(data, device)
    )
    if resume:
        trainer.resume()
    trainer.fit(on_epoch=callbacks.on_epoch, on_batch=callbacks.on_batch, stop_after=stop_after)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[trainer.amp_dtype]
    return trainer, {"weights": weights_info, "device": str(device), "precision": precision}


def _calibration(data: PreparedData, device: torch.device) -> Any:
    """Up to CALIBRATION_IMAGES training images, evenly spread, for recomputing batch-norm statistics
    (train.engine.recalibrate_batchnorm); None when the images are not decoded in memory."""
    train = data.splits["train"]
    if train.images is None or not len(train):
        return None
    step = max(1, len(train) // CALIBRATION_IMAGES)
    index = torch.arange(0, len(train), step)[:CALIBRATION_IMAGES]
    from train.loaders import TensorBatches

    return TensorBatches(train.images[index], train.targets[index], 256, device=device)


def run_baseline(data: PreparedData) -> BaselineResult | None:
    """The linear baseline on the run's own split; None when the images are not decoded in memory."""
    if any(ds.images is None for ds in data.splits.values()):
        log.warning("no linear baseline: the dataset is too large to decode into memory")
        return None
    splits = {name: (ds.images, ds.targets) for name, ds in data.splits.items()}
    return linear_baseline(splits, len(data.labels))  # type: ignore[arg-type]


def plan_run(
    workspace: Workspace, config: TrainConfig, dataset: str | None, *, saved: dict[str, Any] | None = None
) -> tuple[TrainConfig, dict[str, dict[str, Any]], SnapshotPlan]:
    """Check the config, choose the snapshot and the data-dependent defaults, in that order, so that a mistake
    costs neither a snapshot nor a decode. Returns (resolved config, chosen defaults, plan)."""
    check_config(config)
    plan = plan_snapshot(
        workspace, dataset, labels=saved["labels"] if saved else None, channels=saved["channels"] if saved else None
    )
    config, chosen = choose_defaults(config, plan.facts())
    if saved:
        chosen = saved.get("chosen", {})
    check_weights_fit(config, len(plan.labels), plan.channels)
    return config, chosen, plan


def prepare_run(
    workspace: Workspace,
    config: TrainConfig,
    dataset: str | None,
    *,
    saved: dict[str, Any] | None = None,
    callbacks: Callbacks | None = None,
) -> tuple[TrainConfig, dict[str, dict[str, Any]], SnapshotPlan, PreparedData]:
    """`plan_run`, then decode the images at the chosen size: (config, chosen defaults, plan, data)."""
    callbacks = callbacks or Callbacks()
    config, chosen, plan = plan_run(workspace, config, dataset, saved=saved)
    if callbacks.on_defaults:
        callbacks.on_defaults(chosen)
    callbacks.phase("loading images")
    assert config.img_size is not None
    data = load_data(
        workspace, plan, img_size=config.img_size, memory_cache_bytes=config.memory_cache_bytes,
        cache_dir=workspace.root / ".cache" / "train", workers=config.workers or None, on_decode=callbacks.on_decode,
    )  # fmt: skip
    return config, chosen, plan, data


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


def _finished(workspace: Workspace, run_dir: Path, saved: dict[str, Any]) -> bool:
    """Has the run in `run_dir` finished: its report written and its catalog run recorded as done?

    The report is written before the catalog gets the run's predictions, targets and status, so a run killed in
    between has a report but a catalog run left "running" for ever; `--resume` must finish it (its epochs are
    done: it evaluates and writes the same report again, then the catalog rows) rather than call it finished."""
    if not (run_dir / "report.json").is_file():
        return False
    if not saved.get("run_id"):
        return True
    with workspace.catalog.read() as conn:
        recorded = get_run(conn, int(saved["run_id"]))
    return recorded is None or recorded["status"] == "done"


def _close_abandoned(conn: Connection, run_dir: Path) -> None:
    """Record as interrupted the catalog run of an earlier start in `run_dir` that was killed before its first
    checkpoint: it left config.json and a run "running", but nothing to resume, so the folder is started again
    (as `--resume` then tells the user) and gets a new run; the killed one would otherwise stay running for ever."""
    try:
        earlier = read_meta(run_dir).get("run_id")
    except (GleanerError, ValueError):
        return
    if not isinstance(earlier, int):
        return
    row = get_run(conn, earlier)
    if row is not None and row["status"] == "running":
        finish_run(conn, earlier, "interrupted", {"run_dir": str(run_dir), "status": "interrupted"})


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
        if _finished(workspace, run_dir, saved) and config.epochs <= saved["train"]["epochs"]:
            raise GleanerError(f"{run_dir} has finished; pass a larger --epochs to train it further")
        dataset = saved["snapshot"]
    elif (run_dir / "checkpoints" / LAST).exists():
        raise GleanerError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    config, chosen, _, data = prepare_run(workspace, config, dataset, saved=saved, callbacks=callbacks)
    with workspace.catalog.write() as conn:
        if saved and saved.get("run_id"):
            run_id = int(saved["run_id"])
            mark_run(conn, run_id, "running")
        else:
            _close_abandoned(conn, run_dir)
            recorded = {**config.to_json(), "run_dir": str(run_dir), "snapshot": data.snapshot.name}
            run_id = start_run(conn, "train", recorded)
    meta = run_meta(config, data, run_id, workspace, chosen)
    if saved:
        meta = {**saved, "train": config.to_json()}
    write_meta(run_dir, meta)
    baseline_fit, baseline = _fit_baseline(run_dir, data, callbacks)
    started = time.perf_counter()
    outcome: dict[str, Any] = {"run_dir": str(run_dir), "status": "failed"}
    try:
        callbacks.phase("training")
        trainer, fit_info = fit_prepared(
            run_dir, config, data, meta, resume=resume, callbacks=callbacks, stop_after=stop_after
        )
        train_seconds = time.perf_counter() - started
        state = trainer.state
        if state.epochs_done < config.n_epochs and not state.stopped_early:
            outcome = {"run_id": run_id, "run_dir": str(run_dir), "status": "interrupted"}
            return {**outcome, "epochs_done": state.epochs_done}
        callbacks.phase("evaluating")
        model_alone = blend_baseline(trainer, data, baseline_fit)
        results = _evaluate_all(trainer, data, config.batch_size or 256)
        evaluation = Evaluation(data.labels, [s.sha256 for s in data.splits["test"].samples], results["test"])
        save_evaluation(run_dir, evaluation)
        history = [vars(r) for r in state.history]
        images_per_second = _throughput(state.history, len(data.splits["train"]))
        report_meta = {
            "run_dir": str(run_dir), "run_id": run_id, "snapshot": data.snapshot.name, "model": config.model,
            "baseline": baseline, "model_alone": model_alone, "chosen": chosen,
            "train_seconds": round(train_seconds, 2), "images_per_second": images_per_second,
        }  # fmt: skip
        callbacks.phase("writing the report")
        report = build_report(
            run_dir, evaluation, history=history, counts=data.counts, meta=report_meta,
            best_epoch=state.best_epoch, image_of=_image_of(data),
        )  # fmt: skip
        warnings = [f"the {name} split of snapshot {data.snapshot.name} is empty" for name in ("val", "test")
                    if not len(data.splits[name])]  # fmt: skip
        if report["versus_baseline"] and report["versus_baseline"]["verdict"] != "above":
            warnings.append(report["versus_baseline"]["text"])
        for warning in warnings:
            log.warning(warning)
        targets = [
            Target(t["label"], t["want"], t["reason"], t["urgency"], t.get("snapshot_count", 0), None, None)
            for t in report["targets"]
        ]
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
            "images_per_second": images_per_second,
            "accuracy": report["accuracy"],
            "accuracy_ci": report["accuracy_ci"],
            "baseline": baseline,
            "model_alone": model_alone,
            "versus_baseline": report["versus_baseline"],
            "chosen": chosen,
            "config": config.to_json(),
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
            replace_run_targets(conn, targets, run_id, measured=data.labels, origin=str(run_dir.resolve()))
        outcome = {k: v for k, v in summary.items() if k != "per_class"}
        return summary
    except KeyboardInterrupt:
        outcome["status"] = "interrupted"
        raise
    finally:
        with workspace.catalog.write() as conn:
            finish_run(conn, run_id, outcome["status"], outcome)


def _throughput(history: list[EpochRecord], train_images: int) -> float | None:
    """Training images per second over the epochs (augmentation, forward, backward and the per-epoch
    validation included: what the epochs cost)."""
    seconds = sum(record.seconds for record in history)
    return round(train_images * len(history) / seconds, 1) if seconds > 0 else None


def _fit_baseline(
    run_dir: Path, data: PreparedData, callbacks: Callbacks
) -> tuple[BaselineResult | None, dict[str, Any] | None]:
    """The run's linear baseline (fitted, and its figures written to baseline.json). Deterministic, so a
    --resume fits the same one again rather than reading back figures without the weights."""
    import json

    callbacks.phase("fitting the linear baseline")
    result = run_baseline(data)
    if result is None:
        return None, None
    document = result.to_json()
    (run_dir / BASELINE).write_text(json.dumps(document, indent=2), encoding="utf-8")
    return result, document


def blend_baseline(trainer: Trainer, data: PreparedData, baseline: BaselineResult | None) -> dict[str, Any]:
    """Evaluate the trained model alone, then fold the baseline into it with the weight `--blend` gives or
    the validation split chooses (train.blend); saved as checkpoints/baseline.pt, used by every later
    evaluation, `train predict` and the exports. Returns the model-alone test figures and the blend."""
    net = cast(Net, trainer.net)  # built by train.models.build_net
    config = trainer.config
    batch = max(256, config.batch_size or 256)

    def evaluate(name: str) -> Predictions:
        batches = make_batches(data.splits[name], batch, workers=config.workers, device=trainer.device)
        return predict(net, batches, trainer.device, amp_dtype=trainer.eval_dtype, channels_last=True)

    test = evaluate("test")
    correct, total = int((test.predicted == test.targets).sum()), len(test.targets)
    interval = wilson_interval(correct, total)
    alone: dict[str, Any] = {
        "model": config.model + (" with flip test-time augmentation" if config.tta else ""),
        "accuracy": round(correct / total, 4) if total else None,
        "accuracy_ci": None if interval is None else [round(v, 4) for v in interval],
        "blend": 0.0,
    }
    if baseline is None or baseline.weight is None or config.blend == 0:
        alone["blend_reason"] = "--blend 0: the model alone" if config.blend == 0 else "no linear baseline to blend"
        return alone
    if config.blend is None:
        val = evaluate("val")
        base_val = baseline.val_predictions.probs if baseline.val_predictions is not None else val.probs[:0]
        prior = default_blend(len(data.splits["train"]), len(data.labels))
        weight, info = choose_blend(val.probs, base_val, val.targets, prior)
    else:
        weight, info = config.blend, {"reason": f"--blend {config.blend}"}
    if weight > 0:
        module = fold_baseline(baseline, data.channels, data.img_size, data.img_size).to(trainer.device)
        net.baseline, net.blend = module, weight
        save_baseline(net, trainer.checkpoint_dir)
    alone["blend"] = weight
    alone["blend_reason"] = info["reason"]
    if "candidates" in info:
        alone["blend_candidates"] = info["candidates"]
    return alone
