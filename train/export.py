"""`train export`: the run's best model as TorchScript or ONNX, checked against the checkpoint on real inputs.

Both take what `train predict` feeds the model (floats in [0, 1], N x C x S x S; normalisation is inside),
and both are verified before the command reports success: same top-1 class on every check image and
logits within a small tolerance. ONNX needs the `onnx` and `onnxruntime` packages.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storage.errors import GleanerError
from train.rundir import load_net

__all__ = ["EXPORTERS", "export_run", "onnx_available", "stdout_to_stderr"]

TOLERANCE = 1e-3
Exporter = Callable[[torch.nn.Module, torch.Tensor, Path], Callable[[np.ndarray], np.ndarray]]
EXPORTERS: dict[str, Exporter] = {}


def _register(name: str) -> Callable[[Exporter], Exporter]:
    def decorate(fn: Exporter) -> Exporter:
        EXPORTERS[name] = fn
        return fn

    return decorate


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr while exporting: torch's ONNX exporter prints graphs from C++
    straight onto fd 1, which broke `train export --json` (stdout must hold one JSON document only)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def onnx_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


@_register("torchscript")
def _torchscript(net: torch.nn.Module, example: torch.Tensor, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, yet still what C++ and mobile load
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are constants: the input size is fixed
        traced = torch.jit.trace(net, example, check_trace=False)
        traced.save(str(path))
        loaded = torch.jit.load(str(path))
    loaded.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(batch)).numpy()

    return run


@_register("onnx")
def _onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    if not onnx_available():
        raise GleanerError("ONNX export needs the onnx and onnxruntime packages: pip install onnx onnxruntime")
    import onnxruntime

    with warnings.catch_warnings(), stdout_to_stderr():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated but needs no onnxscript
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"image": batch})[0]


def _check_inputs(meta: dict[str, Any], count: int = 16) -> torch.Tensor:
    """Images to compare on: the run's own gallery thumbnails are not at model size, so use seeded noise
    blended with flat images; enough to exercise every layer in both directions of each ReLU."""
    size, channels = meta["img_size"], meta["channels"]
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(count, channels, size, size, generator=generator)
    flat = torch.rand(count, channels, 1, 1, generator=generator).expand_as(noise)
    return (0.5 * noise + 0.5 * flat).contiguous()


def export_run(run_dir: Path, fmt: str, out: Path | None = None, inputs: torch.Tensor | None = None) -> dict[str, Any]:
    """Write the exported model (default RUN_DIR/model.<ext>) and verify it; returns where and how close."""
    if fmt not in EXPORTERS:
        raise GleanerError(f"unknown export format {fmt!r}; choose from {', '.join(sorted(EXPORTERS))}")
    net, meta = load_net(Path(run_dir))
    net = net.cpu().eval()
    batch = inputs if inputs is not None else _check_inputs(meta)
    path = out or Path(run_dir) / ("model.ts" if fmt == "torchscript" else "model.onnx")
    try:  # fail on the path, in its own words, before torch's exporters fail on it with a RuntimeError
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab"):
            pass
    except OSError as exc:
        raise GleanerError(f"cannot write {path}: {exc.strerror or exc}") from None
    run = EXPORTERS[fmt](net, batch[:2].clone(), path)
    with torch.no_grad():
        expected = net(batch).numpy()
    got = run(batch.numpy())
    diff = float(np.abs(got - expected).max())
    same = bool((got.argmax(1) == expected.argmax(1)).all())
    if not same or diff > TOLERANCE:
        raise GleanerError(f"exported {fmt} model disagrees with the checkpoint (max logit difference {diff:.2e})")
    return {
        "format": fmt,
        "path": str(path),
        "bytes": path.stat().st_size,
        "input": {"shape": ["batch", meta["channels"], meta["img_size"], meta["img_size"]], "range": [0.0, 1.0]},
        "labels": meta["labels"],
        "checked_images": len(batch),
        "max_abs_diff": diff,
        "same_predictions": same,
    }
