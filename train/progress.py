"""Progress for the `train` commands: rich bars on stderr (decoding, each epoch) and a line per finished epoch."""

from __future__ import annotations

import time
from typing import Any

from storage.clikit import make_progress
from train.run import Callbacks

__all__ = ["CliProgress"]


class CliProgress:
    """Rich progress on stderr: decoding, then one bar per epoch with a summary line when it ends."""

    def __init__(self) -> None:
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
        state: dict[str, Any] = {"epoch": 0, "started": 0.0, "fresh": True}

        def on_decode(done: int, total: int) -> None:
            if self.task is None or self.progress.tasks[-1].description != "decoding":
                self._task("decoding", total)
            self.progress.update(self.task, completed=done, rate="images")

        def on_batch(done: int, total: int) -> None:
            """`done` of `total` training images of this epoch; the bar shows images/s as it goes."""
            if state["fresh"]:
                state["epoch"] += 1
                state["started"] = time.perf_counter()
                state["fresh"] = False
                self._task(f"epoch {state['epoch']}", total)
            elapsed = time.perf_counter() - state["started"]
            rate = f"{done / elapsed:,.0f} images/s" if elapsed > 0 else ""
            self.progress.update(self.task, completed=done, rate=rate)

        def on_epoch(record: Any) -> None:
            state["epoch"] = record.epoch
            state["fresh"] = True
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
