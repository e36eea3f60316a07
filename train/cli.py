"""`train`: models from the curated data. Thin commands over the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from storage.clikit import (
    App,
    JsonOption,
    WorkspaceOption,
    add_version_option,
    emit_json,
    err_console,
    out_console,
    user_errors,
)
from train.devices import list_devices

app = App(help="Train image classifiers on a Gleaner dataset.", no_args_is_help=True, add_completion=False)
add_version_option(app, "train")

# Options shared by `run` and `sweep`. None means "not given": the config's default, or on --resume the run's value.
DatasetOpt = typer.Option(
    None, "--dataset", help="Snapshot name (default: the newest one if the catalog is unchanged, else a new one)."
)
ModelOpt = typer.Option(None, "--model", help="smallcnn (default), resnet18, or any torchvision classifier name.")
WeightsOpt = typer.Option(
    None, "--weights", help="Start from a state dict file, or a torchvision weight name found in its local cache."
)
FreezeOpt = typer.Option(False, "--freeze-backbone", help="Train only the classifier head (use with --weights).")
UnfreezeOpt = typer.Option(
    None, "--unfreeze-after", help="With --freeze-backbone: fine-tune the whole net after N epochs at lr/10."
)
DepthOpt = typer.Option(None, "--depth", help="smallcnn conv blocks, 1-4 (default: from the image size, up to 3).")
BatchOpt = typer.Option(None, "--batch-size", help="Images per step (default: from the set's size, 16-128).")
SizeOpt = typer.Option(None, "--img-size", help="Square input size (default: the images' median side, ≤ 64).")
# Every name train.augment registers (tests/train/test_cli_contract.py checks): aliases too, as the README names them.
AugmentOpt = typer.Option(
    None,
    "--augment",
    help="Comma list (default flip,shift,color; none: off) of flip, shift, rotate, zoom (alias random-resized-crop), "
    "translate, color (alias brightness), noise, erase (alias cutout).",
)
AutoAugmentOpt = typer.Option(False, "--auto-augment", help="Add torchvision's AutoAugment (ImageNet policy).")
SmoothingOpt = typer.Option(None, "--label-smoothing", help="Label smoothing, 0-1 (default 0).")
ScheduleOpt = typer.Option(None, "--schedule", help="Learning-rate schedule: onecycle (default) or cosine.")
PatienceOpt = typer.Option(
    None, "--patience", help="Stop after N epochs without a better val score (default: a third of the epochs; 0: off)."
)
BalancedOpt = typer.Option(False, "--balanced", help="Sample every class equally often.")
SeedOpt = typer.Option(None, "--seed", help="Random seed (default 0); same seed, same result on CPU.")
DeviceOpt = typer.Option(None, "--device", help="auto (default), cpu or cuda.")
PrecisionOpt = typer.Option(
    None, "--precision", help="auto (default: fp16 on CUDA, bf16 on CPUs with bf16 units), fp32, bf16 or fp16."
)
WorkersOpt = typer.Option(None, "--workers", help="Decoding threads/loader processes (default: automatic).")
CompileOpt = typer.Option(False, "--compile", help="torch.compile the model (pays off on long CUDA runs).")


def _config_values(**options: Any) -> dict[str, Any]:
    from train.augment import parse_augment

    values = {k: v for k, v in options.items() if v is not None and v is not False}
    if "augment" in values:
        values["augment"] = parse_augment(values["augment"])
    return values


def _blend_value(text: str | None) -> float | None:
    """--blend: None (not given) and "auto" choose on validation; else a weight in [0, 1]."""
    from storage.errors import GleanerError

    if text is None or text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise GleanerError(f"--blend must be auto or a number in [0, 1], not {text!r}") from None


def _targets_table(targets: list[dict[str, Any]]) -> Table:
    table = Table(title="What to collect next (most urgent first)")
    table.add_column("label")
    table.add_column("want", justify="right")
    table.add_column("reason")
    for target in targets:
        table.add_row(target["label"], f"{target['want']:,}", target["reason"])
    return table


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"{ci[0]:.2f}–{ci[1]:.2f}"


def _classes_table(per_class: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="Per class (test split; n/a: no test images)")
    for column in ("label", "precision", "recall", "recall 95% CI", "f1", "test images"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, m in per_class.items():
        table.add_row(
            label, _num(m["precision"]), _num(m["recall"]), _interval(m.get("recall_ci")), _num(m["f1"]),
            str(m.get("test_support", m["support"])),
        )  # fmt: skip
    return table


def _defaults_lines(chosen: dict[str, dict[str, Any]]) -> list[str]:
    """One line per default chosen from the data: what and why."""
    lines = []
    for name, item in chosen.items():
        value = item["value"]
        shown = ",".join(value) if isinstance(value, list) else str(value)
        lines.append(f"--{name.replace('_', '-')} {shown or 'none'}: {item['reason']}")
    return lines


def _print_defaults(chosen: dict[str, dict[str, Any]]) -> None:
    for line in _defaults_lines(chosen):
        err_console.print(f"[dim]default {line}[/]", highlight=False, soft_wrap=True)


def _accuracy_line(summary: dict[str, Any]) -> str:
    """Test accuracy with its interval, next to the baseline's, in one line."""
    line = f"Test accuracy [bold]{summary['accuracy']:.2%}[/] (95% CI {_interval(summary.get('accuracy_ci'))})"
    baseline = summary.get("baseline")
    if baseline and baseline.get("accuracy") is not None:
        line += f" · linear baseline {baseline['accuracy']:.2%} (95% CI {_interval(baseline.get('accuracy_ci'))})"
    alone = summary.get("model_alone")
    if alone and alone.get("accuracy") is not None and alone.get("blend"):
        line += (
            f"\n{alone['model']} alone {alone['accuracy']:.2%} (95% CI {_interval(alone.get('accuracy_ci'))}); "
            f"delivered: blended with the linear baseline at weight {alone['blend']:g} ({alone['blend_reason']})"
        )
    versus = summary.get("versus_baseline")
    if versus:
        colour = "green" if versus["verdict"] == "above" else "bold red"
        line += f"\n[{colour}]{versus['text']}[/]"
    return line


