"""The evaluation report of a run: report.json (the `train report --json` document), confusion matrix PNG and
CSVs, learning curves, a gallery of the worst mistakes and one offline report.html that shows them all.

Everything is computed from `evaluation.npz` (per test image: sha256, true class, probabilities, loss), so
`train report` can rebuild the files of a finished run without the workspace or the model.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storage.errors import GleanerError
from storage.intervals import wilson_interval
from train.evaluate import Predictions
from train.feedback import collection_targets
from train.metrics import (
    accuracy,
    confusion_matrix,
    most_confused,
    normalize_rows,
    per_class_metrics,
)
from train.plots import plot_confusion, plot_curves, save_thumbnail
from train.report_html import render_html

__all__ = [
    "GALLERY_SIZE",
    "Evaluation",
    "build_report",
    "compare_to_baseline",
    "load_evaluation",
    "load_report",
    "missing_files",
    "rebuild_missing",
    "save_evaluation",
]

GALLERY_SIZE = 24
EVALUATION = "evaluation.npz"
REPORT = "report.json"


@dataclass
class Evaluation:
    """The test split's predictions, kept with the run."""

    labels: list[str]
    sha256: list[str]
    predictions: Predictions


def save_evaluation(run_dir: Path, evaluation: Evaluation) -> None:
    p = evaluation.predictions
    np.savez_compressed(
        run_dir / EVALUATION,
        labels=np.array(evaluation.labels),
        sha256=np.array(evaluation.sha256),
        targets=p.targets,
        probs=p.probs,
        losses=p.losses,
    )


def load_evaluation(run_dir: Path) -> Evaluation:
    with np.load(run_dir / EVALUATION) as data:
        predictions = Predictions(data["targets"], data["probs"], data["losses"])
        return Evaluation([str(x) for x in data["labels"]], [str(x) for x in data["sha256"]], predictions)


def _write_matrix_csv(path: Path, matrix: np.ndarray, labels: list[str], fmt: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *labels])
        for label, row in zip(labels, matrix, strict=True):
            writer.writerow([label, *(format(value, fmt) for value in row)])


def _gallery(
    run_dir: Path, evaluation: Evaluation, image_of: Callable[[int], np.ndarray] | None, limit: int
) -> list[dict[str, Any]]:
    """The misclassified test images with the highest loss: true vs predicted, confidence, loss, thumbnail."""
    p = evaluation.predictions
    wrong = np.flatnonzero(p.predicted != p.targets)
    order = wrong[np.argsort(-p.losses[wrong], kind="stable")][:limit]
    items = []
    for rank, index in enumerate(order):
        sha = evaluation.sha256[index]
        item = {
            "sha256": sha,
            "true": evaluation.labels[int(p.targets[index])],
            "predicted": evaluation.labels[int(p.predicted[index])],
            "confidence": round(float(p.confidence[index]), 4),
            "loss": round(float(p.losses[index]), 4),
        }
        thumb = Path("gallery") / f"{rank:02d}-{sha[:12]}.png"
        if image_of is not None:
            save_thumbnail(image_of(int(index)), run_dir / thumb)
        if (run_dir / thumb).is_file():
            item["thumbnail"] = thumb.as_posix()
        items.append(item)
    return items


