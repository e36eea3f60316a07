"""Checkpoints: written atomically every epoch, with everything `--resume` needs to continue exactly.

A checkpoint holds the model, optimizer, scheduler and AMP scaler states, the epoch, the config, the
early-stopping state and the RNG states (torch, CUDA, numpy, random). A run killed mid-write keeps the
previous checkpoint, because the new one only replaces it once it is complete on disk.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storage.errors import GleanerError

__all__ = ["BEST", "LAST", "load_checkpoint", "restore_rng", "rng_state", "save_checkpoint"]

LAST = "last.pt"
BEST = "best.pt"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, *, full: bool = False) -> dict[str, Any]:
    """`full` loads optimizer and RNG states too (pickled numpy and Python objects from our own run dir)."""
    if not path.is_file():
        raise GleanerError(f"no checkpoint at {path}: has this run finished an epoch yet?")
    try:
        return torch.load(path, map_location="cpu", weights_only=not full)
    except Exception as exc:
        raise GleanerError(f"cannot read checkpoint {path}: {exc}") from None
