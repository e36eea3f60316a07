"""Run a model over batches and keep, per image, the class probabilities and the loss (for reports and review)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Predictions", "autocast", "predict", "to_input"]


@dataclass
class Predictions:
    targets: np.ndarray  # int64 (N,)
    probs: np.ndarray  # float32 (N, classes)
    losses: np.ndarray  # float32 (N,) cross-entropy of the true class, without label smoothing

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self.probs) else np.zeros(0, dtype=np.int64)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1) if len(self.probs) else np.zeros(0, dtype=np.float32)

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.targets).mean()) if len(self.targets) else float("nan")

    @property
    def loss(self) -> float:
        return float(self.losses.mean()) if len(self.losses) else float("nan")


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast | nullcontext:
    """Mixed precision (fp16 on CUDA, bf16 on CPUs with native bf16 units); None: plain float32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def to_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 batch → float in [0, 1] on the device; the copy overlaps compute when the source is pinned."""
    x = images.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict(
    net: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Predictions:
    was_training = net.training
    net.eval()
    targets, probs, losses = [], [], []
    for images, labels in batches:
        x = to_input(images, device, channels_last)
        y = labels.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = net(x)
        logits = logits.float()
        losses.append(F.cross_entropy(logits, y, reduction="none").cpu())
        probs.append(torch.softmax(logits, dim=1).cpu())
        targets.append(labels.cpu())
    net.train(was_training)
    if not targets:
        return Predictions(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, np.float32))
    return Predictions(
        torch.cat(targets).numpy().astype(np.int64),
        torch.cat(probs).numpy().astype(np.float32),
        torch.cat(losses).numpy().astype(np.float32),
    )
