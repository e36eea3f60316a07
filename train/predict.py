"""`train predict`: classify image files with a finished run's best model, decoded exactly as in training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storage.errors import GleanerError
from train.data import decode_image
from train.rundir import load_net

__all__ = ["load_images", "predict_files"]


def load_images(paths: Sequence[Path], size: int, channels: int) -> torch.Tensor:
    """Files → float batch in [0, 1] (N, C, size, size); an unreadable file is a clear error naming it."""
    arrays = []
    for path in paths:
        try:
            arrays.append(decode_image(Path(path).read_bytes(), size, channels))
        except FileNotFoundError:
            raise GleanerError(f"{path}: no such file") from None
        except Exception as exc:
            raise GleanerError(f"{path}: not a readable image ({exc})") from None
    return torch.from_numpy(np.stack(arrays)).float() / 255


@torch.no_grad()
def predict_files(run_dir: Path, paths: Sequence[Path], top_k: int = 3) -> list[dict[str, Any]]:
    """The `top_k` labels with their probabilities for each file, most likely first."""
    if not paths:
        raise GleanerError("no images given")
    net, meta = load_net(Path(run_dir))
    labels = meta["labels"]
    batch = load_images(paths, meta["img_size"], meta["channels"])
    probs = torch.softmax(net(batch), dim=1)
    k = max(1, min(top_k, len(labels)))
    values, indices = probs.topk(k, dim=1)
    results = []
    for path, vals, idx in zip(paths, values, indices, strict=True):
        top = [{"label": labels[int(i)], "probability": round(float(v), 4)} for v, i in zip(vals, idx, strict=True)]
        results.append({"image": str(path), "label": top[0]["label"], "top": top})
    return results
