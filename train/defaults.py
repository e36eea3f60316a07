"""Training defaults chosen from the data: input size, depth, batch size, epochs, augmentation, patience. Pure.

Fixed defaults fail on the sets people start with. A batch of 128 on 160 training images is two optimizer
steps per epoch, and 25 px crops blown up to 64 px give the network more pixels and nothing more to learn
from: on such a set the old defaults predicted one class for everything. So every option left unset is chosen
here from facts about the snapshot (its images' shorter sides, the training split's size), and the choice
is recorded with its reason in config.json and printed. An option given on the command line always wins.

The rules (tuned on the sets `bench/train_small.py` marks as tuning sets, checked on its held-out sets):

- **img_size**: the median shorter side of the snapshot's images, never upsampled, at most 64 px (CPU-sized;
  224 for a torchvision model started from weights, the size those weights were trained at). torchvision
  models get at least 32 px, as they downsample by 32.
- **depth** (smallcnn): as many blocks as keep a feature map of at least 2x2 (up to 3): 8 px gets 2.
- **batch_size**: a power of two near train_images / 16 within 16..128, so even 160 images give 10 steps
  per epoch.
- **epochs**: enough for MIN_STEPS (500) optimizer steps, 10 to 100 epochs: a 200-image set gets 50 epochs
  of 10 steps, seconds to a minute on a CPU at these sizes; a 10,000-image set gets the minimum of 10.
- **members** (smallcnn): 3 networks in one model up to 2,000 training images (their mean is steadier and
  better than one: +4 points on the tuning pairs), else 1; 1 with --weights.
- **tta**: flip test-time augmentation when the augmentation flips.
- **augment**: flip, shift (whole-pixel shifts up to 1/8 of the side) and color (brightness/contrast ±25%),
  the transforms that keep the label for photos of objects; `--augment none` turns them off.
- **patience**: a third of the epochs (at least 5): stop when the validation score stalls that long. The
  best epoch's weights are restored in any case.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from train.config import TrainConfig

__all__ = ["DEFAULT_AUGMENT", "MIN_STEPS", "DataFacts", "choose_defaults"]

DEFAULT_AUGMENT = ("flip", "shift", "color")
MIN_STEPS = 500
MAX_SIZE = 64
MAX_PRETRAINED_SIZE = 224
MIN_TORCHVISION_SIZE = 32
MIN_SIZE = 8
BATCH_RANGE = (16, 128)
STEPS_PER_EPOCH = 16
EPOCH_RANGE = (10, 100)
ENSEMBLE_UP_TO = 2000  # training images up to which smallcnn is an ensemble of ENSEMBLE_MEMBERS networks
ENSEMBLE_MEMBERS = 3


@dataclass(frozen=True)
class DataFacts:
    """What the defaults are chosen from; all known before a single image is decoded."""

    train_images: int
    classes: int
    shorter_sides: Sequence[int]  # of the snapshot's images, from the catalog

    @property
    def median_side(self) -> int | None:
        return int(statistics.median(self.shorter_sides)) if self.shorter_sides else None


def _img_size(config: TrainConfig, facts: DataFacts) -> tuple[int, str]:
    pretrained = config.model != "smallcnn" and config.weights is not None
    cap = MAX_PRETRAINED_SIZE if pretrained else MAX_SIZE
    low = MIN_SIZE if config.model == "smallcnn" else MIN_TORCHVISION_SIZE
    median = facts.median_side
    if median is None:
        return cap, f"image sizes unknown: {cap} px"
    size = max(low, min(cap, median))
    if size == median:
        return size, f"median shorter side of the snapshot's images ({median} px), not upsampled"
    if size == cap:
        return size, f"median shorter side {median} px, capped at {cap} px"
    return size, f"median shorter side {median} px; {config.model} needs at least {low} px"


def _depth(img_size: int) -> tuple[int, str]:
    depth = 1
    while depth < 3 and img_size // 2 ** (depth + 1) >= 2:
        depth += 1
    return depth, f"{depth} blocks keep a feature map of at least 2x2 at {img_size} px"


def _batch_size(train_images: int) -> tuple[int, str]:
    target = max(1, train_images // STEPS_PER_EPOCH)
    size = min(BATCH_RANGE[1], max(BATCH_RANGE[0], 2 ** int(math.log2(target))))
    steps = math.ceil(train_images / size) if train_images else 0
    return size, f"{steps} optimizer steps per epoch on {train_images} training images"


def _epochs(train_images: int, batch_size: int) -> tuple[int, str]:
    steps = max(1, math.ceil(train_images / batch_size))
    epochs = min(EPOCH_RANGE[1], max(EPOCH_RANGE[0], math.ceil(MIN_STEPS / steps)))
    return epochs, f"{epochs * steps} optimizer steps in all ({steps} per epoch; aim: {MIN_STEPS})"


def _members(train_images: int, weights: str | None) -> tuple[int, str]:
    if weights is not None:
        return 1, "--weights given: one network, shaped as the weights"
    if train_images <= ENSEMBLE_UP_TO:
        return ENSEMBLE_MEMBERS, (
            f"{train_images} training images (≤ {ENSEMBLE_UP_TO}): the mean of {ENSEMBLE_MEMBERS} networks, "
            "steadier than one"
        )
    return 1, f"{train_images} training images: one network"


def choose_defaults(config: TrainConfig, facts: DataFacts) -> tuple[TrainConfig, dict[str, dict[str, Any]]]:
    """The config with every unset field chosen from `facts`, and {field: {"value", "reason"}} for those."""
    chosen: dict[str, dict[str, Any]] = {}

    def pick(name: str, value: Any, reason: str) -> Any:
        current = getattr(config, name)
        if current is not None:
            return current
        chosen[name] = {"value": list(value) if isinstance(value, tuple) else value, "reason": reason}
        return value

    img_size = pick("img_size", *_img_size(config, facts))
    depth = pick("depth", *_depth(img_size)) if config.model == "smallcnn" else (config.depth or 3)
    batch_size = pick("batch_size", *_batch_size(facts.train_images))
    epochs = pick("epochs", *_epochs(facts.train_images, batch_size))
    augment = pick("augment", DEFAULT_AUGMENT, "label-preserving for photos of objects; --augment none: off")
    patience = pick("patience", max(5, epochs // 3), "a third of the epochs; the best epoch is restored anyway")
    smallcnn = config.model == "smallcnn"
    members = pick("members", *_members(facts.train_images, config.weights)) if smallcnn else (config.members or 1)
    flips = "flip" in augment
    tta = pick("tta", flips, "the model is trained on mirrored images" if flips else "no flips in the augmentation")
    resolved = config.with_changes(
        img_size=img_size, depth=depth, batch_size=batch_size, epochs=epochs, augment=tuple(augment),
        patience=patience, tta=tta, members=members,
    )  # fmt: skip
    return resolved, chosen
