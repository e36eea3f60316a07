"""Read IDX files (the MNIST family, e.g. Debian's dataset-fashion-mnist) and write an ImageFolder tree.

Real labelled datasets that ship as packages become folders that `harvest import --labels-from-folders`
understands, so the demo and the trainer's tests run on real images without downloads.
"""

from __future__ import annotations

import argparse
import gzip
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "export_image_folder", "read_idx"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzip-compressed) as a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4:
        raise ValueError(f"{path} is not an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype: Any = _DTYPES[dtype_code]
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


def export_image_folder(
    images_path: Path, labels_path: Path, out: Path, class_names: Sequence[str], per_class: int | None = None
) -> dict[str, int]:
    """Write `out/<class>/<index>.png` for the first `per_class` images of each class; returns counts."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    counts = {name: 0 for name in class_names}
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        name = class_names[int(label)]
        if per_class is not None and counts[name] >= per_class:
            continue
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(pixels), mode="L").save(folder / f"{index:05d}.png", optimize=False)
        counts[name] += 1
    return counts


SPLITS = {"train": "the training split (60,000 images)", "t10k": "the test split (10,000 images)"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harvest.idx",
        description="Export Fashion-MNIST (Debian's dataset-fashion-mnist) as an ImageFolder tree of PNGs, "
        "OUT/<class>/<index>.png, for `harvest import OUT --labels-from-folders`.",
    )
    parser.add_argument("out", type=Path, help="folder to write OUT/<class>/<index>.png into (created if needed)")
    parser.add_argument(
        "--split",
        choices=list(SPLITS),
        default="train",
        help="which IDX pair to read: "
        + "; ".join(f"{name}: {text}" for name, text in SPLITS.items())
        + " (default: train)",
    )
    parser.add_argument(
        "--per-class", type=int, default=None, help="at most this many images of each class (default: all)"
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=FASHION_MNIST_DIR,
        help="folder holding the *-idx?-ubyte.gz files (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.per_class is not None and args.per_class < 1:
        parser.error(f"--per-class must be at least 1, not {args.per_class}")
    images = args.source / f"{args.split}-images-idx3-ubyte.gz"
    labels = args.source / f"{args.split}-labels-idx1-ubyte.gz"
    for path in (images, labels):
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (apt-get install dataset-fashion-mnist, or pass --source)")
    try:
        counts = export_image_folder(images, labels, args.out, FASHION_MNIST_CLASSES, args.per_class)
    except (OSError, ValueError, EOFError, struct.error) as exc:  # not IDX, truncated, or OUT not writable
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {sum(counts.values())} images in {len(counts)} classes to {args.out}")


if __name__ == "__main__":
    main()
