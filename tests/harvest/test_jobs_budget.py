"""A job's `max_images` and `max_per_label` are per run, across every worker serving it (issue 13's contract:
"max_images = 2000  # per run"), on SQLite and PostgreSQL.

Three real `harvest jobs run NAME` processes serve one run over a fixture site offering more images than the
budget; the site holds every image response until all three have joined the run, so the run cannot end before
the last one is on it. The run's images (the catalog's sources recorded with its id) stay within the budget,
in total and per label; the next run of the job takes the images the first passed over. Gate-level checks
(storage.catalog.budgets through JobGate, no processes) cover the reservation arithmetic and local files.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from harvest.jobs.gate import JobGate
from storage.catalog import Catalog
from storage.catalog.budgets import admitted, give_back, reserve
from storage.catalog.migrations import current_version
from storage.catalog.runs import start_run
from storage.catalog.schema import SCHEMA_VERSION
from storage.workspace import init_workspace, open_workspace
from tests.support.jobs import finish_job_workers, gated_url_list, job_config, start_job_workers
from tests.support.site import Site

MAX_IMAGES, MAX_PER_LABEL = 20, 12
LABELS = ["cat", "cat", "dog"]  # 40 cats and 20 dogs, interleaved
URLS = 60


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def budget_ws(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    if request.param == "sqlite":
        init_workspace(root)[0].close()
    else:
        init_workspace(root, catalog_url=request.getfixturevalue("pg_url"))[0].close()
    return root


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with Catalog(url) as catalog:
        yield catalog


def run_labels(ws: Path, run_id: int) -> Counter[str]:
    """The images the run brought, by label (the catalog's sources recorded with the run's id)."""
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        rows = conn.execute(sa.text("SELECT label FROM sources WHERE run_id = :r"), {"r": run_id})
        return Counter(str(label) for label in rows.scalars())


def job_workers(ws: Path) -> int:
    """Workers on the job's run in progress."""
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        query = "SELECT count(*) FROM run_workers w JOIN runs r ON r.id = w.run_id WHERE r.status = 'running'"
        return int(conn.execute(sa.text(query)).scalar_one())


