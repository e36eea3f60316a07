"""Exports at every input size the trainer accepts (issue 11: 28 px used to fail in ONNX), checked against the
checkpoint's predictions; `train export --json` prints nothing but its JSON document; transfer learning from a
real torchvision ResNet18 state dict, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from storage.workspace import Workspace
from tests.train.conftest import SNAPSHOT
from tests.train.test_cli import invoke
from train.checkpoint import BEST, save_checkpoint
from train.cli import app as train_app
from train.config import TrainConfig
from train.export import export_run, onnx_available
from train.models import PixelLinear
from train.rundir import build_net, load_net, save_baseline, write_meta

REPO = Path(__file__).resolve().parents[2]
FORMATS = ["torchscript", "onnx"] if onnx_available() else ["torchscript"]


def untrained_run(run_dir: Path, size: int, model: str = "smallcnn") -> Path:
    """A run folder as `train run` leaves it (config.json, best checkpoint), with seeded random weights."""
    depth = 3 if size >= 16 else 2
    members = 3 if model == "smallcnn" else 1  # what the defaults deliver on small sets: an ensemble ...
    config = TrainConfig(
        model=model, img_size=size, depth=depth, batch_size=8, epochs=1, augment=(), patience=0, tta=True,
        members=members,
    )  # fmt: skip
    torch.manual_seed(size)
    net = build_net(config, 3, 1, [0.5], [0.25])
    net.baseline, net.blend = PixelLinear(size * size, 3), 0.25  # ... with flip TTA and a blended baseline
    net.eval()
    for module in net.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    meta = {"train": config.to_json(), "labels": ["a", "b", "c"], "channels": 1, "img_size": size,
            "mean": [0.5], "std": [0.25], "snapshot": "none"}  # fmt: skip
    write_meta(run_dir, meta)
    body = {k: v for k, v in net.state_dict().items() if not k.startswith("baseline.")}
    save_checkpoint(run_dir / "checkpoints" / BEST, {"model": body, "epoch": 1})
    save_baseline(net, run_dir / "checkpoints")
    return run_dir


@pytest.mark.parametrize("size", [25, 28, 32, 64, 224])
@pytest.mark.parametrize("fmt", FORMATS)
def test_exports_match_the_checkpoint_at_every_size(size: int, fmt: str, tmp_path: Path) -> None:
    run_dir = untrained_run(tmp_path / "run", size)
    loaded, _ = load_net(run_dir)
    assert loaded.baseline is not None and loaded.blend == 0.25 and loaded.flip_tta  # type: ignore[union-attr]
    result = export_run(run_dir, fmt, tmp_path / f"model-{size}.{fmt}")
    assert result["same_predictions"] and result["max_abs_diff"] < 1e-3
    assert result["input"]["shape"] == ["batch", 1, size, size]


def test_resnet_exports_at_a_size_that_is_not_a_power_of_two(tmp_path: Path) -> None:
    run_dir = untrained_run(tmp_path / "run", 28, model="resnet18")
    for fmt in FORMATS:
        assert export_run(run_dir, fmt, tmp_path / f"resnet.{fmt}")["same_predictions"]


@pytest.mark.skipif(not onnx_available(), reason="pip install onnx onnxruntime")
def test_export_json_is_the_only_thing_on_stdout(tmp_path: Path) -> None:
    run_dir = untrained_run(tmp_path / "run", 28)
    done = subprocess.run(
        [sys.executable, "-m", "train.cli", "export", str(run_dir), "--format", "onnx", "--json"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["same_predictions"] is True  # the whole of stdout parses


def test_transfer_learning_from_a_torchvision_resnet18_state_dict(digits_ws: Workspace, tmp_path: Path) -> None:
    """A real torchvision ResNet18 state dict (1000-class head, as ImageNet weights come) written here, loaded
    through `--weights`: frozen, the backbone stays as loaded; with --unfreeze-after it is fine-tuned."""
    import torchvision

    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "resnet18-imagenet-layout.pth"
    torch.save(imagenet.state_dict(), path)
    common = ["--dataset", SNAPSHOT, "--model", "resnet18", "--weights", path, "--freeze-backbone",
              "--img-size", "32", "--device", "cpu", "--json", "-w", digits_ws.root]  # fmt: skip
    frozen = invoke(train_app, "run", "--epochs", "1", "--out", tmp_path / "frozen", *common)
    assert frozen["status"] == "done" and frozen["weights"]["new"] == ["fc.bias", "fc.weight"]
    state = torch.load(tmp_path / "frozen" / "checkpoints" / "last.pt", weights_only=False)["model"]
    for name, tensor in imagenet.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(state[f"body.{name}"], tensor), name  # weights and batch-norm statistics
    tuned = invoke(train_app, "run", "--epochs", "2", "--unfreeze-after", "1", "--out", tmp_path / "tuned", *common)
    assert tuned["status"] == "done" and tuned["config"]["unfreeze_after"] == 1
    state = torch.load(tmp_path / "tuned" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert not torch.equal(state["body.layer1.0.conv1.weight"], imagenet.layer1[0].conv1.weight)


def test_mistakes_fail_before_any_snapshot_or_decoding(digits_ws: Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from curate.snapshot import list_snapshots

    before = len(list_snapshots(digits_ws))
    for args, message in (
        (["--model", "resnet9000"], "unknown model 'resnet9000'"),
        (["--weights", str(tmp_path / "nope.pt")], "weights file not found"),
        (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs CUDA"),
        (["--unfreeze-after", "2"], "--unfreeze-after needs --freeze-backbone"),
    ):
        result = CliRunner().invoke(train_app, ["run", *args, "--out", str(tmp_path / "x"), "-w", str(digits_ws.root)])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    assert len(list_snapshots(digits_ws)) == before and not (tmp_path / "x").exists()
