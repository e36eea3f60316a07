"""The training configuration: one typed object that the CLI fills, the run dir stores and `--resume` reads back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from storage.errors import GleanerError

__all__ = ["AUTO_FIELDS", "PRECISIONS", "SCHEDULES", "TrainConfig", "parse_list"]

SCHEDULES = ("onecycle", "cosine")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# None in these fields means "choose from the data" (train.defaults); a run dir's config.json holds the choices
AUTO_FIELDS = ("img_size", "batch_size", "epochs", "depth", "augment", "patience", "tta", "members")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what a run computes; saved as `config.json` so a run dir describes itself."""

    model: str = "smallcnn"
    depth: int | None = None  # smallcnn blocks; None: as many as the image size carries (train.defaults)
    members: int | None = None  # smallcnn: networks averaged in one model; None: from the set's size
    weights: str | None = None
    freeze_backbone: bool = False
    unfreeze_after: int | None = None  # with freeze_backbone: fine-tune everything after this many epochs
    epochs: int | None = None  # None: enough optimizer steps for the set's size (train.defaults)
    lr: float = 3e-3
    weight_decay: float = 0.05  # AdamW decoupled decay (scaled by the learning rate)
    batch_size: int | None = None  # None: small enough for enough steps per epoch on small sets
    img_size: int | None = None  # None: the snapshot's typical shorter side, never upsampled (capped)
    augment: tuple[str, ...] | None = None  # None: the safe default set; () (`--augment none`): off
    auto_augment: bool = False
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off), e.g. 0.998
    tta: bool | None = None  # flip test-time augmentation; None: on when the training augmentation flips
    blend: float | None = None  # weight of the linear baseline in the delivered model; None: chosen on val
    schedule: str = "onecycle"
    patience: int | None = None  # epochs without a better validation score before stopping; 0: never
    balanced: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # autocast dtype: bf16 on CUDA GPUs that have it (else fp16), bf16 on CPUs with it
    workers: int = 0
    memory_cache_bytes: int = 4 << 30  # decode the whole dataset once into memory when it fits in this
    compile: bool = False  # torch.compile the model (CUDA; a minute of compiling pays off on long runs)

    @property
    def n_epochs(self) -> int:
        """`epochs` once chosen (train.defaults fills in every None before training starts)."""
        assert self.epochs is not None, "epochs are chosen before training"
        return self.epochs

    @property
    def n_batch(self) -> int:
        """`batch_size` once chosen (train.defaults fills in every None before training starts)."""
        assert self.batch_size is not None, "the batch size is chosen before training"
        return self.batch_size

    def __post_init__(self) -> None:
        def at_least(value: int | None, low: int) -> bool:
            return value is None or value >= low

        checks = [
            (at_least(self.epochs, 1), f"--epochs must be at least 1, not {self.epochs}"),
            (self.lr > 0, f"--lr must be positive, not {self.lr}"),
            (at_least(self.batch_size, 1), f"--batch-size must be at least 1, not {self.batch_size}"),
            (at_least(self.img_size, 8), f"--img-size must be at least 8, not {self.img_size}"),
            (self.depth is None or 1 <= self.depth <= 4, f"--depth must be 1 to 4, not {self.depth}"),
            (at_least(self.members, 1), f"--members must be at least 1, not {self.members}"),
            (self.members in (None, 1) or self.model == "smallcnn", "--members above 1 needs --model smallcnn"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), not {self.label_smoothing}"),
            (self.blend is None or 0 <= self.blend <= 1, f"--blend must be auto or in [0, 1], not {self.blend}"),
            (0 <= self.ema < 1, f"--ema must be in [0, 1), not {self.ema}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}"),
            (at_least(self.patience, 0), f"--patience must be 0 or more, not {self.patience}"),
            (at_least(self.unfreeze_after, 1), f"--unfreeze-after must be at least 1, not {self.unfreeze_after}"),
            (self.unfreeze_after is None or self.freeze_backbone, "--unfreeze-after needs --freeze-backbone"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.workers >= 0, f"--workers must be 0 or more, not {self.workers}"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), f"bad --device {self.device}"),
        ]
        for ok, message in checks:
            if not ok:
                raise GleanerError(message)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["augment"] = None if self.augment is None else list(self.augment)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("augment") is not None:
            values["augment"] = tuple(values["augment"])
        return cls(**values)

    @property
    def resolved(self) -> bool:
        """True once every "choose from the data" field holds a value (what the engine needs)."""
        return all(getattr(self, name) is not None for name in AUTO_FIELDS)

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
