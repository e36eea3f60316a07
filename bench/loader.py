"""Images/s of the training loader against torchvision's ImageFolder (default PIL loader), same images, same run.

Each dataset's snapshot is exported with curate's `imagefolder` exporter, so both loaders read the same
files' bytes; both produce uint8 tensors of the same size (ImageFolder: PIL loader → grey/resize/crop →
PILToTensor). Gleaner's loader reads through the object store, decodes once into memory (JPEG in draft
mode) and then slices batches; ImageFolder decodes every image every epoch (best of 0 and 2 workers). Both
sets of files are read once before timing, so neither loader pays for a cold disk.

    .venv/bin/python bench/loader.py [--workspace WS --dataset SNAPSHOT] [--epochs 3] [--photos] [--json]

Without --workspace it builds a Fashion-MNIST workspace (10,000 images; needs dataset-fashion-mnist).
--photos adds the 256 COCO photos of ../shared/data/photos at 64 px (the JPEG draft-decoding case).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.train_fashion import cli, export_subset, make_workspace  # noqa: E402
from curate.export import EXPORTERS  # noqa: E402
from curate.export import formats as _formats  # noqa: E402,F401 - registers the exporters
from curate.snapshot import load_manifest  # noqa: E402
from storage.workspace import open_workspace  # noqa: E402
from train.data import (  # noqa: E402
    ObjectReader,
    SnapshotDataset,
    channels_for_modes,
    decode_all,
    load_decoders,
    samples_from_manifest,
)
from train.loaders import TensorBatches  # noqa: E402
from train.records import image_modes  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "photos"


def gleaner_rate(workspace: Path, dataset: str, size: int, epochs: int, batch: int) -> dict[str, Any]:
    ws = open_workspace(workspace)
    _, entries = load_manifest(ws, dataset)
    labels = sorted({e.label for e in entries})
    samples = [s for s in samples_from_manifest(entries, labels) if s.split == "train"]
    with ws.catalog.read() as conn:
        channels = channels_for_modes(image_modes(conn, [s.sha256 for s in samples]))
    started = time.perf_counter()
    dataset_ = SnapshotDataset(samples, ObjectReader(ws.store), size, channels)
    decode_all(dataset_)
    decoded = time.perf_counter() - started
    batches = TensorBatches(dataset_.images, dataset_.targets, batch, shuffle=True)
    times = []
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        start = time.perf_counter()
        seen = sum(len(y) for _, y in batches)
        times.append(time.perf_counter() - start)
    total = decoded + sum(times)
    return {
        "images": len(samples),
        "channels": channels,
        "first_epoch_per_s": len(samples) / (decoded + times[0]),
        "warm_epoch_per_s": seen / min(times),
        "all_epochs_per_s": len(samples) * epochs / total,
    }


def imagefolder_rate(root: Path, size: int, channels: int, epochs: int, batch: int, workers: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    steps = [transforms.Grayscale(1)] if channels == 1 else []
    steps += [transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()]
    dataset = ImageFolder(str(root), transform=transforms.Compose(steps))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        seen = sum(len(y) for _, y in loader)
        times.append(time.perf_counter() - start)
    return {
        "images": len(dataset),
        "workers": workers,
        "first_epoch_per_s": seen / times[0],
        "warm_epoch_per_s": seen / min(times),
        "all_epochs_per_s": seen * epochs / sum(times),
    }


def compare(workspace: Path, dataset: str, size: int, epochs: int, batch: int, work: Path) -> dict[str, Any]:
    export = work / f"export-{dataset}"
    shutil.rmtree(export, ignore_errors=True)
    ws = open_workspace(workspace)
    _, entries = load_manifest(ws, dataset)
    EXPORTERS["imagefolder"](entries, ws.store, export)
    # the OS page cache holds both copies of the bytes before anything is timed: neither loader reads cold files
    for path in list(export.rglob("*")) + [Path(ws.store.url_for(e.key).removeprefix("file://")) for e in entries]:
        if path.is_file():
            path.read_bytes()
    load_decoders()  # libraries are imported before timing, like torchvision's ImageFolder above
    ours = gleaner_rate(workspace, dataset, size, epochs, batch)
    theirs = [imagefolder_rate(export / "train", size, ours["channels"], epochs, batch, w) for w in (0, 2)]
    best = max(theirs, key=lambda r: r["all_epochs_per_s"])
    ratios = {key: round(ours[key] / best[key], 2) for key in ("first_epoch_per_s", "all_epochs_per_s")}
    return {"dataset": dataset, "img_size": size, "epochs": epochs, "gleaner": ours, "imagefolder": theirs,
            "ratio_vs_best_imagefolder": ratios}  # fmt: skip


def photos_workspace(work: Path) -> Path:
    folder, workspace = work / "photos-png", work / "photos-ws"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(workspace, ignore_errors=True)
    for index, photo in enumerate(sorted(PHOTOS.glob("*.jpg"))):
        target = folder / ("even" if index % 2 == 0 else "odd") / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
    make_workspace(workspace)
    cli("harvest", "import", folder, "--labels-from-folders", "-w", workspace)
    cli("curate", "snapshot", "--name", "photos", "--threshold", "0", "-w", workspace)
    return workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, help="an existing workspace (default: build Fashion-MNIST)")
    parser.add_argument("--dataset", default="fashion", help="snapshot name in --workspace")
    parser.add_argument("--img-size", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--photos", action="store_true", help="also the 256 COCO photos at 64 px")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="gleaner-loader-"))
    work.mkdir(parents=True, exist_ok=True)
    workspace = args.workspace
    if workspace is None:
        folder, workspace = work / "fashion-png", work / "fashion-ws"
        export_subset(folder, 1000)
        make_workspace(workspace)
        cli("harvest", "import", folder, "--labels-from-folders", "-w", workspace)
        cli("curate", "snapshot", "--name", args.dataset, "--threshold", "8", "-w", workspace)
    results = [compare(workspace, args.dataset, args.img_size, args.epochs, args.batch_size, work)]
    if args.photos and PHOTOS.is_dir():
        results.append(compare(photos_workspace(work), "photos", 64, args.epochs, 32, work))
    if args.json:
        print(json.dumps({"results": results}, indent=2))
    else:
        for r in results:
            ours, best = r["gleaner"], max(r["imagefolder"], key=lambda x: x["all_epochs_per_s"])
            print(
                f"{r['dataset']} ({ours['images']:,} train images, {r['img_size']} px, {r['epochs']} epochs): "
                f"gleaner {ours['all_epochs_per_s']:,.0f} img/s (first epoch incl. decoding "
                f"{ours['first_epoch_per_s']:,.0f}), ImageFolder {best['all_epochs_per_s']:,.0f} img/s "
                f"({best['workers']} workers) → {r['ratio_vs_best_imagefolder']['all_epochs_per_s']}x, "
                f"first epoch {r['ratio_vs_best_imagefolder']['first_epoch_per_s']}x"
            )
    return 0 if all(r["ratio_vs_best_imagefolder"]["all_epochs_per_s"] >= 2 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
