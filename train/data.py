"""Images of a snapshot as tensors: read through the object store (with a local cache), decoded fast, once.

Decoding dominates small-image training, so a dataset that fits in memory is decoded a single time into one
uint8 tensor (`decode_all`); the epochs then only index it. JPEGs are decoded in draft mode (DCT scaling)
straight to about the target size, which skips most of the work for photos much larger than the model input.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from storage.errors import GleanerError
from storage.images import open_image
from storage.stores import ObjectStore

__all__ = [
    "GREY_MODES",
    "ObjectReader",
    "Sample",
    "SnapshotDataset",
    "channels_for_modes",
    "decode_all",
    "decode_image",
    "load_decoders",
    "samples_from_manifest",
]

GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


@dataclass(frozen=True)
class Sample:
    sha256: str
    key: str  # object key in the store
    label: str
    target: int  # index of `label` in the run's label list
    split: str


def samples_from_manifest(entries: Iterable[object], labels: Sequence[str]) -> list[Sample]:
    """Manifest entries (curate.snapshot.ManifestEntry) as samples with class indices, in manifest order."""
    index = {label: k for k, label in enumerate(labels)}
    return [Sample(e.sha256, e.key, e.label, index[e.label], e.split) for e in entries]  # type: ignore[attr-defined]


def channels_for_modes(modes: Iterable[str]) -> int:
    """1 when every image is greyscale (a grey model is 3x cheaper at the input), else 3."""
    modes = list(modes)
    return 1 if modes and all(mode in GREY_MODES for mode in modes) else 3


class ObjectReader:
    """Object bytes by key; objects of a remote store are kept in a local cache folder after the first read."""

    def __init__(self, store: ObjectStore, cache_dir: Path | None = None) -> None:
        self.store = store
        self.cache_dir = cache_dir if getattr(store, "remote", False) else None

    def read(self, key: str) -> bytes:
        if self.cache_dir is None:
            return self._get(key)
        digest = hashlib.sha256(f"{self.store.url}|{key}".encode()).hexdigest()
        path = self.cache_dir / digest[:2] / digest
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        data = self._get(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        return data

    def _get(self, key: str) -> bytes:
        try:
            return self.store.get(key)
        except KeyError:
            raise GleanerError(f"object {key} is missing from the store (run `curate fsck`)") from None


def _fit(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to `size`, then the centre square: keeps the aspect ratio, like torchvision's eval resize."""
    width, height = img.size
    if (width, height) == (size, size):
        return img
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    img = img.resize(new, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return img.crop((left, top, left + size, top + size))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _plain_png(data: bytes, size: int, channels: int) -> np.ndarray | None:
    """Already-sized 8-bit grey or RGB PNGs without transparency (datasets like MNIST) decode in libpng via
    torchvision, twice as fast as through Pillow and byte-identical; anything else returns None."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[24] != 8:
        return None
    if not (data[25] == 0 or (data[25] == 2 and channels == 3)):  # libpng's RGB → grey differs from Pillow's
        return None
    if (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) != (size, size) or b"tRNS" in data:
        return None
    if b"eXIf" in data:  # an orientation to apply: open_image's job
        return None
    decoder = _png_decoder()
    if decoder is None:
        return None
    decode_png, modes = decoder
    return decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), modes[channels]).numpy()


@functools.cache
def _png_decoder() -> tuple[Callable[..., torch.Tensor], dict[int, object]] | None:
    """torchvision's libpng op (called directly: its Python wrapper warns on every call that TorchCodec will
    take over), or None where a torchvision release no longer has it; Pillow then decodes everything."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode

        op = torch.ops.image.decode_png
    except (ImportError, AttributeError, RuntimeError):
        return None
    modes = {1: ImageReadMode.GRAY.value, 3: ImageReadMode.RGB.value}
    return (lambda tensor, mode: op(tensor, mode, False)), modes


def load_decoders() -> bool:
    """Import the fast decoders now (about a second, once); True when the libpng fast path is available."""
    return _png_decoder() is not None


