"""Transfer learning: start from saved weights and optionally train only the new head.

Weights come from a file (a state dict, or a Gleaner checkpoint) or, by torchvision weight name
(`DEFAULT`, `IMAGENET1K_V1`, `ResNet18_Weights.IMAGENET1K_V1`), from torchvision's local cache. Nothing is
ever downloaded at run time: a missing file is one clear error at once, never a hang on a dead network.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from storage.errors import GleanerError
from train.models import head_name

__all__ = ["LoadReport", "freeze_backbone", "load_weights", "read_state_dict", "resolve_weights", "set_train_mode"]

log = logging.getLogger(__name__)
LoadReport = dict[str, Any]


def _torchvision_cache_file(spec: str, arch: str) -> Path | None:
    """The cache path of a torchvision weight name for `arch`, or None when `spec` is not such a name."""
    import torchvision

    name = spec.split(".", 1)[1] if spec.count(".") == 1 and spec.split(".")[0].endswith("_Weights") else spec
    if not (name.replace("_", "").isalnum() and name.isupper()):
        return None
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise GleanerError(f"torchvision has no published weights for model {arch!r}; pass --weights PATH") from None
    try:
        weights = enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        choices = ", ".join(w.name for w in enum)
        raise GleanerError(f"{arch} has no weights named {name!r} (torchvision has: {choices})") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def resolve_weights(spec: str, arch: str) -> Path:
    """The file to read for `--weights`; raises GleanerError at once when it is not on this machine."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    cached = None if path.suffix in (".pt", ".pth", ".bin") or "/" in spec else _torchvision_cache_file(spec, arch)
    if cached is None:
        raise GleanerError(f"weights file not found: {spec}")
    if not cached.is_file():
        raise GleanerError(
            f"{arch} weights {spec} are not in torchvision's cache ({cached}); downloads are off at run time: "
            "copy the file there, or pass --weights PATH to a state dict"
        )
    return cached


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GleanerError(f"cannot read weights from {path}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):  # a Gleaner checkpoint
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GleanerError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    if state and all(k.startswith("body.") or k in ("mean", "std") for k in state):
        state = {k[5:]: v for k, v in state.items() if k.startswith("body.")}
    return state


def load_weights(body: nn.Module, spec: str, arch: str) -> LoadReport:
    """Load every tensor whose name and shape match; a head for another number of classes is left new."""
    path = resolve_weights(spec, arch)
    state = read_state_dict(path)
    own = body.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise GleanerError(f"no tensor in {path} fits model {arch!r}: is it the weights of another architecture?")
    skipped = sorted(k for k in state if k not in usable)
    missing = sorted(k for k in own if k not in usable)
    head = head_name(body)
    unexpected_missing = [k for k in missing if not k.startswith(head + ".")]
    if unexpected_missing:
        raise GleanerError(
            f"{path} lacks {len(unexpected_missing)} of the {len(own)} tensors of {arch!r} "
            f"(first: {unexpected_missing[0]}); only the classifier head may differ"
        )
    body.load_state_dict(usable, strict=False)
    if skipped:
        log.info("weights: kept the new head; skipped %s", ", ".join(skipped))
    return {"path": str(path), "loaded": len(usable), "skipped": skipped, "new": missing}


def freeze_backbone(body: nn.Module) -> list[str]:
    """Stop gradients everywhere but the head; returns the names of the parameters still trained."""
    head = head_name(body)
    trained = []
    for name, param in body.named_parameters():
        param.requires_grad = name.startswith(head + ".")
        if param.requires_grad:
            trained.append(name)
    return trained


def set_train_mode(net: nn.Module, frozen: bool) -> None:
    """Training mode; a frozen backbone stays in eval mode so its batch-norm statistics do not drift either."""
    net.train()
    if frozen:
        body: nn.Module = getattr(net, "body", net)
        head = head_name(body)
        for name, module in body.named_modules():
            if not (name == head or name.startswith(head + ".")):
                module.training = False  # this module only: the head below an ancestor keeps training
