"""The `train` commands end to end on real (tiny) data: run → report files → report JSON → catalog
predictions and targets → `harvest targets`; predict; export; sweep; transfer learning from a state dict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from harvest.targets import targets_app
from storage.catalog.schema import predictions, runs
from storage.workspace import Workspace
from tests.train.conftest import SNAPSHOT, TINY, invoke
from train.cli import app as train_app
from train.export import export_run, onnx_available
from train.models import SmallCNN


def harvest_app() -> typer.Typer:
    """`harvest` as the project wires it: the targets sub-app under the name `targets`."""
    app = typer.Typer()
    app.add_typer(targets_app, name="targets")

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer from collapsing the group
        """Nothing."""

    return app


def test_run_writes_a_self_describing_run_dir(finished_run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = finished_run
    assert summary["status"] == "done" and summary["epochs_done"] == 2
    for name in ("config.json", "labels.json", "metrics.csv", "metrics.json", "checkpoints/last.pt",
                 "checkpoints/best.pt", "report.json", "report.html", "confusion_matrix.png", "curves.png",
                 "confusion.csv", "confusion_normalized.csv"):  # fmt: skip
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["snapshot"] == SNAPSHOT and config["channels"] == 1
    assert json.loads((out / "labels.json").read_text()) == [f"digit{k}" for k in range(10)]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")  # opens offline
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_report_json_has_the_design_shape(finished_run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = finished_run
    report = invoke(train_app, "report", out, "--json")
    assert isinstance(report["accuracy"], float) and report["accuracy"] == summary["accuracy"]
    labels = report["confusion"]["labels"]
    matrix = report["confusion"]["matrix"]
    assert len(matrix) == len(labels) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == report["test_images"] == 30
    for label in labels:
        assert set(report["per_class"][label]) >= {"precision", "recall", "f1", "support"}
    for target in report["targets"]:
        assert set(target) >= {"label", "want", "reason"} and target["want"] > 0
    (out / "report.json").unlink()  # rebuilt from the saved evaluation
    assert invoke(train_app, "report", out, "--json")["confusion"] == report["confusion"]


def test_catalog_gets_the_run_predictions_and_targets(
    finished_run: tuple[Path, dict[str, Any]], digits_ws: Workspace
) -> None:
    out, summary = finished_run
    with digits_ws.catalog.read() as conn:
        run = conn.execute(select(runs).where(runs.c.id == summary["run_id"])).one()
        count = conn.execute(select(func.count()).where(predictions.c.run_id == run.id)).scalar_one()
        review = conn.execute(
            select(predictions).where(predictions.c.run_id == run.id, predictions.c.needs_review.is_(True))
        ).all()
    assert (run.kind, run.status) == ("train", "done")
    assert count == 300
    assert all(r.true_label != r.predicted_label or r.confidence < 0.5 for r in review)
    listed = invoke(harvest_app(), "targets", "-w", digits_ws.root, "--json")
    report = json.loads((out / "report.json").read_text())
    assert [{k: t[k] for k in ("label", "want", "reason")} for t in listed["targets"]] == [
        {k: t[k] for k in ("label", "want", "reason")} for t in report["targets"]
    ]
    invoke(harvest_app(), "targets", "set", "digit3", "--want", "25", "--reason", "need more", "-w", digits_ws.root,
           "--json")  # fmt: skip
    listed = invoke(harvest_app(), "targets", "-w", digits_ws.root, "--json")["targets"]
    assert {k: listed[0][k] for k in ("label", "want", "reason", "origin")} == {
        "label": "digit3", "want": 25, "reason": "need more", "origin": "manual"
    }  # fmt: skip
    invoke(harvest_app(), "targets", "set", "digit3", "--want", "0", "-w", digits_ws.root, "--json")
    listed = invoke(harvest_app(), "targets", "-w", digits_ws.root, "--json")["targets"]
    assert all(t["origin"] != "manual" for t in listed)


def test_predict_and_export(finished_run: tuple[Path, dict[str, Any]], digits_dir: Path, tmp_path: Path) -> None:
    out, _ = finished_run
    files = sorted((digits_dir / "digit7").glob("*.png"))[:3]
    result = invoke(train_app, "predict", out, *files, "--top-k", "2", "--json")
    assert len(result["predictions"]) == 3
    for item in result["predictions"]:
        assert len(item["top"]) == 2 and item["top"][0]["probability"] >= item["top"][1]["probability"]
        assert item["label"] == item["top"][0]["label"]
    exported = invoke(train_app, "export", out, "--format", "torchscript", "--json")
    assert exported["same_predictions"] and Path(exported["path"]).is_file()
    # on the real images too: TorchScript and ONNX give the checkpoint's predictions
    from train.predict import load_images

    images = load_images(sorted(digits_dir.glob("*/*.png"))[::10], 16, 1)
    formats = ["torchscript", "onnx"] if onnx_available() else ["torchscript"]
    for fmt in formats:
        check = export_run(out, fmt, tmp_path / f"model.{fmt}", inputs=images)
        assert check["same_predictions"] and check["max_abs_diff"] < 1e-3, fmt


def test_weights_and_frozen_backbone_through_the_cli(digits_ws: Workspace, tmp_path: Path) -> None:
    pretrained = SmallCNN(num_classes=4, in_channels=1, depth=2)
    path = tmp_path / "pretrained.pt"
    torch.save(pretrained.state_dict(), path)
    summary = invoke(  # no --dataset: the catalog has not changed, so its newest snapshot is reused
        train_app, "run", "--weights", path, "--freeze-backbone", "--depth", "2",
        "--epochs", "1", *TINY, "--out", tmp_path / "ft", "--json", "-w", digits_ws.root,
    )  # fmt: skip
    assert summary["snapshot"] == SNAPSHOT and summary["status"] == "done"
    assert summary["weights"]["new"] == ["fc.bias", "fc.weight"]
    state = torch.load(tmp_path / "ft" / "checkpoints" / "best.pt", weights_only=True)["model"]
    for name, tensor in pretrained.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(state[f"body.{name}"], tensor), name
    result = CliRunner().invoke(
        train_app, ["run", "--dataset", SNAPSHOT, "--weights", str(tmp_path / "missing.pt"), "--epochs", "1", *TINY,
                    "--out", str(tmp_path / "x"), "-w", str(digits_ws.root)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "weights file not found" in result.output and "Traceback" not in result.output


def test_sweep_marks_the_best_trial(digits_ws: Workspace, tmp_path: Path) -> None:
    result = invoke(
        train_app, "sweep", "--dataset", SNAPSHOT, "--lr", "3e-3,1e-5", "--epochs", "1", *TINY,
        "--out", tmp_path / "sweep", "--json", "-w", digits_ws.root,
    )  # fmt: skip
    assert len(result["trials"]) == 2 and sum(row["best"] for row in result["rows"]) == 1
    assert result["best"]["lr"] == 3e-3  # a learning rate of 1e-5 learns nothing in one epoch
    assert (tmp_path / "sweep" / "sweep.csv").read_text().count("\n") == 3
    assert "★ best" in (tmp_path / "sweep" / "sweep.html").read_text()
