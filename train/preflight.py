"""Fail fast: everything about a run that can be checked without its images is checked before a snapshot is
frozen or a single image decoded. A typo in `--model` used to cost a new snapshot and a full decode first.
"""

from __future__ import annotations

import torch

from storage.errors import GleanerError
from train.config import TrainConfig
from train.engine import resolve_device, resolve_precision
from train.models import build_model, check_model_name
from train.weights import load_weights, read_state_dict, resolve_weights

__all__ = ["check_config", "check_weights_fit"]


def check_config(config: TrainConfig) -> torch.device:
    """Model name, device, precision and the weights file (present, and a state dict); returns the device."""
    check_model_name(config.model)
    device = resolve_device(config.device)
    resolve_precision(config.precision, device)
    if config.compile and not hasattr(torch, "compile"):
        raise GleanerError("--compile needs a torch with torch.compile")
    if config.freeze_backbone and not config.weights:
        raise GleanerError("--freeze-backbone needs --weights: a frozen random backbone learns nothing")
    if config.weights:
        read_state_dict(resolve_weights(config.weights, config.model))
    return device


def check_weights_fit(config: TrainConfig, classes: int, channels: int) -> None:
    """The weights fit the model as it will be built (all but the head): checked on the catalog's facts,
    before decoding."""
    if not config.weights:
        return
    body, _ = build_model(config.model, classes, channels, config.depth)
    load_weights(body, config.weights, config.model)
    if config.unfreeze_after is not None and config.epochs is not None and config.unfreeze_after >= config.epochs:
        raise GleanerError(f"--unfreeze-after {config.unfreeze_after} must be below --epochs {config.epochs}")
