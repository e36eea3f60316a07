"""storage.catalog.targets, the targets table's one writer: runs and people write one vocabulary (open, met,
closed, dropped) through it, `collected` is derived from the images, and a newer run replaces only the labels it
measured — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, select

from storage.catalog import Catalog, finish_run, start_run
from storage.catalog.labels import add_label
from storage.catalog.schema import images, labels, targets
from storage.catalog.sql import now
from storage.catalog.targets import (
    STATUSES,
    close_targets,
    list_targets,
    open_targets,
    refresh_targets,
    replace_run_targets,
    set_manual_target,
    target_sources,
)
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
        with cat.write() as conn:
            for name in ("cat", "dog", "bird", "coat", "shirt"):
                add_label(conn, name, actor="test")
        yield cat


def statuses(catalog: Catalog) -> list[tuple[str, str, int | None]]:
    with catalog.read() as conn:
        rows = conn.execute(select(targets.c.label, targets.c.status, targets.c.run_id).order_by(targets.c.id))
        return [(label, status, run_id) for label, status, run_id in rows]


_counter = iter(range(1, 1_000_000))


def add_images(conn: Connection, label: str, n: int, **state: str) -> list[str]:
    """Catalog rows as ingest writes them (the count is derived from rows, whichever collector wrote them)."""
    label_row = conn.execute(select(labels.c.id).where(labels.c.name == label)).scalar_one()
    shas = []
    for _ in range(n):
        sha = f"{next(_counter):064x}"
        stamp = now()
        conn.execute(
            images.insert().values(
                sha256=sha, object_key=f"images/{sha[:2]}/{sha}.jpg", ext="jpg", format="JPEG", size_bytes=1,
                width=8, height=8, mode="RGB", phash=0, label_id=label_row, status=state.get("status", "ok"),
                review=state.get("review", "unreviewed"), duplicate_of=state.get("duplicate_of"), added_at=stamp,
                updated_at=stamp,
            )
        )  # fmt: skip
        shas.append(sha)
    return shas


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
        replace_run_targets(
            conn, [RunTarget("dog", 20, "confused"), RunTarget("bird", 5, "few")], second,
            measured=["cat", "dog", "bird"], origin="/runs/second",
        )  # fmt: skip
    with catalog.read() as conn:
        listed = open_targets(conn)
    # hand-set first and winning over the run's target for the same label; then the run's, most urgent first
    assert [(t.label, t.want, t.origin) for t in listed] == [("dog", 50, "manual"), ("bird", 5, "/runs/second")]
    assert listed[0].to_json() == {
        "label": "dog", "want": 50, "collected": 0, "reason": "set by hand", "status": "open", "origin": "manual",
        "run_id": None, "sources": [],
    }  # fmt: skip
    with catalog.write() as conn:
        assert set_manual_target(conn, "dog", 0) is None  # closes the label's open targets
    assert statuses(catalog) == [
        ("cat", "dropped", first),  # the second run measured cat and found it fine
        ("dog", "dropped", first),  # replaced by the hand-set target
        ("dog", "closed", None),  # closed by a person
        ("dog", "dropped", second),  # a person's target was open: the run's is history only
        ("bird", "open", second),
    ]
    assert {status for _, status, _ in statuses(catalog)} <= set(STATUSES)


def test_a_newer_run_replaces_only_the_labels_it_measured(catalog: Catalog) -> None:
    with catalog.write() as conn:
        first = start_run(conn, "train", {})
        replace_run_targets(
            conn, [RunTarget("coat", 90, "confused with shirt"), RunTarget("bird", 40, "few")], first,
            measured=["coat", "shirt", "bird"], origin="/ws/runs/first",
        )  # fmt: skip
        second = start_run(conn, "train", {})  # a run on a snapshot without birds
        replace_run_targets(
            conn, [RunTarget("shirt", 60, "confused with coat")], second, measured=["coat", "shirt"],
            origin="/ws/runs/second",
        )  # fmt: skip
    with catalog.read() as conn:
        assert [(t.label, t.want, t.origin) for t in open_targets(conn)] == [
            ("shirt", 60, "/ws/runs/second"),  # the newest run's first
            ("bird", 40, "/ws/runs/first"),  # not measured by the second run: stays
        ]  # coat was measured again and wanted nothing more: its target is gone
        closed = [(t.label, t.status) for t in list_targets(conn, include_closed=True)][2:]
    assert closed == [("coat", "dropped")]


def test_collected_counts_accepted_images_added_while_open_and_met_targets_close(catalog: Catalog) -> None:
    with catalog.write() as conn:
        add_images(conn, "shirt", 5)  # before the target: not counted
        set_manual_target(conn, "shirt", 30, "few shirts")
        set_manual_target(conn, "coat", 10)
    with catalog.write() as conn:
        add_images(conn, "shirt", 20)
        add_images(conn, "shirt", 2, review="rejected")
        add_images(conn, "shirt", 2, status="missing")
        keeper = add_images(conn, "coat", 1)[0]
        add_images(conn, "shirt", 3, duplicate_of=keeper)  # set aside as near-duplicates
        assert refresh_targets(conn) == []
    with catalog.read() as conn:
        assert [(t.label, t.collected, t.remaining, t.status) for t in open_targets(conn)] == [
            ("coat", 1, 9, "open"),
            ("shirt", 20, 10, "open"),
        ]
    with catalog.write() as conn:
        add_images(conn, "shirt", 10)
        listed = list_targets(conn)  # met is visible at once, before anyone refreshes
        assert [(t.label, t.collected, t.status) for t in listed] == [("coat", 1, "open"), ("shirt", 30, "met")]
        assert [t.label for t in open_targets(conn)] == ["coat"]
        assert [t.label for t in refresh_targets(conn)] == ["shirt"]
        assert refresh_targets(conn) == []
    with catalog.write() as conn:
        add_images(conn, "shirt", 4)  # after it closed: the met target keeps its count
    with catalog.read() as conn:
        everything = {t.label: t for t in list_targets(conn, include_closed=True)}
    assert (everything["shirt"].status, everything["shirt"].collected) == ("met", 30)
    assert ("shirt", "met", None) in statuses(catalog)


def test_hand_set_targets_need_a_known_label_keep_their_sources_and_close(catalog: Catalog) -> None:
    with catalog.write() as conn, pytest.raises(GleanerError, match=r"no label 'nosuchlabel'.*known labels: bird, cat"):
        set_manual_target(conn, "nosuchlabel", 10)
    with catalog.write() as conn:
        made = set_manual_target(conn, "Scarf", 10, create=True, sources=["https://shop.test/scarves"])
        assert made is not None and made.label == "Scarf"
        again = set_manual_target(conn, "scarf", 15)  # a spelling of the same label; sources carried over
        assert again is not None and again.sources == ("https://shop.test/scarves",)
        assert target_sources(conn) == {"Scarf": ["https://shop.test/scarves"]}
        assert close_targets(conn, "SCARF") == 1
        assert open_targets(conn) == []
    with catalog.write() as conn, pytest.raises(GleanerError, match="no open target for 'scarf'"):
        close_targets(conn, "scarf")
    with catalog.write() as conn, pytest.raises(GleanerError, match="http"):
        set_manual_target(conn, "cat", 5, sources=["ftp://x/y"])


def test_bad_manual_targets_are_user_errors(catalog: Catalog) -> None:
    with catalog.write() as conn, pytest.raises(GleanerError, match="needs a label"):
        set_manual_target(conn, "  ", 5)
    with catalog.write() as conn, pytest.raises(GleanerError, match="0 or more"):
        set_manual_target(conn, "cat", -1)


def test_v7_targets_are_migrated_with_their_run_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with Catalog(url) as old, old.write() as conn:
        for column in ("origin", "sources", "closed_at"):
            conn.execute(sa.text(f"ALTER TABLE targets DROP COLUMN {column}"))
        conn.execute(sa.text("UPDATE meta SET value = '7' WHERE key = 'schema_version'"))
        run = start_run(conn, "train", {"run_dir": "runs/first"})
        for label, status, run_id in (("cat", "open", run), ("dog", "done", None), ("dog", "open", None)):
            conn.execute(
                sa.text(
                    "INSERT INTO targets (label, want, reason, status, priority, run_id, created_at, updated_at)"
                    " VALUES (:label, 10, 'r', :status, 1, :run, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"label": label, "status": status, "run": run_id},
            )
    with Catalog(url) as migrated, migrated.read() as conn:
        listed = [(t.label, t.status, t.origin) for t in list_targets(conn, include_closed=True)]
    assert listed == [("dog", "open", "manual"), ("cat", "open", "runs/first"), ("dog", "closed", "manual")]
