"""The training loop: AdamW, one-cycle or cosine, label smoothing, AMP and channels-last on CUDA, checkpoints
every epoch, the best one by validation score, exact `--resume`, early stopping that restores the best weights.

Every epoch reseeds torch from (seed, epoch), and the batch order and augmentation draws come from
generators seeded the same way, so an epoch computes the same thing whether or not the process restarted.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from train.augment import BatchAugment
from train.checkpoint import BEST, LAST, load_checkpoint, restore_rng, rng_state, save_checkpoint
from train.config import TrainConfig
from train.evaluate import autocast, predict, to_input
from train.loaders import Batches, epoch_generator
from train.weights import set_train_mode

__all__ = [
    "EpochRecord",
    "FitState",
    "Trainer",
    "cpu_has_bf16",
    "recalibrate_batchnorm",
    "resolve_device",
    "resolve_precision",
]

log = logging.getLogger(__name__)
METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
FINE_TUNE_LR_SCALE = 0.1
MIN_SELECTION_IMAGES = 100  # fewer validation images: keep the last epoch (no best-epoch choice, no early stop)


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, batches: Batches, device: torch.device) -> None:
    """Recompute every trainable batch-norm layer's running mean and variance as exact averages over clean
    (un-augmented) training images, with the current weights.

    The running statistics are an exponential average over the last few dozen steps. On a 200-image set an
    epoch is ten steps, so they trail the weights, and they were measured on augmented batches: evaluated
    with them, a net that fits its training set can score near chance on validation. "Precise BN"
    removes both gaps for the price of one forward pass. Frozen layers (eval mode) keep their statistics.
    """
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if not layers:
        return
    was_training = {m: m.training for m in net.modules()}
    momenta = {m: m.momentum for m in layers}
    net.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
        layer.train()
    batches.set_epoch(0)
    for images, _ in batches:
        net(to_input(images, device, True))
    for module, mode in was_training.items():
        module.training = mode
    for layer, momentum in momenta.items():
        layer.momentum = momentum


def resolve_device(name: str) -> torch.device:
    from storage.errors import GleanerError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GleanerError("--device cuda: torch sees no CUDA GPU here (see `train devices`)")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Native bf16 matrix units (AMX, AVX512-BF16): there bf16 autocast is 1.5-2.5x faster than float32."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `--precision`: auto is bf16 on CUDA GPUs that support it (no loss scaling
    needed), fp16 with gradient scaling on older GPUs, bf16 on CPUs with bf16 units, else float32."""
    from storage.errors import GleanerError

    if name == "fp32":
        return None
    if name == "fp16":
        if device.type != "cuda":
            raise GleanerError("--precision fp16 needs CUDA; on the CPU use bf16 or fp32")
        return torch.float16
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


