"""Issue 11 on real small data: defaults chosen from the data beat the linear baseline of the same run on 200
Fashion-MNIST images; the choices are recorded; options given win; cross-validation tests every image once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from curate.snapshot import create_snapshot, list_snapshots
from harvest.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx
from storage.workspace import Workspace
from tests.train.conftest import SNAPSHOT, make_workspace
from train.baseline import linear_baseline
from train.blend import (
    BLEND_CANDIDATES,
    SMALL_SET_BLEND,
    SMALL_SET_PER_CLASS,
    choose_blend,
    default_blend,
    fold_baseline,
)
from train.config import TrainConfig
from train.crossval import assign_folds
from train.defaults import DEFAULT_AUGMENT, DataFacts, choose_defaults
from train.run import run_training

PAIR = ("pullover", "coat")  # see the README: where the defaults gain over a linear model, and by how much
TRAINED_PER_CLASS = 100  # what the trainer sees: 80 training and 20 validation images per class
TEST_PER_CLASS = 900  # test images: one is 0.06 points, so "above the baseline" is a measured difference
PER_CLASS = TRAINED_PER_CLASS + TEST_PER_CLASS
RATIOS = (0.08, 0.02, 0.9)
needs_fashion = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(), reason="apt-get install dataset-fashion-mnist"
)


@pytest.fixture(scope="module")
def fashion_ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """200 real 28x28 Fashion-MNIST images to learn from (two classes of 100: 160 training, 40 validation) and
    1,800 more as the test split, in one workspace and snapshot. With the 20 test images a 200-image set would
    keep, one image is 5 points and "above the baseline" cannot be told from luck."""
    images = read_idx(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")
    targets = read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz")
    out = tmp_path_factory.mktemp("fashion-pair")
    counts: dict[str, int] = {}
    for index, (pixels, target) in enumerate(zip(images, targets, strict=True)):
        label = FASHION_MNIST_CLASSES[int(target)]
        if label in PAIR and counts.get(label, 0) < PER_CLASS:
            counts[label] = counts.get(label, 0) + 1
            (out / "png" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, "L").save(out / "png" / label / f"{index:05d}.png")
        if len(counts) == 2 and min(counts.values()) == PER_CLASS:
            break
    workspace = make_workspace(out / "ws", out / "png")
    create_snapshot(workspace, name="pair", ratios=RATIOS, threshold=0)
    yield workspace
    workspace.close()


@needs_fashion
def test_defaults_against_the_linear_baseline_on_200_real_images(fashion_ws: Workspace, tmp_path: Path) -> None:
    summary = run_training(fashion_ws, tmp_path / "run", TrainConfig(device="cpu"), dataset="pair")
    assert summary["status"] == "done"
    baseline = summary["baseline"]
    model, floor = summary["accuracy"], baseline["accuracy"]
    # Issue 11's acceptance: above the baseline of the same run (old defaults: 50%, one class for everything).
    # On 1,800 test images one image is 0.06 points; here the defaults gain about 8 (README, "Small sets").
    assert model > floor, (model, baseline)
    assert summary["versus_baseline"]["verdict"] == "above"
    alone = summary["model_alone"]  # the parts of the delivered blend, on the same test split
    assert 0.5 < alone["accuracy"] <= 1 and 0 <= alone["blend"] <= 0.5 and alone["blend_reason"]
    low, high = summary["accuracy_ci"]
    assert low < summary["accuracy"] < high
    chosen = summary["chosen"]
    assert chosen["img_size"]["value"] == 28 and "not upsampled" in chosen["img_size"]["reason"]
    assert chosen["batch_size"]["value"] == 16 and chosen["augment"]["value"] == list(DEFAULT_AUGMENT)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["chosen"] == chosen and config["train"]["img_size"] == 28  # recorded with the run
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["baseline"]["accuracy"] == baseline["accuracy"] and report["images_per_second"] > 0
    assert report["model_alone"] == alone and "linear baseline" in (tmp_path / "run" / "report.html").read_text()
    for label in PAIR:
        per_class = report["per_class"][label]
        assert per_class["test_support"] == per_class["support"] == TEST_PER_CLASS
        assert per_class["recall_ci"][0] <= per_class["recall"] <= per_class["recall_ci"][1]
    predicted = np.array(report["confusion"]["matrix"]).sum(axis=0)
    assert (predicted > 0).all()  # no one-class collapse


def test_defaults_follow_the_data_and_explicit_options_win() -> None:
    tiny = DataFacts(train_images=160, classes=2, shorter_sides=[25] * 200)
    config, chosen = choose_defaults(TrainConfig(), tiny)
    assert (config.img_size, config.depth, config.batch_size) == (25, 3, 16)
    assert config.epochs is not None and config.epochs * 10 >= 500  # 10 steps per epoch, 500 steps at least
    assert config.augment == DEFAULT_AUGMENT and config.patience and config.patience >= 5
    assert set(chosen) == {"img_size", "depth", "batch_size", "epochs", "augment", "patience", "tta", "members"}
    assert config.members == 3 and config.tta  # an ensemble on small sets; flips, so flip test-time augmentation
    digits = DataFacts(1000, 10, [8] * 1000)
    assert choose_defaults(TrainConfig(), digits)[0].depth == 2  # 8 px: two blocks leave a 2x2 map
    photos = DataFacts(8000, 10, [480, 640, 1024])
    config, _ = choose_defaults(TrainConfig(), photos)
    assert config.img_size == 64 and config.batch_size == 128  # capped; large sets get large batches
    assert config.members == 1
    assert choose_defaults(TrainConfig(model="resnet18", weights="x.pt"), photos)[0].img_size == 224
    assert choose_defaults(TrainConfig(model="resnet18"), DataFacts(10, 2, [8]))[0].img_size == 32
    given = TrainConfig(img_size=64, batch_size=128, epochs=3, augment=(), patience=0, depth=1, tta=False, members=1)
    config, chosen = choose_defaults(given, tiny)
    assert config == given and chosen == {}  # `--augment none` is () and stays off


def test_linear_baseline_is_a_real_classifier() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 100, (120, 1, 6, 6), generator=generator, dtype=torch.uint8)
    targets = torch.arange(120) % 3
    images[:, 0, 0, :] = (targets * 80).to(torch.uint8).view(-1, 1)  # the class is written in the first row
    splits = {"train": (images[:80], targets[:80]), "val": (images[80:100], targets[80:100]),
              "test": (images[100:], targets[100:])}  # fmt: skip
    result = linear_baseline(splits, 3)
    assert result.accuracy == 1.0 and result.features == 36 and result.penalty in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    noise = {name: (torch.randint(0, 255, x.shape, generator=generator, dtype=torch.uint8), y)
             for name, (x, y) in splits.items()}  # fmt: skip
    assert linear_baseline(noise, 3).accuracy < 0.8  # labels it cannot see: no better than chance, about 1/3


@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 48), (1, 64)])
def test_the_folded_baseline_gives_the_baselines_probabilities(channels: int, side: int) -> None:
    """One Linear layer on the model's input = pooling to 32 px + standardising + the baseline's W, b."""
    generator = torch.Generator().manual_seed(side)
    images = torch.randint(0, 255, (60, channels, side, side), generator=generator, dtype=torch.uint8)
    targets = torch.arange(60) % 3
    images[:, 0, :4, :] = (targets * 80).to(torch.uint8).view(-1, 1, 1)
    splits = {"train": (images[:40], targets[:40]), "val": (images[40:50], targets[40:50]),
              "test": (images[50:], targets[50:])}  # fmt: skip
    result = linear_baseline(splits, 3)
    folded = fold_baseline(result, channels, side, side)
    with torch.no_grad():
        probs = torch.softmax(folded(images[50:].float() / 255), dim=1).numpy()
    assert np.abs(probs - result.predictions.probs).max() < 1e-4


def test_blend_weight_moves_from_the_prior_only_on_evidence() -> None:
    targets = np.array([0, 1] * 10)
    sure = np.eye(2)[targets] * 0.98 + 0.01  # a model that is right and sure
    coin = np.full((20, 2), 0.5)
    weight, info = choose_blend(sure, coin, targets)
    assert weight == 0.0 and len(info["candidates"]) == len(BLEND_CANDIDATES)  # a useless baseline gets no weight
    sure_on_half = np.where(np.arange(20) % 2 == 0, 0.9, 0.6)  # two parts, each sure where the other is not
    model, baseline = (np.stack([p, 1 - p], 1) for p in (sure_on_half, sure_on_half[::-1]))
    model[targets == 1], baseline[targets == 1] = model[targets == 1, ::-1], baseline[targets == 1, ::-1]
    weight, info = choose_blend(model, baseline, targets)  # 20 images cannot tell the weights apart
    assert weight == SMALL_SET_BLEND and "prior" in info["reason"]
    assert choose_blend(model, baseline, targets, prior=0.0)[0] == 0.0  # ...nor move a large set's prior
    assert choose_blend(sure, coin, targets[:0])[0] == SMALL_SET_BLEND


def test_the_prior_blend_is_for_small_training_sets() -> None:
    assert default_blend(160, 2) == SMALL_SET_BLEND and default_blend(1600, 10) == SMALL_SET_BLEND
    assert default_blend(8000, 10) == 0.0 and default_blend(SMALL_SET_PER_CLASS * 2 + 1, 2) == 0.0


def test_folds_keep_groups_whole_and_balance_labels() -> None:
    samples = [(f"a{i}", "a", f"g{i // 3}") for i in range(30)] + [(f"b{i}", "b", f"b{i}") for i in range(20)]
    folds = assign_folds(samples, 5, seed=1)
    assert set(folds.values()) == {0, 1, 2, 3, 4}
    for group in {g for _, _, g in samples}:
        assert len({folds[s] for s, _, g in samples if g == group}) == 1  # a near-duplicate group stays together
    for label, size in (("a", 30), ("b", 20)):
        per_fold = [sum(1 for s, lab, _ in samples if lab == label and folds[s] == f) for f in range(5)]
        assert max(per_fold) - min(per_fold) <= 3 and sum(per_fold) == size
    assert assign_folds(samples, 5, seed=1) == folds


def test_cross_validation_tests_every_image_once(digits_ws: Workspace, digits_dir: Path, tmp_path: Path) -> None:
    from tests.train.test_cli import invoke
    from train.cli import app

    summary = invoke(app, "run", "--dataset", SNAPSHOT, "--folds", "3", "--epochs", "2", "--device", "cpu",
                     "--out", tmp_path / "cv", "--json", "-w", digits_ws.root)  # fmt: skip
    assert [f["fold"] for f in summary["folds"]] == [1, 2, 3]
    assert sum(f["test_images"] for f in summary["folds"]) == 300
    report = json.loads((tmp_path / "cv" / "report.json").read_text())
    assert report["test_images"] == 300 and report["baseline"]["accuracy"] == summary["baseline"]["accuracy"]
    assert all((tmp_path / "cv" / "folds" / f"fold-{k}" / "checkpoints" / "best.pt").is_file() for k in (1, 2, 3))
    low, high = summary["accuracy_ci"]
    assert high - low < 0.15  # 300 tested images, not 30
    # the top-level folder predicts and exports as the ensemble of its three fold models
    image = sorted((digits_dir / "digit7").glob("*.png"))[0]
    predicted = invoke(app, "predict", tmp_path / "cv", image, "--json")
    assert predicted["predictions"][0]["label"] in report["confusion"]["labels"]
    exported = invoke(app, "export", tmp_path / "cv", "--format", "torchscript", "--json")
    assert exported["same_predictions"] and exported["path"].endswith("model.ts")


def test_out_defaults_to_a_timestamped_run_folder(digits_ws: Workspace) -> None:
    from tests.train.test_cli import invoke
    from train.cli import app

    before = len(list_snapshots(digits_ws))
    summary = invoke(app, "run", "--epochs", "1", "--img-size", "16", "--device", "cpu", "--json",
                     "-w", digits_ws.root)  # fmt: skip
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent == digits_ws.root / "runs" and (run_dir / "report.json").is_file()
    assert len(list_snapshots(digits_ws)) == before  # nothing changed in the catalog: its snapshot is reused
