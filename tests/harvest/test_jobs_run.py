"""`harvest jobs run NAME`: one run per job recorded in the catalog, workers that join a run in progress on
SQLite (real processes), a killed worker's claims taken over, and a run whose workers all died marked
interrupted and resumed by the next one (issue 13; issue 16 item 18)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storage.catalog import Catalog, frontier_counts, job_key
from storage.catalog.runs import get_run, start_run
from storage.catalog.workers import (
    STALE_AFTER,
    end_worker_run,
    job_run_workers,
    leave,
    start_or_join,
    start_worker_run,
    worker_name,
)
from tests.harvest.test_import import harvest
from tests.support.jobs import finish_job_workers, job_config, kill_job_worker, start_job_workers
from tests.support.site import Site

HOLD_MS = 400  # each image takes this long to serve: a run lasts long enough for a second worker to join
URLS = 36


def catalog_of(ws: Path) -> Catalog:
    return Catalog(f"sqlite:///{ws / 'catalog.db'}")


def url_list(site: Site, tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "list.csv"
    rows = [f"{site.url(f'/fault/hold?ms={HOLD_MS}&img={name}')},slow" for name in names]
    path.write_text("url,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def url_job(ws: Path, site: Site, tmp_path: Path, count: int = URLS) -> tuple[Path, list[str]]:
    names = site.photo_names[100 : 100 + count]
    path = url_list(site, tmp_path, names)
    job_config(
        ws, f'[[jobs]]\nname = "slow"\n[[jobs.sources]]\nurls = "{path}"\nallow_private = true\nconcurrency = 2\n'
    )
    return path, names


def wait_for_claims(ws: Path, pid: int, deadline: float = 180.0) -> None:
    """Until the worker `pid` holds frontier rows (it is in the middle of the run)."""
    stop = time.monotonic() + deadline
    with catalog_of(ws) as catalog:
        while time.monotonic() < stop:
            with catalog.read() as conn:
                held = conn.execute(
                    sa.text("SELECT count(*) FROM frontier WHERE state = 'pending' AND lease_owner LIKE :owner"),
                    {"owner": f"%:{pid}:%"},
                ).scalar_one()
            if held:
                return
            time.sleep(0.1)
    raise AssertionError(f"worker {pid} never claimed a row")


def fetched_once(site: Site, names: list[str]) -> None:
    """Every image of the list was requested exactly once, whichever worker fetched it."""
    counts = Counter(hit.target for hit in site.log if hit.path == "/fault/hold")
    assert sorted(counts) == sorted(f"/fault/hold?img={name}&ms={HOLD_MS}" for name in names), counts
    twice = {t: n for t, n in counts.items() if n != 1}
    assert not twice, (twice, [(h.target, h.user_agent, h.at) for h in site.log if h.target in twice])


def done_urls(ws: Path, path: Path) -> dict[str, int]:
    with catalog_of(ws) as catalog, catalog.read() as conn:
        return frontier_counts(conn, job_key("urls", str(path.resolve())))


def run_row(ws: Path, run_id: int) -> dict[str, Any]:
    with catalog_of(ws) as catalog, catalog.read() as conn:
        row = get_run(conn, run_id)
        assert row is not None
        return {**row, "workers": job_run_workers(conn, run_id)}


def test_a_run_is_recorded_with_the_collector_shape_and_listed_as_the_last_run(
    ws: Path, photo_files: list[Path]
) -> None:
    inbox = ws.parent / "inbox"
    for label, files in (("cat", photo_files[:3]), ("dog", photo_files[3:5])):
        (inbox / label).mkdir(parents=True)
        for file in files:
            (inbox / label / file.name).write_bytes(file.read_bytes())
    source = 'folder = "../inbox"\nlabels_from_folders = true\n'
    job_config(ws, f'[[jobs]]\nname = "inbox"\nschedule = "0 3 * * *"\n[[jobs.sources]]\n{source}')
    result = harvest("jobs", "run", "inbox", "--json", "-w", ws, cwd=ws.parent)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    document = json.loads(result.stdout)
    assert {k: document[k] for k in ("added", "duplicates", "rejected", "failed", "problems")} == {
        "added": 5, "duplicates": 0, "rejected": 0, "failed": 0, "problems": []
    }  # fmt: skip
    assert document["job"] == "inbox" and document["status"] == "done" and document["targets"] == []
    assert document["worker"]["started_run"] and document["worker"]["finished_run"]
    row = run_row(ws, document["run_id"])
    assert row["kind"] == "job" and row["config"]["job"] == "inbox" and row["status"] == "done"
    assert row["finished_at"] is not None and row["summary"]["added"] == 5 and row["summary"]["workers"] == 1
    listed = json.loads(harvest("jobs", "list", "--json", "-w", ws, cwd=ws.parent).stdout)["jobs"][0]
    started = row["started_at"]
    assert listed["last_run"].startswith(started.isoformat()[:19])
    again = json.loads(harvest("jobs", "run", "inbox", "--json", "-w", ws, cwd=ws.parent).stdout)
    assert again["run_id"] != document["run_id"] and (again["added"], again["duplicates"]) == (0, 0)
    assert again["already_catalogued"] == 5  # the folder's files are passed over, not read again as duplicates
    table = harvest("jobs", "run", "inbox", "-w", ws, cwd=ws.parent)
    assert table.code == 0 and "Job inbox" in table.stdout and "duplicates" in table.stdout


def test_a_second_worker_joins_the_run_in_progress_and_each_url_is_fetched_once(
    ws: Path, fresh_site: Site, tmp_path: Path
) -> None:
    path, names = url_job(ws, fresh_site, tmp_path)
    (first,) = start_job_workers(ws, "slow")
    wait_for_claims(ws, first.pid)
    (second,) = start_job_workers(ws, "slow")
    a, b = finish_job_workers([first, second])
    assert a["run_id"] == b["run_id"], (a, b)
    assert a["worker"]["started_run"] and not b["worker"]["started_run"]
    assert [a["worker"]["finished_run"], b["worker"]["finished_run"]].count(True) == 1
    assert a["added"] + b["added"] == len(names) and b["added"] > 0, (a["added"], b["added"])
    assert a["duplicates"] == b["duplicates"] == 0  # a joined worker does not count the first one's URLs again
    last = a if a["worker"]["finished_run"] else b
    assert last["status"] == "done" and last["run"]["added"] == len(names) and last["run"]["workers"] == 2
    row = run_row(ws, a["run_id"])
    assert row["status"] == "done" and row["summary"]["added"] == len(names)
    assert sorted(w["status"] for w in row["workers"]) == ["done", "done"]
    assert done_urls(ws, path)["done"] == len(names)
    fetched_once(fresh_site, names)


def test_a_killed_workers_claims_are_taken_over_and_the_run_still_finishes(
    ws: Path, fresh_site: Site, tmp_path: Path
) -> None:
    path, names = url_job(ws, fresh_site, tmp_path)
    (first,) = start_job_workers(ws, "slow")
    wait_for_claims(ws, first.pid)
    (second,) = start_job_workers(ws, "slow")
    wait_for_claims(ws, second.pid)
    kill_job_worker(first)  # SIGKILL with rows claimed: nothing of it runs again
    (document,) = finish_job_workers([second])
    assert document["worker"]["finished_run"] and document["status"] == "done"
    assert done_urls(ws, path) == {"pending": 0, "done": len(names), "failed": 0, "skipped": 0}
    row = run_row(ws, document["run_id"])
    assert row["status"] == "done"
    assert sorted(w["status"] for w in row["workers"]) == ["done", "interrupted"]  # the killed one, by the last
    with catalog_of(ws) as catalog, catalog.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM images")).scalar_one() == len(names)


def test_a_run_whose_workers_all_died_is_marked_interrupted_and_the_next_run_resumes_it(
    ws: Path, fresh_site: Site, tmp_path: Path
) -> None:
    path, names = url_job(ws, fresh_site, tmp_path)
    (first,) = start_job_workers(ws, "slow")
    wait_for_claims(ws, first.pid)
    kill_job_worker(first)
    with catalog_of(ws) as catalog, catalog.read() as conn:
        killed = int(conn.execute(sa.text("SELECT max(id) FROM runs")).scalar_one())
        before = int(conn.execute(sa.text("SELECT count(*) FROM images")).scalar_one())
    assert run_row(ws, killed)["status"] == "running"  # nobody told the catalog
    (document,) = finish_job_workers(start_job_workers(ws, "slow"))
    assert document["interrupted_runs"] == [killed] and document["run_id"] != killed
    assert document["status"] == "done" and document["worker"]["started_run"]
    assert run_row(ws, killed)["status"] == "interrupted" and run_row(ws, killed)["finished_at"] is not None
    assert done_urls(ws, path)["done"] == len(names)
    assert document["added"] == len(names) - before > 0  # it did the rest
    with catalog_of(ws) as catalog, catalog.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM images")).scalar_one() == len(names)


def test_sigterm_ends_a_worker_like_ctrl_c_its_claims_given_back_and_the_run_interrupted(
    ws: Path, fresh_site: Site, tmp_path: Path
) -> None:
    path, _names = url_job(ws, fresh_site, tmp_path)
    (worker,) = start_job_workers(ws, "slow")
    wait_for_claims(ws, worker.pid)
    os.kill(worker.pid, signal.SIGTERM)
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 130 and "Traceback" not in err, err
    document = json.loads(out)
    assert document["status"] == "interrupted" and document["stopped"] == "interrupted"
    assert run_row(ws, document["run_id"])["status"] == "interrupted"
    with catalog_of(ws) as catalog, catalog.read() as conn:
        held = conn.execute(sa.text("SELECT count(*) FROM frontier WHERE lease_owner IS NOT NULL")).scalar_one()
    assert held == 0
    assert done_urls(ws, path)["pending"] > 0  # the rest waits for the next run


# --- start or join, on both catalogs (storage.catalog.workers, no processes) ---------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with Catalog(url) as catalog:
        yield catalog


def test_the_first_worker_starts_the_run_the_next_joins_and_the_last_one_out_finishes_it(any_catalog: Catalog) -> None:
    here = worker_name()
    with any_catalog.write() as conn:
        first = start_or_join(conn, "crawl", {"job": "crawl"}, here)
        other_job = start_or_join(conn, "other", {"job": "other"}, here)
        second = start_or_join(conn, "crawl", {"job": "crawl"}, "elsewhere:1")  # alive: its heartbeat is fresh
    assert first.started and not second.started and second.run_id == first.run_id != other_job.run_id
    with any_catalog.write() as conn:
        left = leave(conn, first.run_id, here, "done", {"added": 2, "problems": [{"item": "a", "reason": "b"}]})
    assert (left.status, left.finished) == ("running", False)
    with any_catalog.write() as conn:
        last = leave(conn, first.run_id, "elsewhere:1", "done", {"added": 3, "problems": []})
        row = get_run(conn, first.run_id)
    assert last.finished and last.summary is not None and last.summary["added"] == 5
    assert row is not None and row["status"] == "done" and row["summary"]["workers"] == 2
    assert row["summary"]["problems"] == [{"item": "a", "reason": "b"}]


def test_a_run_whose_workers_are_gone_is_interrupted_and_a_new_one_starts(any_catalog: Catalog) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_here = f"{socket.gethostname()}:{int(dead.stdout)}"  # a process of this host that has exited
    with any_catalog.write() as conn:
        killed = start_or_join(conn, "crawl", {"job": "crawl"}, "elsewhere:7")  # another host, heartbeat fresh
        silent = start_or_join(conn, "crawl", {"job": "crawl"}, gone_here)  # joins: the run has a live worker
        conn.execute(
            sa.text("UPDATE run_workers SET heartbeat_at = :old WHERE owner = 'elsewhere:7'"),
            {"old": datetime.now(UTC) - timedelta(seconds=STALE_AFTER + 5)},
        )
    assert silent.run_id == killed.run_id
    with any_catalog.write() as conn:
        fresh = start_or_join(conn, "crawl", {"job": "crawl"}, worker_name())
        row = get_run(conn, killed.run_id)
        workers = job_run_workers(conn, killed.run_id)
    assert fresh.started and fresh.interrupted == [killed.run_id] and fresh.run_id != killed.run_id
    assert row is not None and row["status"] == "interrupted" and row["finished_at"] is not None
    assert {w["status"] for w in workers} == {"interrupted"}


def test_a_killed_collector_run_is_marked_interrupted_by_the_next_run_of_any_collector(
    ws: Path, fresh_site: Site, tmp_path: Path, photo_files: list[Path]
) -> None:
    names = fresh_site.photo_names[100:110]
    path = url_list(fresh_site, tmp_path, names)
    environment = {k: v for k, v in os.environ.items() if k != "GLEANER_WORKSPACE"}
    command = [
        sys.executable,
        "-m",
        "harvest",
        "urls",
        str(path),
        "--allow-private",
        "--concurrency",
        "1",
        "-w",
        str(ws),
    ]
    collector = subprocess.Popen(
        command,
        cwd=ws.parent,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_claims(ws, collector.pid)
    os.killpg(collector.pid, signal.SIGKILL)
    collector.wait(60)
    assert run_row(ws, 1)["status"] == "running"
    result = harvest("import", photo_files[0], "--json", "-w", ws, cwd=ws.parent)
    assert result.code == 0, result.stderr
    assert run_row(ws, 1)["status"] == "interrupted" and run_row(ws, 1)["finished_at"] is not None
    imported = run_row(ws, json.loads(result.stdout)["run_id"])
    assert imported["status"] == "done" and imported["summary"]["interrupted_runs"] == [1]
    assert [w["status"] for w in imported["workers"]] == ["done"]


def test_one_worker_runs_are_judged_too_and_runs_without_workers_never(any_catalog: Catalog) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with any_catalog.write() as conn:
        training = start_run(conn, "train", {})  # no worker row: nobody can tell, so it is left alone
        killed = start_worker_run(conn, "scrape", {}, f"{socket.gethostname()}:{int(dead.stdout)}")
        elsewhere = start_worker_run(conn, "urls", {}, "elsewhere:3")  # another host, heartbeat fresh
        after = start_worker_run(conn, "import", {}, worker_name())
        end_worker_run(conn, after.run_id, worker_name(), "done", {"added": 1})
        statuses = {run_id: (get_run(conn, run_id) or {})["status"] for run_id in (training, killed.run_id)}
        statuses[elsewhere.run_id] = (get_run(conn, elsewhere.run_id) or {})["status"]
        finished = get_run(conn, after.run_id)
    assert elsewhere.interrupted == [killed.run_id] and after.interrupted == [] == killed.interrupted
    assert statuses == {training: "running", killed.run_id: "interrupted", elsewhere.run_id: "running"}
    assert finished is not None and finished["status"] == "done" and finished["summary"] == {"added": 1}
