"""Batches for the engine: uint8 image batches and class indices, in an order fixed by (seed, epoch).

Seeding every epoch from (seed, epoch) instead of carrying one generator along is what makes `--resume`
exact: epoch 3 shuffles the same way whether or not the process was restarted after epoch 2.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from train.data import SnapshotDataset

__all__ = ["Batches", "StreamBatches", "TensorBatches", "epoch_generator", "make_batches"]

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + salt) % (2**63))


def _order(targets: torch.Tensor, shuffle: bool, balanced: bool, generator: torch.Generator) -> torch.Tensor:
    """Indices for one epoch; balanced draws each class equally often (with replacement)."""
    count = len(targets)
    if balanced and count:
        per_class = torch.bincount(targets).clamp(min=1).to(torch.float64)
        weights = 1.0 / per_class[targets]
        return torch.multinomial(weights, count, replacement=True, generator=generator)
    if shuffle:
        return torch.randperm(count, generator=generator)
    return torch.arange(count)


class Batches:
    """The interface the engine uses: `set_epoch`, then iterate; `len` is the number of batches."""

    batch_size: int
    targets: torch.Tensor

    def set_epoch(self, epoch: int) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Batch]:
        raise NotImplementedError

    def __len__(self) -> int:
        return (len(self.targets) + self.batch_size - 1) // self.batch_size


class TensorBatches(Batches):
    """Batches sliced straight out of a decoded uint8 tensor: no per-item Python, no collate, no workers."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        balanced: bool = False,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.shuffle, self.balanced, self.seed = shuffle, balanced, seed
        self.epoch = 0
        self.targets = targets
        self.images = images
        if device is not None and device.type == "cuda":
            # small datasets live on the GPU (no copies per batch); larger ones in pinned memory
            fits = images.numel() < torch.cuda.get_device_properties(device).total_memory // 8
            self.images = images.to(device) if fits else images.pin_memory()
            self.targets = targets.to(device) if fits else targets.pin_memory()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        order = _order(self.targets.cpu(), self.shuffle, self.balanced, epoch_generator(self.seed, self.epoch))
        order = order.to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images.index_select(0, index), self.targets.index_select(0, index)


class _EpochSampler(Sampler[int]):
    def __init__(self, owner: StreamBatches) -> None:
        self.owner = owner

    def __iter__(self) -> Iterator[int]:
        o = self.owner
        return iter(_order(o.targets, o.shuffle, o.balanced, epoch_generator(o.seed, o.epoch)).tolist())

    def __len__(self) -> int:
        return len(self.owner.targets)


class StreamBatches(Batches):
    """A DataLoader that decodes as it goes, for datasets too big to decode ahead into memory."""

    def __init__(
        self,
        dataset: SnapshotDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        balanced: bool = False,
        seed: int = 0,
        workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.batch_size = batch_size
        self.shuffle, self.balanced, self.seed = shuffle, balanced, seed
        self.epoch = 0
        self.targets = dataset.targets
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=_EpochSampler(self),
            num_workers=workers,
            pin_memory=pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)


def make_batches(
    dataset: SnapshotDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    balanced: bool = False,
    seed: int = 0,
    workers: int = 0,
    device: torch.device | None = None,
) -> Batches:
    """Tensor batches when the dataset was decoded ahead (`decode_all`), else a streaming DataLoader."""
    if dataset.images is not None:
        return TensorBatches(
            dataset.images, dataset.targets, batch_size, shuffle=shuffle, balanced=balanced, seed=seed, device=device
        )
    pin = device is not None and device.type == "cuda"
    return StreamBatches(
        dataset, batch_size, shuffle=shuffle, balanced=balanced, seed=seed, workers=workers, pin_memory=pin
    )
