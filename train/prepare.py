"""From a snapshot name to ready datasets, in two steps: `plan_snapshot` reads the manifest, labels, channels
and image sizes from the catalog (cheap: the defaults are chosen from it, and bad input fails here), then
`load_data` decodes the images at the chosen size and computes the normalisation."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from curate.snapshot import ManifestEntry, SnapshotInfo
from storage.errors import GleanerError
from storage.workspace import Workspace
from train.data import ObjectReader, Sample, SnapshotDataset, channels_for_modes, decode_all, samples_from_manifest
from train.defaults import DataFacts
from train.records import image_modes, image_sides
from train.snapshots import choose_snapshot

__all__ = ["PreparedData", "SnapshotPlan", "load_data", "plan_snapshot", "prepare_data"]

log = logging.getLogger(__name__)
SPLIT_NAMES = ("train", "val", "test")
STATS_SAMPLE = 2000


@dataclass
class SnapshotPlan:
    """A snapshot ready to train on, before any image is decoded: what the defaults are chosen from."""

    snapshot: SnapshotInfo
    entries: list[ManifestEntry]
    labels: list[str]
    samples: list[Sample]
    channels: int
    shorter_sides: list[int]
    counts: dict[str, int]  # images per label in the whole snapshot (the targets' snapshot_count)
    origin: str  # "given", "reused" or "created" (see train.snapshots)

    def facts(self) -> DataFacts:
        train = sum(1 for s in self.samples if s.split == "train")
        return DataFacts(train, len(self.labels), self.shorter_sides)


@dataclass
class PreparedData:
    snapshot: SnapshotInfo
    labels: list[str]
    channels: int
    img_size: int
    splits: dict[str, SnapshotDataset]
    counts: dict[str, int]  # images per label in the whole snapshot (the targets' snapshot_count)
    mean: list[float]
    std: list[float]
    in_memory: bool
    origin: str = "given"


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


def plan_snapshot(
    workspace: Workspace,
    snapshot: str | None,
    *,
    labels: list[str] | None = None,
    channels: int | None = None,
) -> SnapshotPlan:
    """The snapshot's samples, labels, channels and image sizes, read from the catalog without decoding.

    `labels` and `channels` come from the run dir on `--resume`, so a resumed run sees the same class order.
    """
    info, entries, origin = choose_snapshot(workspace, snapshot)
    present = sorted({e.label for e in entries})
    if labels is None:
        labels = present
    elif set(present) - set(labels):
        unknown = sorted(set(present) - set(labels))
        raise GleanerError(f"snapshot {info.name} has labels the run does not know: {', '.join(unknown)}")
    samples = samples_from_manifest(entries, labels)
    if not any(s.split == "train" for s in samples):
        raise GleanerError(f"snapshot {info.name} has no training images")
    shas = [s.sha256 for s in samples]
    with workspace.catalog.read() as conn:
        if channels is None:
            channels = channels_for_modes(image_modes(conn, shas))
        sides = image_sides(conn, shas)
    counts = dict(sorted(Counter(e.label for e in entries).items()))
    return SnapshotPlan(info, entries, list(labels), samples, channels, sides, counts, origin)


def load_data(
    workspace: Workspace,
    plan: SnapshotPlan,
    *,
    img_size: int,
    memory_cache_bytes: int,
    cache_dir: Path | None = None,
    workers: int | None = None,
    on_decode: Callable[[int, int], None] | None = None,
) -> PreparedData:
    """Datasets for train/val/test; decoded into one in-memory uint8 tensor when it fits `memory_cache_bytes`."""
    samples, channels = plan.samples, plan.channels
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
    mean, std = _stats(splits["train"], channels)
    return PreparedData(
        plan.snapshot, list(plan.labels), channels, img_size, splits, plan.counts, mean, std, in_memory, plan.origin
    )


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
    """`plan_snapshot` then `load_data`, for callers that already know the input size."""
    plan = plan_snapshot(workspace, snapshot, labels=labels, channels=channels)
    return load_data(
        workspace, plan, img_size=img_size, memory_cache_bytes=memory_cache_bytes, cache_dir=cache_dir,
        workers=workers, on_decode=on_decode,
    )  # fmt: skip
