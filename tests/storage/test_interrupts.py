"""Ctrl-C inside a catalog write transaction waits for its end, so it cannot leave the write lock held.

The failure this guards against was seen in CI: a `harvest import` interrupted at an unlucky moment kept an
open `BEGIN IMMEDIATE` on a connection nothing would roll back, and then waited a minute on its own lock to
record the run as interrupted. The tests raise the signal at exactly that moment (right after BEGIN, from
SQLAlchemy's own `begin` event) instead of hoping a timed Ctrl-C lands there."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, text

from storage.catalog import Catalog
from storage.interrupts import held_interrupts


def _locked(db: Path) -> bool:
    """Another connection cannot take the write lock at once."""
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        other.close()


def test_ctrl_c_right_after_begin_commits_then_interrupts_and_leaves_no_lock(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    catalog = Catalog(f"sqlite:///{db}")
    with catalog.write() as conn:
        conn.execute(text("CREATE TABLE marks (n INTEGER)"))

    def ctrl_c_after_begin(_conn: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    event.listen(catalog.engine, "begin", ctrl_c_after_begin)  # after the BEGIN IMMEDIATE listener
    with pytest.raises(KeyboardInterrupt), catalog.write() as conn:
        conn.execute(text("INSERT INTO marks VALUES (1)"))
    event.remove(catalog.engine, "begin", ctrl_c_after_begin)

    assert not _locked(db), "the interrupted transaction kept the catalog's write lock"
    with catalog.read() as conn:
        assert conn.execute(text("SELECT n FROM marks")).scalars().all() == [1]  # the work it held for committed
    catalog.close()


def test_a_signal_inside_a_failing_transaction_rolls_back_then_interrupts(tmp_path: Path) -> None:
    db = tmp_path / "catalog.db"
    catalog = Catalog(f"sqlite:///{db}")
    with catalog.write() as conn:
        conn.execute(text("CREATE TABLE marks (n INTEGER)"))
    with pytest.raises(KeyboardInterrupt), catalog.write() as conn:
        conn.execute(text("INSERT INTO marks VALUES (1)"))
        os.kill(os.getpid(), signal.SIGINT)
        raise ValueError("the work failed too")
    assert not _locked(db)
    with catalog.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM marks")).scalar_one() == 0
    catalog.close()


def test_the_handler_in_place_gets_the_signal_after_the_block_nested_blocks_included() -> None:
    """A collector's own handler (`harvest watch` sets a stop flag) is what the held signal reaches."""
    seen: list[tuple[int, str]] = []
    where = ["outside"]
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append((signum, where[0])))
    try:
        with held_interrupts():
            where[0] = "inside"
            with held_interrupts():
                os.kill(os.getpid(), signal.SIGTERM)
                assert seen == []
            assert seen == []  # the inner block ending does not deliver: the outer one is still open
            where[0] = "after"
        assert seen == [(signal.SIGTERM, "after")]
        assert signal.getsignal(signal.SIGTERM) is not None
        os.kill(os.getpid(), signal.SIGTERM)  # the handler is back in place
        assert seen[-1] == (signal.SIGTERM, "after")
        assert len(seen) == 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_other_threads_run_their_blocks_unchanged() -> None:
    handlers: list[object] = []

    def work() -> None:
        with held_interrupts():
            handlers.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert handlers == [before]
