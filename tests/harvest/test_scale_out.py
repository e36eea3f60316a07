"""Three workers share one crawl on a real PostgreSQL catalog and a SeaweedFS store (issue 13, item 4).

Each worker is a real process: `harvest scrape` with the same seeds and options (they share the job's frontier,
each a run of its own), or `harvest jobs run crawl` (one run that all of them serve); the fixture site logs
every request. From that log, not from timing the test:
- no URL is fetched twice and none is lost (every image is in the catalog, every frontier row done);
- the per-host rate holds for the three together (requests per window of the site's own clock);
- robots.txt is fetched once per run (three `harvest scrape` runs: at most three; one job run: once);
- a worker killed (SIGKILL) in the middle of the crawl: the others take over its claims and finish, exit 0,
  and only what it had in flight is fetched again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.workspace import init_workspace
from tests.support.servers import S3Server
from tests.support.site import Request, Response, Site

pytestmark = pytest.mark.postgres

RATE, BURST = 20.0, 20  # --per-host-rate, and FetchPolicy's per_host_burst
GALLERIES, PER_GALLERY = 8, 12
HARVEST = Path(sys.executable).parent / "harvest"


def register_galleries(site: Site) -> list[str]:
    """/scale/index.html links to eight galleries of twelve distinct photos each; returns the photo paths."""
    names = site.photo_names[: GALLERIES * PER_GALLERY]

    def page(request: Request) -> Response:
        if request.path == "/scale/index.html":
            links = "".join(f'<a class="g" href="/scale/g{i}.html">{i}</a>' for i in range(GALLERIES))
            return Response.html(f"<html><body>{links}</body></html>")
        index = int(request.path.removeprefix("/scale/g").removesuffix(".html"))
        chunk = names[index * PER_GALLERY : (index + 1) * PER_GALLERY]
        return Response.html("<html><body>" + "".join(f'<img src="/img/{n}">' for n in chunk) + "</body></html>")

    site.route("/scale/", page)
    return [f"/img/{name}" for name in names]


@pytest.fixture
def shared_workspace(tmp_path: Path, pg_url: str, s3_env: S3Server) -> tuple[Path, str]:
    root = tmp_path / "ws"
    bucket = f"scale-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    ws, _ = init_workspace(
        root,
        store_url=f"s3://{bucket}/data",
        catalog_url=pg_url,
        endpoint_url=s3_env.endpoint_url,
        addressing_style="path",
    )
    ws.close()
    return root, pg_url


def add_job(root: Path, seed: str) -> None:
    """The same crawl as a collection job named `crawl` in the workspace's gleaner.toml."""
    path = root / "gleaner.toml"
    path.write_text(
        path.read_text()
        + f"""
[[jobs]]
name = "crawl"

[[jobs.sources]]
scrape = ["{seed}"]
follow = "a.g"
depth = 1
label = "photo"
allow_private = true
per_host_rate = {RATE}
concurrency = 4
"""
    )


def start_workers(root: Path, seed: str, count: int, mode: str = "scrape") -> list[subprocess.Popen[str]]:
    """`count` workers on one crawl: `harvest scrape` runs with the same seeds and options (each a run of its
    own on the job's frontier), or `harvest jobs run crawl` (one run, served by all)."""
    command = [
        str(HARVEST), "scrape", seed, "-w", str(root), "--follow", "a.g", "--depth", "1", "--label", "photo",
        "--allow-private", "--per-host-rate", str(RATE), "--concurrency", "4", "--json",
    ]  # fmt: skip
    if mode == "jobs":
        add_job(root, seed)
        command = [str(HARVEST), "jobs", "run", "crawl", "-w", str(root), "--json"]
    env = {**os.environ, "GLEANER_WORKERS": "1"}  # one process per worker: the fetch threads share its limits
    return [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(count)
    ]


