"""Progress for the `train` commands: rich bars on stderr (decoding, each epoch) and a line per finished epoch."""

from __future__ import annotations

from typing import Any

from storage.clikit import make_progress
from train.run import Callbacks

__all__ = ["CliProgress"]


class CliProgress:
    """Rich progress on stderr: decoding, then one bar per epoch with a summary line when it ends."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.progress = make_progress(transient=True)
        self.task: Any = None

    def __enter__(self) -> CliProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def _task(self, description: str, total: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(description, total=total, rate="")

    def callbacks(self) -> Any:
        state = {"epoch": 0}

        def on_decode(done: int, total: int) -> None:
            if self.task is None or self.progress.tasks[-1].description != "decoding":
                self._task("decoding", total)
            self.progress.update(self.task, completed=done, rate="images")

        def on_batch(step: int, total: int) -> None:
            if step == 1:
                state["epoch"] += 1
                self._task(f"epoch {state['epoch']}", total)
            self.progress.update(self.task, completed=step, rate="batches")

        def on_epoch(record: Any) -> None:
            state["epoch"] = record.epoch
            val = "" if record.val_acc is None else f"  val loss {record.val_loss:.3f} acc {record.val_acc:.3f}"
            self.progress.console.print(
                f"epoch {record.epoch:>3}  train loss {record.train_loss:.3f} acc {record.train_acc:.3f}{val}"
                f"  lr {record.lr:.1e}  {record.seconds:.1f}s",
                highlight=False,
                soft_wrap=True,
            )

        def on_phase(text: str) -> None:
            if text.startswith("trial"):
                state["epoch"] = 0
            self.progress.console.print(f"[dim]{text}[/]")

        return Callbacks(on_decode=on_decode, on_batch=on_batch, on_epoch=on_epoch, on_phase=on_phase)