def decode_image(data: bytes, size: int, channels: int) -> np.ndarray:
    """Bytes → uint8 array (channels, size, size). Greys, palettes, alpha and 16-bit images all come out right."""
    fast = _plain_png(data, size, channels)
    if fast is not None:
        return fast
    # storage.images.open_image: upright (EXIF orientation), transparency on white, 16-bit greys scaled to 8 bits,
    # JPEGs decoded at 1/2, 1/4 or 1/8 scale
    img = _fit(open_image(data, size=size, mode="L" if channels == 1 else "RGB"), size)
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        return array[None, :, :].copy()
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class SnapshotDataset(Dataset):
    """(uint8 CxHxW tensor, class index) per sample; reads from `images` when decoded ahead, else decodes."""

    def __init__(
        self,
        samples: Sequence[Sample],
        reader: ObjectReader,
        size: int,
        channels: int,
        images: torch.Tensor | None = None,
    ) -> None:
        self.samples = list(samples)
        self.reader = reader
        self.size = size
        self.channels = channels
        self.images = images
        self.targets = torch.tensor([s.target for s in self.samples], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getstate__(self) -> dict[str, object]:
        """A decoded dataset travels to another process (an audit's fold worker) without its store client, which
        it never reads again and which may not pickle (an S3 connection)."""
        state = dict(self.__dict__)
        if self.images is not None:
            state["reader"] = None
        return state

    def load(self, index: int) -> np.ndarray:
        sample = self.samples[index]
        try:
            return decode_image(self.reader.read(sample.key), self.size, self.channels)
        except GleanerError:
            raise
        except Exception as exc:
            raise GleanerError(f"cannot decode image {sample.sha256[:12]} ({sample.key}): {exc}") from exc

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.images is not None:
            return self.images[index], int(self.targets[index])
        return torch.from_numpy(self.load(index)), int(self.targets[index])

    def nbytes(self) -> int:
        return len(self.samples) * self.channels * self.size * self.size


_FORKED: SnapshotDataset | None = None  # the dataset forked worker processes decode from (never pickled)
CHUNK = 256  # images per task at most; fewer when there are few images, so every worker gets some
PROCESS_MINIMUM = 128  # below this, forking workers costs more than it saves


def _decode_chunk(bounds: tuple[int, int]) -> tuple[int, np.ndarray]:
    dataset = _FORKED
    assert dataset is not None
    start, stop = bounds
    return start, np.stack([dataset.load(index) for index in range(start, stop)])


def _use_processes(dataset: SnapshotDataset, workers: int) -> bool:
    """Small images are decoded at Python speed under the GIL: processes scale where threads cannot. Remote
    stores keep threads (their clients are not fork-safe, and waiting on the network needs no cores)."""
    import multiprocessing

    return (
        workers > 1
        and len(dataset) >= PROCESS_MINIMUM
        and not getattr(dataset.reader.store, "remote", False)
        and "fork" in multiprocessing.get_all_start_methods()
    )


def decode_all(
    dataset: SnapshotDataset, workers: int | None = None, on_progress: Callable[[int], None] | None = None
) -> torch.Tensor:
    """Decode every image once into one uint8 tensor (N, C, S, S), in worker processes (local stores) or
    threads (remote stores: reads overlap)."""
    global _FORKED
    out = torch.empty((len(dataset), dataset.channels, dataset.size, dataset.size), dtype=torch.uint8)
    target = out.numpy()
    cores = os.cpu_count() or 1
    workers = workers or cores
    chunk = max(1, min(CHUNK, len(dataset) // (4 * workers)))
    chunks = [(start, min(start + chunk, len(dataset))) for start in range(0, len(dataset), chunk)]
    load_decoders()  # imported once here, so forked workers inherit it instead of each importing torchvision
    if _use_processes(dataset, workers):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _FORKED = dataset
        try:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for start, block in pool.map(_decode_chunk, chunks):
                    target[start : start + len(block)] = block
                    if on_progress:
                        on_progress(len(block))
        finally:
            _FORKED = None
    else:

        def work(bounds: tuple[int, int]) -> int:
            for index in range(*bounds):
                target[index] = dataset.load(index)
            return bounds[1] - bounds[0]

        with ThreadPoolExecutor(max(workers, min(8, cores + 2))) as threads:
            for done in threads.map(work, chunks):
                if on_progress:
                    on_progress(done)
    dataset.images = out
    return out
