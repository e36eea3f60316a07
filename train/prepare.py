"""From a snapshot name to ready datasets: manifest, label list, channels, decoded images, normalisation."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from curate.snapshot import SnapshotInfo, create_snapshot, load_manifest
from storage.errors import GleanerError
from storage.workspace import Workspace
from train.data import ObjectReader, SnapshotDataset, channels_for_modes, decode_all, samples_from_manifest
from train.records import image_modes

__all__ = ["PreparedData", "prepare_data"]

log = logging.getLogger(__name__)
SPLIT_NAMES = ("train", "val", "test")
STATS_SAMPLE = 2000


@dataclass
class PreparedData:
    snapshot: SnapshotInfo
    labels: list[str]
    channels: int
    img_size: int
    splits: dict[str, SnapshotDataset]
    counts: dict[str, int]  # images per label in the whole snapshot (the feedback's "support")
    mean: list[float]
    std: list[float]
    in_memory: bool


def _snapshot(workspace: Workspace, name: str | None) -> tuple[SnapshotInfo, list]:
    if name is None:
        info = create_snapshot(workspace)  # no --dataset: freeze the catalog as it is now
        log.info("created snapshot %s (%d images)", info.name, info.image_count)
        name = info.name
    return load_manifest(workspace, name)


def _stats(dataset: SnapshotDataset, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (a sample of) the training images, in [0, 1] units."""
    count = min(len(dataset), STATS_SAMPLE)
    if count == 0:
        return [0.5] * channels, [0.25] * channels
    step = max(1, len(dataset) // count)
    if dataset.images is not None:
        sample = dataset.images[::step][:count].float() / 255
    else:
        sample = torch.stack([torch.from_numpy(dataset.load(i)) for i in range(0, len(dataset), step)[:count]]) / 255
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp(min=1e-3)
    return [round(float(v), 5) for v in mean], [round(float(v), 5) for v in std]


def prepare_data(
    workspace: Workspace,
    snapshot: str | None,
    *,
    img_size: int,
    memory_cache_bytes: int,
    cache_dir: Path | None = None,
    workers: int | None = None,
    labels: list[str] | None = None,
    channels: int | None = None,
    on_decode: Callable[[int, int], None] | None = None,
) -> PreparedData:
    """Datasets for train/val/test; decoded into one in-memory uint8 tensor when it fits `memory_cache_bytes`.

    `labels` and `channels` come from the run dir on `--resume`, so a resumed run sees the same class order.
    """
    info, entries = _snapshot(workspace, snapshot)
    present = sorted({e.label for e in entries})
    if labels is None:
        labels = present
    elif set(present) - set(labels):
        unknown = sorted(set(present) - set(labels))
        raise GleanerError(f"snapshot {info.name} has labels the run does not know: {', '.join(unknown)}")
    if len(labels) < 2:
        raise GleanerError(f"snapshot {info.name} has {len(labels)} label(s); a classifier needs at least 2")
    samples = samples_from_manifest(entries, labels)
    if channels is None:
        with workspace.catalog.read() as conn:
            channels = channels_for_modes(image_modes(conn, [s.sha256 for s in samples]))
    reader = ObjectReader(workspace.store, cache_dir)
    everything = SnapshotDataset(samples, reader, img_size, channels)
    in_memory = everything.nbytes() <= memory_cache_bytes
    if in_memory:
        total = len(everything)
        done = 0

        def progress(step: int) -> None:
            nonlocal done
            done += step
            if on_decode:
                on_decode(done, total)

        decode_all(everything, workers or None, progress)
    splits = {}
    for name in SPLIT_NAMES:
        index = [i for i, s in enumerate(samples) if s.split == name]
        cached = everything.images[index] if everything.images is not None else None
        splits[name] = SnapshotDataset([samples[i] for i in index], reader, img_size, channels, cached)
    if not len(splits["train"]):
        raise GleanerError(f"snapshot {info.name} has no training images")
    mean, std = _stats(splits["train"], channels)
    counts = dict(sorted(Counter(e.label for e in entries).items()))
    return PreparedData(info, list(labels), channels, img_size, splits, counts, mean, std, in_memory)
