"""storage.parallel.process_map: a worker that dies mid-item fails that item only (real os._exit, real signals)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from storage.errors import GleanerError
from storage.parallel import WorkerDied, process_map


def _square_or_die(n: int) -> int:
    if n == 5:
        os._exit(3)  # no exception, no cleanup: the process is simply gone, as after a crash in a decoder
    if n == 11:
        os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does
    if n == 13:
        raise ValueError("thirteen")
    return n * n


def _results(workers: int, count: int) -> dict[int, object]:
    found: dict[int, object] = {}
    for group in process_map(_square_or_die, range(count), workers=workers):
        for item, result in group:
            assert item not in found, f"item {item} answered twice"
            found[item] = result
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dying_worker_fails_only_its_own_item(workers: int) -> None:
    found = _results(workers, 16)
    assert sorted(found) == list(range(16))
    died = {n for n, result in found.items() if isinstance(result, WorkerDied)}
    assert died == {5, 11}
    assert isinstance(found[5], WorkerDied) and found[5].exitcode == 3
    assert isinstance(found[11], WorkerDied) and found[11].exitcode == -signal.SIGKILL
    assert "signal 9" in str(found[11])
    assert isinstance(found[13], ValueError)
    assert {n: r for n, r in found.items() if n not in (5, 11, 13)} == {
        n: n * n for n in range(16) if n not in (5, 11, 13)
    }


def test_an_early_stop_ends_the_workers() -> None:
    groups = process_map(_square_or_die, iter(range(10_000)), workers=2)
    first = next(groups)
    assert first
    groups.close()  # the pool is stopped, not drained: this returns at once


def _slow_square(n: int) -> int:
    time.sleep(0.05)
    return n * n


def test_a_worker_killed_from_outside_fails_at_most_the_item_it_was_running() -> None:
    """SIGKILL at a moment the worker chose nothing about (as the out-of-memory killer does), twice."""
    found: dict[int, object] = {}
    killed = 0
    for group in process_map(_slow_square, range(60), workers=2):
        for item, result in group:
            assert item not in found, f"item {item} answered twice"
            found[item] = result
        if len(found) in (10, 30) and killed < (1 if len(found) < 30 else 2):
            children = [child.pid for child in multiprocessing.active_children() if child.pid]
            os.kill(children[0], signal.SIGKILL)
            killed += 1
    assert killed == 2 and sorted(found) == list(range(60))
    died = [n for n, result in found.items() if isinstance(result, WorkerDied)]
    assert len(died) <= 2, died  # the pool of a shared queue lost every item in flight, or hung
    assert all(found[n] == n * n for n in range(60) if n not in died)


def _broken_init() -> None:
    raise OSError("no store here")


def test_workers_that_cannot_start_are_one_clear_error() -> None:
    with pytest.raises(GleanerError, match="worker processes die as they start"):
        for _group in process_map(_slow_square, range(10), workers=2, initializer=_broken_init):
            pass
