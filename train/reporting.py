"""`train report`: a run's report, rebuilt when its files are missing.

A finished run has report.json; any other report file that is missing (report.html, confusion_matrix.png,
curves.png, the confusion CSVs) is rebuilt from it. If only its evaluation is there, the report files are
rebuilt from it; if the run never got to evaluate (killed, or stopped before the end), its best checkpoint is
evaluated on the snapshot's test split, read from the workspace recorded in config.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from storage.errors import GleanerError
from train.evaluate import predict
from train.loaders import make_batches
from train.prepare import prepare_data
from train.report import (
    EVALUATION,
    REPORT,
    Evaluation,
    build_report,
    load_evaluation,
    rebuild_missing,
    save_evaluation,
)
from train.rundir import BASELINE, load_net, read_meta

__all__ = ["report_for"]


def _history(run_dir: Path) -> tuple[list[dict[str, Any]], int | None]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return [], None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data.get("epochs", []), data.get("best_epoch")


def _evaluate(run_dir: Path, meta: dict[str, Any]) -> tuple[Evaluation, Any]:
    from storage.workspace import open_workspace

    workspace = open_workspace(meta["workspace"])
    data = prepare_data(
        workspace, meta["snapshot"], img_size=meta["img_size"], memory_cache_bytes=0,
        cache_dir=workspace.root / ".cache" / "train", labels=meta["labels"], channels=meta["channels"],
    )  # fmt: skip
    net, _ = load_net(run_dir)
    test = data.splits["test"]
    predictions = predict(net, make_batches(test, 256), torch.device("cpu"))
    return Evaluation(meta["labels"], [s.sha256 for s in test.samples], predictions), test.load


def report_for(run_dir: Path) -> dict[str, Any]:
    """report.json of the run, building it first when needed."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    if (run_dir / REPORT).is_file():
        document: dict[str, Any] = json.loads((run_dir / REPORT).read_text(encoding="utf-8"))
        rebuild_missing(run_dir, document)
        return document
    image_of = None
    if (run_dir / EVALUATION).is_file():
        evaluation = load_evaluation(run_dir)
    elif (run_dir / "checkpoints").is_dir():
        evaluation, image_of = _evaluate(run_dir, meta)
        save_evaluation(run_dir, evaluation)
    else:
        raise GleanerError(f"{run_dir} has no checkpoint yet: the run has not finished an epoch")
    history, best_epoch = _history(run_dir)
    report_meta = {"run_dir": str(run_dir), "run_id": meta.get("run_id"), "snapshot": meta["snapshot"]}
    report_meta["model"] = meta["train"]["model"]
    report_meta["chosen"] = meta.get("chosen", {})
    baseline = run_dir / BASELINE
    report_meta["baseline"] = json.loads(baseline.read_text(encoding="utf-8")) if baseline.is_file() else None
    return build_report(
        run_dir, evaluation, history=history, counts=meta.get("dataset_counts", {}), meta=report_meta,
        best_epoch=best_epoch, image_of=image_of,
    )  # fmt: skip