def test_three_workers_on_one_run_stay_within_the_runs_budget_and_the_next_run_continues(
    budget_ws: Path, site: Site, tmp_path: Path
) -> None:
    ws = budget_ws
    rows = [(name, LABELS[i % 3]) for i, name in enumerate(site.photo_names[:URLS])]
    opened, prefix = gated_url_list(site, tmp_path / "list.csv", rows, "budget")
    job_config(
        ws,
        f'[[jobs]]\nname = "capped"\nmax_images = {MAX_IMAGES}\nmax_per_label = {MAX_PER_LABEL}\n'
        f'[[jobs.sources]]\nurls = "{tmp_path / "list.csv"}"\nlabel_col = "label"\nallow_private = true\n'
        "concurrency = 2\n",
    )
    env = {"GLEANER_WORKERS": "1"}
    workers = start_job_workers(ws, "capped", 3, env=env)
    try:
        deadline = time.monotonic() + 120
        while job_workers(ws) < 3 and all(w.poll() is None for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job_workers(ws) == 3  # all three on the run before any image arrives
    finally:
        opened.set()
    documents = finish_job_workers(workers)
    run_ids = {d["run_id"] for d in documents}
    assert len(run_ids) == 1, documents
    (first_run,) = run_ids
    added = sum(d["added"] for d in documents)
    by_label = run_labels(ws, first_run)
    assert sum(by_label.values()) == added == MAX_IMAGES, (by_label, documents)  # not 3 x 20
    assert all(n <= MAX_PER_LABEL for n in by_label.values()), by_label
    assert sum(d["skipped"]["by_reason"].get("max_images", 0) for d in documents) > 0

    second = finish_job_workers(start_job_workers(ws, "capped", 1, env=env))[0]
    assert second["run_id"] != first_run and second["status"] == "done"
    again = run_labels(ws, second["run_id"])
    assert sum(again.values()) == second["added"] == MAX_IMAGES, (again, second)
    assert all(n <= MAX_PER_LABEL for n in again.values()), again
    fetched = Counter(hit.target for hit in site.log if hit.path == f"{prefix}photo")
    assert sum(fetched.values()) == 2 * MAX_IMAGES and set(fetched.values()) == {1}  # each image once


# --- the reservation arithmetic, without processes ---------------------------------------------------------


def test_reservations_never_pass_the_runs_budget_and_unused_ones_go_back(any_catalog: Catalog) -> None:
    with any_catalog.write() as conn:
        run_id = start_run(conn, "job", {"job": "capped"})
        first = reserve(conn, run_id, ["cat"] * 4 + ["dog"] * 2, max_images=7, max_per_label=3)
        second = reserve(conn, run_id, ["dog", "dog", "", "cat"], max_images=7, max_per_label=3)
    assert first.refused == [None, None, None, "max_per_label", None, None] and first.total == 5
    assert second.refused == [None, "max_per_label", None, "max_images"] and second.total == 7
    with any_catalog.write() as conn:
        give_back(conn, run_id, {"cat": 1})
        third = reserve(conn, run_id, ["cat", "cat"], max_images=7, max_per_label=3)
        counts = admitted(conn, run_id)
    assert third.refused == [None, "max_images"] and counts == {"cat": 3, "dog": 3, "": 1}


def gate_for(catalog: Catalog, **budget: Any) -> JobGate:
    with catalog.write() as conn:
        run_id = start_run(conn, "job", {"job": "capped"})
    gate = JobGate(targets=False, **budget)
    gate.bind(catalog, run_id)
    return gate


def test_two_gates_of_one_run_share_its_budget(any_catalog: Catalog) -> None:
    one = gate_for(any_catalog, max_images=5, max_per_label=3)
    other = JobGate(targets=False, max_images=5, max_per_label=3)
    assert one._run_id is not None
    other.bind(any_catalog, one._run_id)
    with any_catalog.write() as conn:
        mine = one.admit_many(conn, ["cat", "cat", "dog"])
    with any_catalog.write() as conn:
        theirs = other.admit_many(conn, ["cat", "cat", "dog", "dog"])
    assert [r is None for r in mine] == [True, True, True]
    assert [r is None for r in theirs] == [True, False, True, False]  # cat: 3 in the run; then 5 in all
    assert other.budget_spent and other.closed
    assert other.to_json()["by_reason"] == {"max_images": 1, "max_per_label": 1}


def test_local_files_reserve_a_few_at_a_time_and_give_back_what_they_did_not_take(any_catalog: Catalog) -> None:
    gate = gate_for(any_catalog, max_images=30, max_per_label=20)
    assert [gate.admit("cat") is None for _ in range(3)] == [True] * 3
    assert gate._run_id is not None
    with any_catalog.read() as conn:
        assert admitted(conn, gate._run_id)["cat"] > 3  # a reservation of several, not one per file
    gate.release()
    with any_catalog.read() as conn:
        assert admitted(conn, gate._run_id) == {"cat": 3}
    assert [gate.admit("cat") is None for _ in range(20)].count(True) == 17  # max_per_label across the run


def test_a_v10_catalog_gets_the_run_budgets_table(any_catalog: Catalog) -> None:
    url = any_catalog.url
    with any_catalog.write() as conn:
        conn.execute(sa.text("DROP TABLE run_budgets"))
        conn.execute(sa.text("UPDATE meta SET value = '10' WHERE key = 'schema_version'"))
    any_catalog.close()
    with Catalog(url) as migrated, migrated.write() as conn:
        assert current_version(conn) == SCHEMA_VERSION  # v11 and every later step
        run_id = start_run(conn, "job", {"job": "capped"})
        assert reserve(conn, run_id, ["cat", "cat"], max_images=1).refused == [None, "max_images"]


def test_a_folder_job_takes_max_images_files_and_gives_back_what_it_reserved(
    budget_ws: Path, photo_files: list[Path]
) -> None:
    inbox = budget_ws.parent / "inbox"
    inbox.mkdir()
    for file in photo_files[:7]:
        (inbox / file.name).write_bytes(file.read_bytes())
    source = 'folder = "../inbox"\nlabel = "cat"\n'
    job_config(budget_ws, f'[[jobs]]\nname = "files"\nmax_images = 3\n[[jobs.sources]]\n{source}')
    (document,) = finish_job_workers(start_job_workers(budget_ws, "files", 1, env={"GLEANER_WORKERS": "2"}))
    assert document["added"] == 3 and document["skipped"]["by_reason"] == {"max_images": 4}, json.dumps(document)
    assert sum(run_labels(budget_ws, document["run_id"]).values()) == 3
    with open_workspace(budget_ws) as workspace, workspace.catalog.read() as conn:
        assert admitted(conn, document["run_id"]) == {"cat": 3}  # nothing left reserved


def test_an_unbound_gate_counts_its_own_admissions_within_a_batch(any_catalog: Catalog) -> None:
    gate = JobGate(targets=False, max_images=3, max_per_label=2)
    with any_catalog.write() as conn:
        answers = gate.admit_many(conn, ["cat", "cat", "cat", "dog", "dog"])
    assert [a is None for a in answers] == [True, True, False, True, False]
