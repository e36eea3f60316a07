"""`train predict`: classify image files with a finished run's best model, decoded exactly as in training.

Arguments may be files or folders (every file under a folder, hidden ones skipped, in name order). A file that
cannot be classified (missing, not an image, corrupt) is one problem naming its path; the others are still
predicted, as collectors treat bad files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import UnidentifiedImageError

from storage.errors import GleanerError
from train.data import decode_image
from train.rundir import load_net

__all__ = ["Predictions", "expand_paths", "load_images", "predict_files", "unreadable_reason"]

BATCH = 256
_OBJECT_REPR = re.compile(r"\s*<[^<>]* object at 0x[0-9a-f]+>")  # Pillow names the BytesIO, not the file


@dataclass
class Predictions:
    """One entry per classified file, and one problem per file that could not be classified."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"predictions": self.predictions, "problems": self.problems}


def expand_paths(paths: Sequence[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files to classify (folders expanded), and a problem for each argument that names nothing usable."""
    files: list[Path] = []
    problems: list[dict[str, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                problems.append({"item": str(path), "reason": "folder holds no files"})
            files.extend(found)
        elif not path.exists():
            problems.append({"item": str(path), "reason": "no such file"})
        else:
            files.append(path)
    return files, problems


def unreadable_reason(exc: Exception) -> str:
    """Why a file could not be classified, in words about the file (never a Python object's repr)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (its format is not one Pillow reads)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read it: {exc.strerror}"
    detail = _OBJECT_REPR.sub("", str(exc)).strip() or type(exc).__name__
    return f"not a readable image: {detail}"


def _decode(path: Path, size: int, channels: int) -> np.ndarray:
    return decode_image(path.read_bytes(), size, channels)


def load_images(paths: Sequence[Path], size: int, channels: int) -> torch.Tensor:
    """Files → float batch in [0, 1] (N, C, size, size); an unreadable file is a clear error naming it."""
    arrays = []
    for path in map(Path, paths):
        try:
            arrays.append(_decode(path, size, channels))
        except Exception as exc:
            raise GleanerError(f"{path}: {unreadable_reason(exc)}") from None
    return torch.from_numpy(np.stack(arrays)).float() / 255


@torch.no_grad()
def predict_files(run_dir: Path, paths: Sequence[Path], top_k: int = 3) -> Predictions:
    """The `top_k` labels with their probabilities for each file, most likely first; bad files become problems.

    Raises GleanerError when nothing at all could be classified (there is no result to show)."""
    if not paths:
        raise GleanerError("no images given")
    files, problems = expand_paths(paths)
    net, meta = load_net(Path(run_dir))
    labels = meta["labels"]
    k = max(1, min(top_k, len(labels)))
    result = Predictions(problems=problems)
    for start in range(0, len(files), BATCH):  # decoded a batch at a time: a folder of any size fits in memory
        chunk: list[tuple[Path, np.ndarray]] = []
        for path in files[start : start + BATCH]:
            try:
                chunk.append((path, _decode(path, meta["img_size"], meta["channels"])))
            except Exception as exc:  # one bad file is reported, the rest are still predicted
                result.problems.append({"item": str(path), "reason": unreadable_reason(exc)})
        if not chunk:
            continue
        batch = torch.from_numpy(np.stack([array for _, array in chunk])).float() / 255
        values, indices = torch.softmax(net(batch), dim=1).topk(k, dim=1)
        for (path, _), vals, idx in zip(chunk, values, indices, strict=True):
            top = [{"label": labels[int(i)], "probability": round(float(v), 4)} for v, i in zip(vals, idx, strict=True)]
            result.predictions.append({"image": str(path), "label": top[0]["label"], "top": top})
    if not result.predictions:
        first = result.problems[0]
        more = f" (and {len(result.problems) - 1} more)" if len(result.problems) > 1 else ""
        raise GleanerError(f"nothing to classify: {first['item']}: {first['reason']}{more}")
    return result
