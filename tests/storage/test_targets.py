"""storage.catalog.targets, the targets table's one writer: runs and people write one vocabulary
(open, done, dropped) through it, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.catalog import Catalog, finish_run, start_run
from storage.catalog.schema import targets
from storage.catalog.targets import STATUSES, open_targets, replace_run_targets, set_manual_target
from storage.errors import GleanerError


@dataclass(frozen=True)
class RunTarget:
    """What train.feedback.Target carries that the catalog needs (storage never imports train)."""

    label: str
    want: int
    reason: str


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with Catalog(url) as cat:
        yield cat


def statuses(catalog: Catalog) -> list[tuple[str, str, int | None]]:
    with catalog.read() as conn:
        rows = conn.execute(select(targets.c.label, targets.c.status, targets.c.run_id).order_by(targets.c.id))
        return [(label, status, run_id) for label, status, run_id in rows]


def test_runs_and_people_share_one_vocabulary(catalog: Catalog) -> None:
    with catalog.write() as conn:
        first = start_run(conn, "train", {})
        replace_run_targets(conn, [RunTarget("cat", 30, "weak"), RunTarget("dog", 10, "few")], first)
        finish_run(conn, first, "done", {})
    with catalog.read() as conn:
        assert [(t.label, t.origin, t.priority) for t in open_targets(conn)] == [
            ("cat", f"run {first}", 1),
            ("dog", f"run {first}", 2),
        ]
    with catalog.write() as conn:
        manual = set_manual_target(conn, "dog", 50, None)
        assert manual is not None and manual.reason == "set by hand"
        second = start_run(conn, "train", {})
        replace_run_targets(conn, [RunTarget("dog", 20, "confused"), RunTarget("bird", 5, "few")], second)
    with catalog.read() as conn:
        listed = open_targets(conn)
    # hand-set first and winning over the run's target for the same label; then the run's, most urgent first
    assert [(t.label, t.want, t.origin) for t in listed] == [
        ("dog", 50, "manual"),
        ("bird", 5, f"run {second}"),
    ]
    assert listed[0].to_json() == {"label": "dog", "want": 50, "reason": "set by hand", "origin": "manual"}
    with catalog.write() as conn:
        assert set_manual_target(conn, "dog", 0) is None  # closes the label's open targets, run's and hand-set
    assert statuses(catalog) == [
        ("cat", "dropped", first),  # replaced by the next run
        ("dog", "dropped", first),  # replaced by the hand-set target
        ("dog", "done", None),  # closed by a person
        ("dog", "done", second),
        ("bird", "open", second),
    ]
    assert {status for _, status, _ in statuses(catalog)} <= set(STATUSES)


def test_bad_manual_targets_are_user_errors(catalog: Catalog) -> None:
    with catalog.write() as conn, pytest.raises(GleanerError, match="needs a label"):
        set_manual_target(conn, "  ", 5)
    with catalog.write() as conn, pytest.raises(GleanerError, match="0 or more"):
        set_manual_target(conn, "cat", -1)