def finish(workers: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        results.append((worker.returncode, out, err))
    return results


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def check_catalog(pg_url: str, photos: list[str], site: Site) -> None:
    """Every photo is an image in the catalog and every frontier row of the crawl is done."""
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            states = Counter(conn.execute(sa.text("SELECT state FROM frontier")).scalars())
            shas = set(conn.execute(sa.text("SELECT sha256 FROM frontier WHERE kind = 'image'")).scalars())
            images = conn.execute(sa.text("SELECT count(*) FROM images")).scalar_one()
            held = conn.execute(sa.text("SELECT count(*) FROM frontier WHERE lease_owner IS NOT NULL")).scalar_one()
    finally:
        engine.dispose()
    assert states == {"done": len(photos) + GALLERIES + 1}
    assert images == len(shas) == len(photos) == len({site.photo(p.removeprefix("/img/")) for p in photos})
    assert held == 0


def test_three_workers_share_one_crawl_without_duplicates_or_losses_at_one_rate(
    site: Site, shared_workspace: tuple[Path, str]
) -> None:
    root, pg_url = shared_workspace
    photos = register_galleries(site)
    site.reset()
    results = finish(start_workers(root, site.url("/scale/index.html"), 3))
    for code, out, err in results:
        assert code == 0, err[-2000:]
        assert json.loads(out)["failed"] == 0
    fetched = Counter(hit.path for hit in site.log)
    crawl = [path for path in fetched if path.startswith(("/img/", "/scale/"))]
    assert sorted(crawl) == sorted([*photos, "/scale/index.html", *(f"/scale/g{i}.html" for i in range(GALLERIES))])
    assert all(fetched[path] == 1 for path in crawl), {p: n for p, n in fetched.items() if n > 1}
    assert fetched["/robots.txt"] <= 3  # once per run at most (each `harvest scrape` is a run of its own)
    added = [json.loads(out)["added"] for _, out, _ in results]
    assert sum(added) == len(photos)
    assert sum(1 for n in added if n) >= 2, added  # shared, not one worker doing it all while the others wait
    check_catalog(pg_url, photos, site)
    # The rate held for the three together: at most one burst plus the rate in any window of the site's clock
    # (plus one request per worker for a reserved time used a moment late). Three limiters of their own would
    # have sent everything within the first second.
    times = [hit.at for hit in site.log]
    assert most_in_window(times, 1.0) <= BURST + RATE * 1.0 + 3
    assert most_in_window(times, 2.0) <= BURST + RATE * 2.0 + 3
    assert max(times) - min(times) >= (len(times) - BURST - 3) / RATE


def held_by(pg_url: str) -> Counter[str]:
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            query = "SELECT lease_owner FROM frontier WHERE state = 'pending' AND lease_owner IS NOT NULL"
            return Counter(conn.execute(sa.text(query)).scalars())
    finally:
        engine.dispose()


@pytest.mark.parametrize("mode", ["scrape", "jobs"])
def test_a_killed_workers_claims_are_taken_over_and_the_crawl_finishes(
    site: Site, shared_workspace: tuple[Path, str], mode: str
) -> None:
    root, pg_url = shared_workspace
    photos = register_galleries(site)
    site.reset()
    workers = start_workers(root, site.url("/scale/index.html"), 3, mode)
    by_pid = {worker.pid: worker for worker in workers}
    victim = None
    try:
        while victim is None:  # kill a worker that holds claims, once a third of the photos were fetched
            assert all(w.poll() is None for w in workers), "the crawl ended before a worker could be killed"
            if sum(site.hits[p] for p in photos) >= len(photos) // 3:
                owners = [int(o.split(":")[1]) for o in held_by(pg_url)]
                victim = next((by_pid[pid] for pid in owners if pid in by_pid), None)
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        killed_at = time.time()
    finally:
        results = finish(workers)
    survivors = [result for worker, result in zip(workers, results, strict=True) if worker is not victim]
    assert victim.returncode == -signal.SIGKILL
    for code, _out, err in survivors:
        assert code == 0, err[-2000:]
    check_catalog(pg_url, photos, site)
    # Fetched again only what the killed worker had in flight: every second fetch's first one was before the kill.
    first_seen: dict[str, float] = {}
    for hit in site.log:
        if hit.path in first_seen:
            assert first_seen[hit.path] <= killed_at, f"{hit.path} fetched twice by live workers"
        first_seen.setdefault(hit.path, hit.at)
    assert max(Counter(hit.path for hit in site.log if hit.path != "/robots.txt").values()) <= 2


def test_three_job_workers_share_one_run_and_one_robots_fetch(site: Site, shared_workspace: tuple[Path, str]) -> None:
    """`harvest jobs run NAME` three times: one run, served by three workers, robots.txt fetched once for it."""
    root, pg_url = shared_workspace
    photos = register_galleries(site)
    site.reset()
    results = finish(start_workers(root, site.url("/scale/index.html"), 3, "jobs"))
    for code, _out, err in results:
        assert code == 0, err[-2000:]
    assert len({json.loads(out)["run_id"] for _, out, _ in results}) == 1  # one run, three workers
    fetched = Counter(hit.path for hit in site.log)
    assert fetched["/robots.txt"] == 1
    assert all(n == 1 for n in fetched.values()), {p: n for p, n in fetched.items() if n > 1}
    check_catalog(pg_url, photos, site)
    times = [hit.at for hit in site.log]
    assert most_in_window(times, 1.0) <= BURST + RATE * 1.0 + 3
