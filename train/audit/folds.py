"""Training an audit's fold models, several at once on a CPU.

Why: the fold models of `train audit` are independent, and small networks on small images use two CPU threads
poorly (most of a step is per-layer overhead, not arithmetic): two fold processes of one thread each finish five
folds of 1,600 Fashion-MNIST images sooner than one process of two threads (bench/label_errors.py, README). On a
GPU the folds run one after another in this process.

Each worker trains its fold in the fold's own folder (checkpoints as `train run` writes them, so `--resume`
continues an interrupted fold) and returns the fold's out-of-fold probabilities; only this process writes the
catalog. Workers exit with their parent: Ctrl-C or a kill of the audit leaves no fold training on its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from storage.errors import GleanerError
from train.config import TrainConfig
from train.engine import resolve_device
from train.evaluate import predict
from train.loaders import make_batches
from train.prepare import PreparedData
from train.run import Callbacks, fit_prepared

__all__ = ["FoldJob", "FoldResult", "fold_processes", "run_folds", "train_fold"]


@dataclass(frozen=True)
class FoldJob:
    """One fold model to train: its folder, the data with this fold as the test split, which images those are."""

    fold: int
    folds: int
    fold_dir: Path
    config: TrainConfig
    data: PreparedData
    meta: dict[str, Any]
    index: list[int]  # positions of the fold's test images in the audit's sample order
    resume: bool  # an interrupted fold: continue from its last checkpoint
    threads: int | None = None  # torch threads for this fold in a worker process (None: as the process has)


@dataclass(frozen=True)
class FoldResult:
    fold: int
    index: list[int]
    probs: np.ndarray  # (len(index), classes)
    row: dict[str, Any]  # the fold's line of the report


def train_fold(job: FoldJob, callbacks: Callbacks | None = None) -> FoldResult:
    """Train one fold model and predict its test images."""
    started = time.perf_counter()
    if job.threads:
        torch.set_num_threads(job.threads)
    trainer, _ = fit_prepared(job.fold_dir, job.config, job.data, job.meta, resume=job.resume, callbacks=callbacks)
    batches = make_batches(job.data.splits["test"], max(256, job.config.n_batch), device=trainer.device)
    test = predict(trainer.net, batches, trainer.device, amp_dtype=trainer.eval_dtype, channels_last=True)
    row = {"fold": job.fold, "test_images": len(job.index), "accuracy": round(test.accuracy, 4),
           "best_epoch": trainer.state.best_epoch, "epochs_done": trainer.state.epochs_done,
           "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    return FoldResult(job.fold, job.index, test.probs, row)


def fold_processes(requested: int | None, device: str, folds: int) -> tuple[int, int]:
    """(processes, torch threads each) for `folds` fold models. `requested`: --parallel, None for automatic (one
    process per torch thread, at most one per fold); always 1 process, with every thread, off the CPU."""
    threads = torch.get_num_threads()
    if resolve_device(device).type != "cpu" or folds <= 1:
        return 1, threads
    processes = max(1, min(requested or threads, folds))
    return processes, max(1, threads // processes)


def run_folds(
    jobs: Sequence[FoldJob],
    processes: int,
    threads: int,
    on_done: Callable[[FoldResult], None],
    callbacks: Callbacks | None = None,
) -> None:
    """Train every job, `processes` at a time; `on_done` is called here, in this process, as each fold finishes.
    In one process the callbacks see every epoch; with several, only the folds finishing."""
    callbacks = callbacks or Callbacks()
    if processes <= 1:
        for job in jobs:
            callbacks.phase(f"fold {job.fold}/{job.folds}")
            on_done(train_fold(job, callbacks))
        return
    waiting = iter(jobs)  # the pool hands jobs out in this order, one to each free worker

    def starting(job: FoldJob | None) -> None:
        if job is not None:
            callbacks.phase(f"fold {job.fold}/{job.folds} ({processes} at a time)")

    context = torch.multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_start_worker)
    try:
        futures = [pool.submit(train_fold, job) for job in _with_threads(jobs, processes, threads)]
        for _ in range(processes):
            starting(next(waiting, None))
        for future in as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool as exc:  # a worker killed from outside (out of memory?)
                raise GleanerError(
                    "a fold worker process died (out of memory?): `train audit --resume` continues, `--parallel 1` "
                    "trains one fold at a time"
                ) from exc
            on_done(result)
            starting(next(waiting, None))
        pool.shutdown()
    except BaseException:
        _stop(pool)
        raise


def _stop(pool: ProcessPoolExecutor) -> None:
    """Ctrl-C, a kill or a failed fold: stop the folds still training now. The executor would wait for them at
    exit (it has no public way to stop a running task before Python 3.14), so its workers get SIGTERM."""
    workers = getattr(pool, "_processes", None) or {}
    for process in list(workers.values()):
        with contextlib.suppress(Exception):  # already gone
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _with_threads(jobs: Sequence[FoldJob], processes: int, threads: int) -> list[FoldJob]:
    """Each job with its share of the threads. The folds of a last, incomplete round (five folds in two
    processes: the fifth) train with fewer processes beside them, so they get the threads the others leave."""
    tail = len(jobs) % processes
    shared = max(1, threads * processes // tail) if tail else threads
    return [replace(job, threads=shared if tail and k >= len(jobs) - tail else threads) for k, job in enumerate(jobs)]


def _start_worker() -> None:
    """A fold process (each job sets its own share of the threads). It leaves Ctrl-C to the audit, which records
    the interruption and exits; the worker ends with it (Linux: the kernel's parent-death signal), and quietly on
    SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the audit too, which stops; this dies with it
    signal.signal(signal.SIGTERM, _exit_quietly)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the audit died before the signal was armed
            os._exit(1)


def _exit_quietly(signum: int, _frame: object) -> None:
    os._exit(128 + signum)
