"""A `targets = true` job's quota is per run, across every worker serving it (issue 13: "stops each when met"),
on SQLite and PostgreSQL.

Three real `harvest jobs run NAME` processes serve one run over a fixture site offering 40 coats (and shirts,
which have no target); a target wants 10 coats. The site holds every image response until all three workers
have joined the run, so each of them claims while the others' coats are still in flight: the run adds
exactly the 10 coats the target wants (not 3 x 10), nothing else, and the target closes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storage.catalog.targets import list_targets, set_manual_target
from storage.workspace import init_workspace, open_workspace
from tests.harvest.test_jobs_budget import job_workers, run_labels
from tests.support.jobs import finish_job_workers, gated_url_list, job_config, start_job_workers
from tests.support.site import Site

COATS, SHIRTS, WANT = 40, 10, 10


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def quota_ws(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    if request.param == "sqlite":
        init_workspace(root)[0].close()
    else:
        init_workspace(root, catalog_url=request.getfixturevalue("pg_url"))[0].close()
    return root


def test_three_workers_on_a_targets_run_add_no_more_than_the_target_wants(
    quota_ws: Path, site: Site, tmp_path: Path
) -> None:
    ws = quota_ws
    names = site.photo_names[: COATS + SHIRTS]
    labels = ["coat"] * COATS + ["shirt"] * SHIRTS
    rows = list(zip(names, labels, strict=True))
    rows = rows[COATS:] + rows[:COATS]  # the shirts first: they are passed over, not counted
    opened, _ = gated_url_list(site, tmp_path / "list.csv", rows, "quota")
    with open_workspace(ws) as workspace, workspace.catalog.write() as conn:
        set_manual_target(conn, "coat", WANT, sources=[], create=True)
    job_config(
        ws,
        '[[jobs]]\nname = "coats"\ntargets = true\n'
        f'[[jobs.sources]]\nurls = "{tmp_path / "list.csv"}"\nlabel_col = "label"\nallow_private = true\n'
        "concurrency = 2\n",
    )
    workers = start_job_workers(ws, "coats", 3, env={"GLEANER_WORKERS": "1"})
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
    (run_id,) = run_ids
    by_label = run_labels(ws, run_id)
    assert dict(by_label) == {"coat": WANT}, (by_label, documents)  # not 3 x 10, and no shirt
    assert sum(d["added"] for d in documents) == WANT
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        (coat,) = [t for t in list_targets(conn, include_closed=True) if t.label == "coat"]
    assert coat.status == "met" and coat.collected == WANT, coat
