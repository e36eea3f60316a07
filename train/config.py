"""The training configuration: one typed object that the CLI fills, the run dir stores and `--resume` reads back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from storage.errors import GleanerError

__all__ = ["PRECISIONS", "SCHEDULES", "TrainConfig", "parse_list"]

SCHEDULES = ("onecycle", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a run computes; saved as `config.json` so a run dir describes itself."""

    model: str = "smallcnn"
    depth: int = 3
    weights: str | None = None
    freeze_backbone: bool = False
    epochs: int = 10
    lr: float = 3e-3
    weight_decay: float = 0.05  # AdamW decoupled decay (scaled by the learning rate)
    batch_size: int = 128
    img_size: int = 64
    augment: tuple[str, ...] = ()
    auto_augment: bool = False
    label_smoothing: float = 0.0
    schedule: str = "onecycle"
    patience: int = 0  # epochs without a better validation score before stopping; 0: never stop early
    balanced: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # autocast dtype: fp16 on CUDA, bf16 on CPUs with native bf16, else float32
    workers: int = 0
    memory_cache_bytes: int = 4 << 30  # decode the whole dataset once into memory when it fits in this

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, not {self.epochs}"),
            (self.lr > 0, f"--lr must be positive, not {self.lr}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, not {self.batch_size}"),
            (self.img_size >= 8, f"--img-size must be at least 8, not {self.img_size}"),
            (1 <= self.depth <= 4, f"--depth must be 1 to 4, not {self.depth}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), not {self.label_smoothing}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}"),
            (self.patience >= 0, f"--patience must be 0 or more, not {self.patience}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.workers >= 0, f"--workers must be 0 or more, not {self.workers}"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), f"bad --device {self.device}"),
        ]
        for ok, message in checks:
            if not ok:
                raise GleanerError(message)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["augment"] = list(self.augment)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["augment"] = tuple(values.get("augment") or ())
        return cls(**values)

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GleanerError(f"{path} not found: not a training run folder") from None
        return cls.from_json(document.get("train", document))

    def with_changes(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


def parse_list(text: str | None, kind: type = str) -> list[Any]:
    """'1e-2,1e-3' → [0.01, 0.001]; options that take several values use commas."""
    if not text:
        return []
    try:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GleanerError(f"cannot read {text!r} as a comma-separated list of {kind.__name__}") from None