def compare_to_baseline(model_accuracy: float | None, baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """How the model did against the linear baseline of the same run, in words a person reads as a verdict."""
    if baseline is None or baseline.get("accuracy") is None or model_accuracy is None:
        return None
    base = float(baseline["accuracy"])
    difference = round(model_accuracy - base, 4)
    if difference > 0:
        verdict, text = "above", f"the model beat the linear baseline by {difference * 100:.1f} points"
    elif difference == 0:
        verdict, text = "tied", f"the model did not beat the linear baseline: both {base:.1%}"
    else:
        verdict = "below"
        text = f"the model did not beat the linear baseline: {model_accuracy:.1%} vs {base:.1%} on the same test split"
    return {"verdict": verdict, "difference": difference, "text": text}


def build_report(
    run_dir: Path,
    evaluation: Evaluation,
    *,
    history: list[dict[str, Any]],
    counts: dict[str, int],
    meta: dict[str, Any],
    best_epoch: int | None = None,
    image_of: Callable[[int], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Compute the metrics and targets, write every report file, return the report.json document.

    `image_of(i)` gives the i-th test image as a (C, H, W) uint8 array, for the gallery's thumbnails.
    """
    labels = evaluation.labels
    p = evaluation.predictions
    matrix = confusion_matrix(p.targets, p.predicted, len(labels))
    normalized = normalize_rows(matrix)
    metrics = per_class_metrics(matrix, labels)
    targets = collection_targets(labels, counts, metrics, matrix)
    total, correct = int(matrix.sum()), int(np.trace(matrix))
    interval = wilson_interval(correct, total)
    model_accuracy = round(accuracy(matrix), 4) if total else None
    document: dict[str, Any] = {
        "accuracy": round(accuracy(matrix), 4),
        "accuracy_ci": None if interval is None else [round(v, 4) for v in interval],
        "versus_baseline": compare_to_baseline(model_accuracy, meta.get("baseline")),
        "loss": round(p.loss, 4) if len(p.losses) else None,
        "test_images": int(matrix.sum()),
        "per_class": {label: m.to_json() for label, m in metrics.items()},
        "confusion": {
            "labels": list(labels),
            "matrix": matrix.astype(int).tolist(),
            "normalized": np.round(normalized, 4).tolist(),
        },
        "most_confused": most_confused(matrix, labels),
        "targets": [t.to_json() for t in targets],
        "top_losses": _gallery(run_dir, evaluation, image_of, GALLERY_SIZE),
        "best_epoch": best_epoch,
        "epochs": history,
        "dataset_counts": dict(counts),
        **meta,
    }
    _write_matrix_csv(run_dir / "confusion.csv", matrix, labels, "d")
    _write_matrix_csv(run_dir / "confusion_normalized.csv", normalized, labels, ".4f")
    plot_confusion(matrix, normalized, labels, run_dir / "confusion_matrix.png")
    if history:
        plot_curves(history, run_dir / "curves.png", best_epoch)
    (run_dir / REPORT).write_text(json.dumps(document, indent=2), encoding="utf-8")
    (run_dir / "report.html").write_text(render_html(run_dir, document), encoding="utf-8")
    return document


def _report_files(document: dict[str, Any]) -> list[str]:
    """The files `build_report` writes from a report document (curves only when there were epochs)."""
    names = ["confusion.csv", "confusion_normalized.csv", "confusion_matrix.png", "report.html"]
    return names + (["curves.png"] if document.get("epochs") else [])


def missing_files(run_dir: Path, document: dict[str, Any]) -> list[str]:
    """Which of the report's files are not in the run folder (deleted, or never written)."""
    return [name for name in _report_files(document) if not (run_dir / name).is_file()]


def rebuild_missing(run_dir: Path, document: dict[str, Any]) -> list[str]:
    """Write the report files that are missing from report.json's own figures (the document is not recomputed,
    so what it says stays as the run wrote it); returns the names rebuilt. The pictures come first: report.html
    inlines them."""
    missing = missing_files(run_dir, document)
    labels = list(document["confusion"]["labels"])
    matrix = np.array(document["confusion"]["matrix"], dtype=np.int64).reshape(len(labels), len(labels))
    normalized = normalize_rows(matrix)
    if "confusion.csv" in missing:
        _write_matrix_csv(run_dir / "confusion.csv", matrix, labels, "d")
    if "confusion_normalized.csv" in missing:
        _write_matrix_csv(run_dir / "confusion_normalized.csv", normalized, labels, ".4f")
    if "confusion_matrix.png" in missing:
        plot_confusion(matrix, normalized, labels, run_dir / "confusion_matrix.png")
    if "curves.png" in missing:
        plot_curves(document["epochs"], run_dir / "curves.png", document.get("best_epoch"))
    if missing:  # the page inlines every picture: rebuild it when any of them was rebuilt too
        (run_dir / "report.html").write_text(render_html(run_dir, document), encoding="utf-8")
        if "report.html" not in missing:
            missing.append("report.html")
    return missing


def load_report(run_dir: Path) -> dict[str, Any]:
    path = run_dir / REPORT
    if not path.is_file():
        raise GleanerError(f"{run_dir} has no {REPORT} yet")
    return json.loads(path.read_text(encoding="utf-8"))