@app.command("run")
@user_errors
def run_command(
    out: Path = typer.Option(
        None, "--out", help="Run folder: config, metrics, checkpoints, report (default WORKSPACE/runs/<timestamp>)."
    ),
    dataset: str = DatasetOpt,
    model: str = ModelOpt,
    weights: str = WeightsOpt,
    freeze_backbone: bool = FreezeOpt,
    unfreeze_after: int = UnfreezeOpt,
    depth: int = DepthOpt,
    epochs: int = typer.Option(
        None, "--epochs", help="Epochs (default: about 500 steps, 10-100); with --resume, a larger number extends."
    ),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (default 3e-3)."),
    batch_size: int = BatchOpt,
    img_size: int = SizeOpt,
    augment: str = AugmentOpt,
    auto_augment: bool = AutoAugmentOpt,
    label_smoothing: float = SmoothingOpt,
    schedule: str = ScheduleOpt,
    patience: int = PatienceOpt,
    balanced: bool = BalancedOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    workers: int = WorkersOpt,
    compile_model: bool = CompileOpt,
    ema: float = typer.Option(
        None, "--ema", help="Average the weights over steps with this decay (e.g. 0.998; default 0: off)."
    ),
    members: int = typer.Option(
        None, "--members", help="smallcnn: networks averaged in one model (default 3 up to 2,000 train images, else 1)."
    ),
    tta: bool = typer.Option(
        None, "--tta/--no-tta", help="Flip test-time augmentation (default: on when the augmentation flips)."
    ),
    blend: str = typer.Option(
        None, "--blend", help="Weight of the linear baseline in the delivered model, 0-1 (default auto: on val)."
    ),
    folds: int = typer.Option(
        None, "--folds", help="K-fold cross-validation (K ≥ 2, grouped by near-duplicate group) instead of one split."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Train a model and a linear baseline, evaluate both on the test split, write the report and targets."""
    from storage.errors import GleanerError
    from storage.workspace import open_workspace
    from train.config import TrainConfig
    from train.progress import CliProgress
    from train.run import default_run_dir, run_training

    values = _config_values(
        model=model, weights=weights, freeze_backbone=freeze_backbone, unfreeze_after=unfreeze_after, depth=depth,
        epochs=epochs, lr=lr, batch_size=batch_size, img_size=img_size, augment=augment, auto_augment=auto_augment,
        label_smoothing=label_smoothing, schedule=schedule, patience=patience, balanced=balanced, seed=seed,
        device=device, precision=precision, workers=workers, compile=compile_model, blend=_blend_value(blend),
        members=members, ema=ema,
    )  # fmt: skip
    if tta is not None:
        values["tta"] = tta
    overrides = {k: values[k] for k in ("epochs", "device", "precision", "workers", "patience") if k in values}
    config = TrainConfig(**values)
    ws = open_workspace(workspace)
    if out is None:
        if resume:
            raise GleanerError("--resume needs --out: the run folder to continue")
        out = default_run_dir(ws)
    with CliProgress() as progress:
        callbacks = progress.callbacks()
        callbacks.on_defaults = _print_defaults
        if folds is not None:
            from train.crossval import run_crossval

            summary = run_crossval(ws, out, config, folds, dataset=dataset, callbacks=callbacks)
        else:
            summary = run_training(
                ws, out, config, dataset=dataset, resume=resume, overrides=overrides, callbacks=callbacks
            )
    if json_output:
        emit_json(summary)
        return
    if summary["status"] != "done":
        err_console.print(f"run stopped after {summary.get('epochs_done')} epochs; `--resume` continues it")
        return
    for warning in summary["warnings"]:
        err_console.print(f"[yellow]warning:[/] {warning}")
    out_console.print(_classes_table(summary["per_class"]))
    if summary["targets"]:
        out_console.print(_targets_table(summary["targets"]))
    out_console.print(_accuracy_line(summary))
    if "folds" in summary:
        out_console.print(
            f"{len(summary['folds'])}-fold cross-validation; every image tested once · {summary['run_dir']}"
        )
        return
    out_console.print(
        f"Best epoch {summary['best_epoch']} of {summary['epochs_done']} · trained in {summary['train_seconds']:.0f}s "
        f"on {summary['device']} ({summary['images_per_second'] or 0:,.0f} images/s)\nReport: {summary['report']}"
    )


@app.command("sweep")
@user_errors
def sweep_command(
    out: Path = typer.Option(..., "--out", help="Folder for the trials, sweep.csv and sweep.html."),
    lr: str = typer.Option(None, "--lr", help="Learning rates, comma separated, e.g. 1e-2,1e-3."),
    epochs: str = typer.Option(None, "--epochs", help="Epoch counts, comma separated, e.g. 5,10."),
    repeats: int = typer.Option(1, "--repeats", help="Runs per combination (seeds seed, seed+1, ...)."),
    dataset: str = DatasetOpt,
    model: str = ModelOpt,
    weights: str = WeightsOpt,
    freeze_backbone: bool = FreezeOpt,
    unfreeze_after: int = UnfreezeOpt,
    depth: int = DepthOpt,
    batch_size: int = BatchOpt,
    img_size: int = SizeOpt,
    augment: str = AugmentOpt,
    auto_augment: bool = AutoAugmentOpt,
    label_smoothing: float = SmoothingOpt,
    schedule: str = ScheduleOpt,
    patience: int = PatienceOpt,
    balanced: bool = BalancedOpt,
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    workers: int = WorkersOpt,
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Train every combination of --lr and --epochs; medians over repeats, the best marked."""
    from storage.workspace import open_workspace
    from train.config import TrainConfig, parse_list
    from train.progress import CliProgress
    from train.sweep import run_sweep

    base = TrainConfig(
        **_config_values(
            model=model, weights=weights, freeze_backbone=freeze_backbone, unfreeze_after=unfreeze_after, depth=depth,
            batch_size=batch_size,
            img_size=img_size, augment=augment, auto_augment=auto_augment, label_smoothing=label_smoothing,
            schedule=schedule, patience=patience, balanced=balanced, seed=seed, device=device, precision=precision,
            workers=workers,
        )
    )  # fmt: skip
    lrs, epoch_list = parse_list(lr, float), parse_list(epochs, int)
    ws = open_workspace(workspace)
    with CliProgress() as progress:
        result = run_sweep(
            ws, out, base, lrs, epoch_list, repeats=repeats, dataset=dataset, callbacks=progress.callbacks()
        )
    if json_output:
        emit_json(result)
        return
    table = Table(title=f"Sweep ({len(result['trials'])} trials; medians over repeats)")
    for column in ("lr", "epochs", "train acc", "val acc", "train loss", "val loss", "seconds", ""):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        table.add_row(
            f"{row['lr']:g}", str(row["epochs"]), fmt(row["train_acc"]), fmt(row["val_acc"]), fmt(row["train_loss"]),
            fmt(row["val_loss"]), f"{row['seconds']:.1f}", "[bold green]★ best[/]" if row["best"] else "",
        )  # fmt: skip
    out_console.print(table)
    out_console.print(f"CSV {result['files']['sweep.csv']} · HTML {result['files']['sweep.html']}")


@app.command("report")
@user_errors
def report_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by `train run`."),
    json_output: bool = JsonOption,
) -> None:
    """Show a run's test evaluation: accuracy, per-class metrics, confusion matrix, targets."""
    from train.reporting import report_for

    report = report_for(run_dir)
    if json_output:
        emit_json(report)
        return
    out_console.print(_classes_table(report["per_class"]))
    pairs = ", ".join(f"{p['true']}→{p['predicted']} ({p['count']})" for p in report["most_confused"][:5])
    if pairs:
        out_console.print(f"Most confused: {pairs}")
    if report["targets"]:
        out_console.print(_targets_table(report["targets"]))
    out_console.print(_accuracy_line(report))
    out_console.print(f"Report {run_dir / 'report.html'}")


@app.command("audit")
@user_errors
def audit_command(
    out: Path = typer.Option(
        None, "--out", help="Audit folder: folds, report.json, report.html (default WORKSPACE/audits/<timestamp>)."
    ),
    dataset: str = DatasetOpt,
    folds: int = typer.Option(5, "--folds", help="Folds (K ≥ 2), grouped by near-duplicate group."),
    model: str = ModelOpt,
    depth: int = DepthOpt,
    epochs: int = typer.Option(None, "--epochs", help="Epochs per fold (default: train run's, about 500 steps)."),
    batch_size: int = BatchOpt,
    img_size: int = SizeOpt,
    augment: str = AugmentOpt,
    members: int = typer.Option(None, "--members", help="smallcnn: networks per fold model (default 1)."),
    rank_by: str = typer.Option(
        "self_confidence", "--rank-by", help="Rank suspects by self_confidence (default) or normalized_margin."
    ),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    workers: int = WorkersOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue the audit in --out with the folds not done."),
    parallel: int = typer.Option(
        None,
        "--parallel",
        min=1,
        help="Fold models trained at once on a CPU (default: one per torch thread; 1 on a GPU).",
    ),
    compare: bool = typer.Option(
        False,
        "--compare",
        help="Retrain on the labels as corrected since the audit in --out and on the audited "
        "ones; compare both on the same test split.",
    ),
    workspace: Path = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Out-of-fold predictions for every image of a snapshot and the suspected label errors they reveal."""
    from storage.errors import GleanerError
    from storage.workspace import open_workspace
    from train.audit.confident import RANKINGS
    from train.audit.run import run_audit
    from train.config import TrainConfig
    from train.progress import CliProgress
    from train.run import default_run_dir

    if rank_by not in RANKINGS:
        raise GleanerError(f"--rank-by must be one of {', '.join(RANKINGS)}, not {rank_by!r}")
    ws = open_workspace(workspace)
    if out is None:
        if resume or compare:
            raise GleanerError("--resume and --compare need --out: the audit folder")
        out = ws.root / "audits" / default_run_dir(ws).name
    values = _config_values(
        model=model, depth=depth, epochs=epochs, batch_size=batch_size, img_size=img_size, augment=augment,
        members=members, seed=seed, device=device, workers=workers,
    )  # fmt: skip
    with CliProgress() as progress:
        callbacks = progress.callbacks()
        callbacks.on_defaults = _print_defaults
        fold_task = progress.progress.add_task("folds", total=folds, rate="")

        def on_fold(done: int, total: int) -> None:
            progress.progress.update(fold_task, completed=done, total=total, rate=f"{done}/{total} folds")

        if compare:
            from train.audit.compare import compare_corrected

            progress.progress.remove_task(fold_task)
            report = compare_corrected(ws, out, callbacks=callbacks)
        else:
            report = run_audit(
                ws, out, TrainConfig(**values), folds, dataset=dataset, resume=resume, rank_by=rank_by,
                callbacks=callbacks, on_fold=on_fold, parallel=parallel,
            )  # fmt: skip
    if json_output:
        emit_json(report)
        return
    if compare:
        comparison = report["comparison"]
        for name, m in comparison["models"].items():
            out_console.print(f"trained on {name}: test accuracy {m['accuracy']:.2%} ({m['test_images']} images)")
        out_console.print(f"{comparison['changed']} labels changed; difference {comparison['gain']:+.2%}")
    else:
        table = Table(title="Per class (suspects: given this label; suggested as: proposed as this label)")
        for column in ("label", "images", "suspects", "suggested as"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for label, m in report["per_class"].items():
            table.add_row(label, str(m["images"]), str(m["suspects"]), str(m["suggested_as"]))
        out_console.print(table)
        out_console.print(
            f"{report['suspect_count']} suspected label errors in {report['images']} images · out-of-fold accuracy "
            f"{report['oof_accuracy']:.2%} · `curate labels --suspects` lists them"
        )
    out_console.print(f"Report: {report['report']}")


@app.command("predict")
@user_errors
def predict_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by `train run`."),
    images: list[Path] = typer.Argument(..., help="Image files, or folders of them, to classify."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="How many labels to show per image."),
    json_output: bool = JsonOption,
) -> None:
    """Classify image files (or every file in a folder) with the run's best model; files that are not images are
    listed as skipped, the others still classified."""
    from train.predict import predict_files

    result = predict_files(run_dir, images, top_k)
    if json_output:
        emit_json(result.to_json())
        return
    table = Table(title="Predictions")
    table.add_column("image", overflow="fold")
    table.add_column("label")
    table.add_column("top", overflow="fold")
    for item in result.predictions:
        top = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in item["top"])
        table.add_row(item["image"], item["label"], top)
    out_console.print(table)
    for problem in result.problems:
        err_console.print(f"[yellow]skipped[/] {problem['item']}: {problem['reason']}", highlight=False, soft_wrap=True)


@app.command("export")
@user_errors
def export_command(
    run_dir: Path = typer.Argument(..., help="A run folder written by `train run`."),
    fmt: str = typer.Option("torchscript", "--format", help="torchscript or onnx."),
    out: Path = typer.Option(None, "--out", help="Output file (default RUN_DIR/model.ts or model.onnx)."),
    json_output: bool = JsonOption,
) -> None:
    """Export the best model and check that it predicts what the checkpoint predicts."""
    from train.export import export_run

    result = export_run(run_dir, fmt, out)
    if json_output:
        emit_json(result)
        return
    out_console.print(
        f"Wrote {result['path']} ({result['bytes']:,} bytes); same predictions as the checkpoint on "
        f"{result['checked_images']} images (max logit difference {result['max_abs_diff']:.1e}). "
        f"Input: floats in [0, 1], shape {result['input']['shape']}."
    )


@app.command("devices")
@user_errors
def devices_command(json_output: bool = JsonOption) -> None:
    """List the devices torch can train on here (CPU, CUDA GPUs)."""
    devices = list_devices()
    if json_output:
        emit_json({"devices": devices})
        return
    table = Table(title="Devices")
    for column in ("device", "name", "details"):
        table.add_column(column)
    for device in devices:
        details = ", ".join(f"{k} {v}" for k, v in device.items() if k not in ("device", "name"))
        table.add_row(device["device"], device["name"], details)
    out_console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