class WeightAverage:
    """An exponential moving average of the weights (`--ema DECAY`), updated after every optimizer step.

    Validation, the best checkpoint and so the delivered model use the averaged weights (with batch-norm
    statistics recomputed for them when the images are in memory); training continues on the live ones.
    The decay ramps up as min(DECAY, (1 + t) / (10 + t)) so the random initialisation is forgotten quickly.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        live = net.state_dict()
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [live[k].detach() for k in keys], 1 - decay)

    @contextlib.contextmanager
    def applied(self, net: nn.Module) -> Iterator[None]:
        """The averaged weights in `net` inside the block; the live ones back afterwards."""
        backup = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict({**backup, **self.shadow})
        try:
            yield
        finally:
            net.load_state_dict(backup)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        for key, value in state["shadow"].items():
            self.shadow[key].copy_(value)


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    lr: float
    seconds: float

    def score(self) -> tuple[float, float]:
        """Higher is better: validation accuracy, then lower validation loss (train figures without a val split)."""
        if self.val_acc is None or self.val_loss is None:
            return (self.train_acc, -self.train_loss)
        return (self.val_acc, -self.val_loss)


@dataclass
class FitState:
    epochs_done: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_score: tuple[float, float] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["best_score"] = list(self.best_score) if self.best_score else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FitState:
        history = [EpochRecord(**record) for record in data.get("history", [])]
        best = data.get("best_score")
        return cls(
            data["epochs_done"], history, data["best_epoch"], tuple(best) if best else None, data["bad_epochs"],
            data["stopped_early"],
        )  # fmt: skip


class Trainer:
    """Owns the net, optimizer, scheduler and run-dir files of one run."""

    def __init__(
        self,
        net: nn.Module,
        config: TrainConfig,
        device: torch.device,
        run_dir: Path,
        train: Batches,
        val: Batches | None,
        calibration: Batches | None = None,
    ) -> None:
        assert config.epochs is not None and config.patience is not None, "choose the defaults first (train.defaults)"
        self.net, self.config, self.device, self.run_dir = net, config, device, run_dir
        self.train_batches, self.val_batches, self.calibration = train, val, calibration
        self.cuda = device.type == "cuda"
        self.amp_dtype = resolve_precision(config.precision, device)
        self.net.to(device)
        self.net.to(memory_format=torch.channels_last)  # faster convolutions with cuDNN and oneDNN alike
        self.forward: nn.Module = self.net
        if config.compile:
            self.forward = torch.compile(self.net)  # type: ignore[assignment]
        self.augment = BatchAugment(config.augment or (), config.auto_augment)
        self.optimizer = self._optimizer(config.lr)
        self.steps_per_epoch = max(1, len(train))
        self.scheduler = self._scheduler(config.epochs, config.lr)
        self.frozen = config.freeze_backbone
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state = FitState()
        self.average = WeightAverage(self.net, config.ema) if config.ema else None
        self.evaluated: dict[str, torch.Tensor] | None = None  # the weights the last validation used

    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        """AdamW; no weight decay on biases and batch-norm weights (decaying them only hurts)."""
        trainable = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]
        decay = [p for n, p in trainable if p.ndim > 1]
        other = [p for n, p in trainable if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": other, "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)

    def _scheduler(self, epochs: int, lr: float) -> torch.optim.lr_scheduler.LRScheduler:
        total = max(1, epochs * self.steps_per_epoch)
        if self.config.schedule == "onecycle" and total >= 4:  # fewer steps cannot hold its two phases
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=lr, total_steps=total, pct_start=max(0.25, 2 / total)
            )
        return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)

    # --- transfer learning: a frozen backbone first, then (--unfreeze-after N) all of it -----------------
    @property
    def unfreeze_epoch(self) -> int | None:
        return self.config.unfreeze_after if self.config.freeze_backbone else None

    def _unfreeze(self) -> None:
        """Fine-tune everything from here on: a new AdamW at FINE_TUNE_LR_SCALE of the learning rate, with a
        one-cycle (or cosine) schedule over the epochs that are left. A lower rate keeps the pretrained
        features from being wrecked by the first large steps of the whole net."""
        for param in self.net.parameters():
            param.requires_grad = True
        self.frozen = False
        lr = self.config.lr * FINE_TUNE_LR_SCALE
        self.optimizer = self._optimizer(lr)
        self.scheduler = self._scheduler(self.config.n_epochs - self.state.epochs_done, lr)
        log.info("epoch %d: unfroze the backbone, learning rate %.1e", self.state.epochs_done, lr)

    @property
    def eval_dtype(self) -> torch.dtype | None:
        """Evaluation in float32 on the CPU (cheap, and the same numbers `train predict` and exports give)."""
        return self.amp_dtype if self.cuda else None

    # --- checkpoints -------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _save(self) -> None:
        payload = {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.state.epochs_done,
            "config": self.config.to_json(),
            "state": self.state.to_json(),
            "rng": rng_state(),
        }
        if self.average is not None:
            payload["average"] = self.average.state_dict()
        save_checkpoint(self.checkpoint_dir / LAST, payload)

    def _save_best(self) -> None:
        model = self.evaluated if self.evaluated is not None else self.net.state_dict()
        payload = {"model": model, "epoch": self.state.epochs_done, "score": self.state.best_score}
        save_checkpoint(self.checkpoint_dir / BEST, payload)

    def resume(self) -> None:
        """Continue from `checkpoints/last.pt`; a longer --epochs re-plans the LR schedule from where it was."""
        checkpoint = load_checkpoint(self.checkpoint_dir / LAST, full=True)
        self.net.load_state_dict(checkpoint["model"])
        self.state = FitState.from_json(checkpoint["state"])
        if self.unfreeze_epoch is not None and self.state.epochs_done >= self.unfreeze_epoch:
            done, self.state.epochs_done = self.state.epochs_done, self.unfreeze_epoch
            self._unfreeze()  # the optimizer and schedule of the fine-tuning phase, as the killed run had them
            self.state.epochs_done = done
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        if self.average is not None and "average" in checkpoint:
            self.average.load_state_dict(checkpoint["average"])
        planned = TrainConfig.from_json(checkpoint["config"]).epochs
        if planned == self.config.epochs:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        else:
            log.warning("resume: --epochs %d (was %d) re-plans the learning-rate schedule", self.config.epochs, planned)
            self.state.stopped_early = False
            start = self.unfreeze_epoch if self.unfreeze_epoch and not self.frozen else 0
            lr = self.config.lr * (FINE_TUNE_LR_SCALE if start else 1.0)
            self.scheduler = self._scheduler(self.config.n_epochs - start, lr)
            for _ in range((self.state.epochs_done - start) * self.steps_per_epoch):
                self.scheduler.step()
        restore_rng(checkpoint["rng"])

    def restore_best(self) -> None:
        best = self.checkpoint_dir / BEST
        if best.is_file():
            self.net.load_state_dict(load_checkpoint(best)["model"])

    # --- the loop ----------------------------------------------------------------------------------------
    def fit(
        self,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_batch: Callable[[int, int], None] | None = None,
        stop_after: int | None = None,
    ) -> FitState:
        """Train up to `config.epochs`; `stop_after` ends this call after that many epochs in all (a simulated kill)."""
        cfg = self.config
        while self.state.epochs_done < cfg.n_epochs and not self.state.stopped_early:
            if stop_after is not None and self.state.epochs_done >= stop_after:
                return self.state
            if self.frozen and self.unfreeze_epoch is not None and self.state.epochs_done >= self.unfreeze_epoch:
                self._unfreeze()
            record = self._epoch(self.state.epochs_done, on_batch)
            self._after_epoch(record)
            if on_epoch:
                on_epoch(record)
        self.restore_best()
        return self.state

    def _epoch(self, epoch: int, on_batch: Callable[[int, int], None] | None) -> EpochRecord:
        cfg = self.config
        started = time.perf_counter()
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout and AutoAugment draw from the global RNG
        augment_rng = epoch_generator(cfg.seed, epoch, salt=1)
        self.train_batches.set_epoch(epoch)
        set_train_mode(self.net, self.frozen)
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        lr = self.optimizer.param_groups[0]["lr"]
        for images, labels in self.train_batches:
            x = to_input(images, self.device, False)
            if self.augment:
                x = self.augment(x, augment_rng)
            x = x.contiguous(memory_format=torch.channels_last)
            y = labels.to(self.device, non_blocking=True)
            with autocast(self.device, self.amp_dtype):
                logits = self.forward(x)
                if logits.dim() == 3:  # an ensemble in one model: (N, classes, members), each on its own loss
                    target = y.unsqueeze(1).expand(-1, logits.shape[2])
                    loss = F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
                    logits = logits.detach().mean(dim=2)
                else:
                    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            if self.average is not None:
                self.average.update(self.net)
            total_loss += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if on_batch:
                on_batch(seen, len(self.train_batches.targets))
        with self.average.applied(self.net) if self.average is not None else contextlib.nullcontext():
            if self.calibration is not None:
                recalibrate_batchnorm(self.net, self.calibration, self.device)
            val_loss = val_acc = None
            if self.val_batches is not None and len(self.val_batches.targets):
                result = predict(self.net, self.val_batches, self.device, amp_dtype=self.eval_dtype, channels_last=True)
                val_loss, val_acc = result.loss, result.accuracy
            if self.average is not None:
                self.evaluated = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return EpochRecord(
            epoch=epoch + 1,
            train_loss=float(total_loss) / max(seen, 1),
            train_acc=float(correct) / max(seen, 1),
            val_loss=val_loss,
            val_acc=val_acc,
            lr=float(lr),
            seconds=round(time.perf_counter() - started, 3),
        )

    @property
    def settle_epochs(self) -> int:
        """Epochs before the best checkpoint and early stopping start to count: the first half of the
        schedule. There the learning rate is still high and a small validation split's score is mostly
        noise: on 200 images, 20 validation images picked an epoch-17-of-72 model that tested 8 points below
        the fully annealed one, and patience stopped runs before the learning rate ever came down.

        With fewer than MIN_SELECTION_IMAGES validation images every epoch but the last settles, so the run
        keeps its final, fully annealed weights: on 20 validation images the second half of a run scores
        0.85-0.90 throughout, the loss tie-break picked epoch 41 of 72 with the learning rate still at 60%
        of its peak and patience then stopped the run at 65; that model tested 72.5% where the annealed
        networks score 80% and more (shirt/t-shirt, 100 training images)."""
        epochs = self.config.epochs or 0
        if self.val_batches is None or len(self.val_batches.targets) < MIN_SELECTION_IMAGES:
            return max(0, epochs - 1)
        return epochs // 2 if epochs >= 4 else 0

    def _after_epoch(self, record: EpochRecord) -> None:
        state = self.state
        state.epochs_done = record.epoch
        state.history.append(record)
        score = record.score()
        if record.epoch <= self.settle_epochs:
            pass  # still settling: no best epoch, no patience yet
        elif state.best_score is None or score > state.best_score:
            state.best_score, state.best_epoch, state.bad_epochs = score, record.epoch, 0
            self._save_best()
        else:
            state.bad_epochs += 1
        if self.config.patience and state.bad_epochs >= self.config.patience and record.epoch < self.config.n_epochs:
            state.stopped_early = True
        self._save()
        self.write_metrics()

    def write_metrics(self) -> None:
        """metrics.csv and metrics.json, rewritten whole each epoch (a resumed run keeps one consistent file)."""
        rows = [asdict(r) for r in self.state.history]
        with (self.run_dir / "metrics.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        summary = {"epochs": rows, "best_epoch": self.state.best_epoch, "stopped_early": self.state.stopped_early}
        (self.run_dir / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
