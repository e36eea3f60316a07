"""Servers restarted under running collectors (issue 14, item 3): the work retries and finishes, nothing is lost.

- SeaweedFS (the S3 store) is killed in the middle of a real `harvest import` of 60 photos, kept down for a
  few seconds and started again on the same port and data, three times (SIGKILL, SIGTERM, SIGKILL). A user
  expects an outage of a few seconds to be ridden over, not to need a rerun: the import exits 0 with every
  photo stored and catalogued once, `curate fsck` (which hashes every object) finds nothing wrong, and the
  catalog's sha256 set is the input's.
- PostgreSQL (the catalog) is restarted (`pg_ctl restart -m fast`: every client connection is cut) twice under
  three real `harvest jobs run` workers serving one run over a URL list: the workers reconnect and finish
  (exit 0, no traceback), the run ends done, every URL's image is catalogued once and fetched once.

Both servers are private to this module (tests/support/servers.py: `restartable_seaweedfs`,
`restartable_postgres`), never the session's shared ones, which other tests use while this one breaks its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storage.workspace import init_workspace, open_workspace
from tests.reliability.ledger import Entry, Ledger, assert_zero_loss
from tests.support.jobs import job_config, start_job_workers
from tests.support.servers import PostgresCluster, SeaweedFS, restartable_postgres, restartable_seaweedfs
from tests.support.site import Request, Response, Site

HARVEST = Path(sys.executable).parent / "harvest"
CURATE = Path(sys.executable).parent / "curate"

PHOTOS = 60
S3_FAULTS = [(signal.SIGKILL, 10), (signal.SIGTERM, 25), (signal.SIGKILL, 40)]  # (signal, objects stored first)
S3_DOWN_S = 2.0

URLS = 60
PG_RESTARTS_AT = [15, 35]  # images fetched before each restart
IMAGE_DELAY_S = 0.1  # per image response: the run lasts long enough for restarts in the middle of it


@pytest.fixture(scope="module")
def weed() -> Iterator[SeaweedFS]:
    """A SeaweedFS server of this module's own: the test stops and starts it."""
    with restartable_seaweedfs() as server:
        yield server


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this module's own: the test restarts it."""
    try:
        with restartable_postgres() as running:
            yield running
    except RuntimeError as exc:
        if os.environ.get("GLEANER_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"PostgreSQL unavailable: {exc}")


@pytest.fixture(scope="module")
def restart_site(photos_dir: Path) -> Iterator[Site]:
    with Site(photos_dir) as site:
        yield site


def wait_until(count: Callable[[], int], at_least: int, process: subprocess.Popen[Any], timeout: float = 120) -> bool:
    """Poll until `count()` reaches `at_least` (True), or `process` ends first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count() >= at_least:
            return True
        if process.poll() is not None:
            return count() >= at_least
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the collector to make progress")


def job_workers(ws: Path) -> int:
    """Workers on the job's run in progress."""
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        query = "SELECT count(*) FROM run_workers w JOIN runs r ON r.id = w.run_id WHERE r.status = 'running'"
        return int(conn.execute(sa.text(query)).scalar_one())


def catalogued(ws: Path) -> tuple[set[str], Counter[str]]:
    """The catalog's image sha256s, and how many sources each source URI has."""
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        shas = set(conn.execute(sa.text("SELECT sha256 FROM images")).scalars())
        uris = Counter(str(uri) for uri in conn.execute(sa.text("SELECT uri FROM sources")).scalars())
    return shas, uris


def fsck(ws: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(CURATE), "fsck", "--json", "-w", str(ws)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_seaweedfs_killed_three_times_during_harvest_import_loses_nothing(
    weed: SeaweedFS, photo_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger: Ledger
) -> None:
    photos = photo_files[:PHOTOS]
    assert len(photos) == PHOTOS
    for key, value in weed.server.env().items():
        monkeypatch.setenv(key, value)
    bucket = f"restart-{uuid.uuid4().hex[:12]}"
    ws = tmp_path / "ws"
    workspace, _ = init_workspace(
        ws, store_url=f"s3://{bucket}/data", endpoint_url=weed.server.endpoint_url, addressing_style="path"
    )
    workspace.close()
    client = weed.server.client()

    def stored() -> int:
        return int(client.list_objects_v2(Bucket=bucket, Prefix="data/images/")["KeyCount"])

    env = {**os.environ, **weed.server.env()}
    env.pop("GLEANER_WORKSPACE", None)
    command = [str(HARVEST), "import", *map(str, photos), "-w", str(ws), "--workers", "2", "--json"]
    with open(tmp_path / "import.err", "w+") as err:
        importer = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        injected = 0
        try:
            for sig, after in S3_FAULTS:
                if not wait_until(stored, after, importer):
                    break  # the import ended before this fault: fewer faults, said by the ledger
                assert stored() < PHOTOS, "the import stored everything before the server could be stopped"
                weed.stop(sig)
                time.sleep(S3_DOWN_S)
                weed.start()
                injected += 1
            out, _ = importer.communicate(timeout=300)
        finally:
            if importer.poll() is None:
                importer.kill()
                importer.communicate()
        err.seek(0)
        stderr = err.read()
    clean_exit = importer.returncode == 0 and "Traceback" not in stderr
    document: dict[str, Any] = json.loads(out) if clean_exit else {"added": 0, "failed": PHOTOS, "problems": []}
    expected = {hashlib.sha256(path.read_bytes()).hexdigest() for path in photos}
    shas, uris = catalogued(ws)
    check = fsck(ws, env)
    keys = {key for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket) for key in
            (item["Key"] for item in page.get("Contents", []))}  # fmt: skip
    lost = len(expected - shas) + len(check["missing"]) + len(check["corrupt"])
    doubled = len(shas - expected) + sum(n - 1 for n in uris.values()) + max(0, len(keys) - len(shas))
    survived = injected if clean_exit and not lost and not doubled and not document["failed"] and check["ok"] else 0
    entry = ledger.record(
        Entry(
            area="servers",
            case=f"SeaweedFS stopped for {S3_DOWN_S:.0f} s and restarted (SIGKILL, SIGTERM, SIGKILL) during "
            f"`harvest import` of {PHOTOS} photos, no rerun",
            faults=injected,
            survived=survived,
            items_lost=lost,
            items_doubled=doubled,
            note=f"import: added {document['added']}, failed {document['failed']}; fsck ok: {check['ok']}",
        )
    )
    assert clean_exit, stderr[-3000:]
    assert injected == len(S3_FAULTS), f"only {injected} restarts fell inside the import"
    assert document["failed"] == 0 and document["added"] == PHOTOS, [p["reason"][-300:] for p in document["problems"]]
    assert check["ok"] and not check["orphans"], check
    assert_zero_loss(entry)


def slow_url_list(site: Site, path: Path, names: list[str]) -> tuple[threading.Event, str]:
    """A URL list of the site's photos on a route of its own that holds every response until the returned
    event is set (the three workers then join one run before any image arrives), then answers each after
    IMAGE_DELAY_S. Returns the event and the route's path."""
    opened = threading.Event()
    prefix = f"/restart-{os.getpid()}-{time.monotonic_ns()}/"

    def slow(request: Request) -> Response:
        opened.wait(120)  # a bound, so that a failing test cannot leave server threads behind
        time.sleep(IMAGE_DELAY_S)
        return Response.image(request.site.photo(request.arg("img")))

    site.route(prefix, slow)
    lines = [f"{site.url(f'{prefix}photo?img={name}')},photo" for name in names]
    path.write_text("url,label\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return opened, f"{prefix}photo"


@pytest.mark.postgres
def test_postgresql_restarted_twice_under_three_job_workers_they_reconnect_and_finish(
    cluster: PostgresCluster, restart_site: Site, tmp_path: Path, ledger: Ledger
) -> None:
    site = restart_site
    url = cluster.server.create_database(f"restart_{uuid.uuid4().hex[:12]}")
    ws = tmp_path / "ws"
    init_workspace(ws, catalog_url=url)[0].close()
    names = site.photo_names[:URLS]
    opened, route = slow_url_list(site, tmp_path / "list.csv", names)
    job_config(
        ws,
        f'[[jobs]]\nname = "restarts"\n[[jobs.sources]]\nurls = "{tmp_path / "list.csv"}"\nlabel_col = "label"\n'
        "allow_private = true\nconcurrency = 2\n",
    )

    def fetched() -> Counter[str]:
        return Counter(hit.target for hit in list(site.log) if hit.path == route)

    def fetched_count() -> int:
        return sum(fetched().values())

    workers = start_job_workers(ws, "restarts", 3, env={"GLEANER_WORKERS": "1"})
    restarts = 0
    try:
        deadline = time.monotonic() + 120
        while job_workers(ws) < 3 and all(w.poll() is None for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job_workers(ws) == 3  # all three on the run before any image arrives
        opened.set()
        for after in PG_RESTARTS_AT:
            if not wait_until(fetched_count, after, workers[0]):
                break
            assert fetched_count() < URLS, "the run fetched everything before the server could restart"
            cluster.restart("fast")
            restarts += 1
    finally:
        opened.set()
        try:
            outputs = [worker.communicate(timeout=240) for worker in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.communicate()
    failures = [err[-3000:] for w, (_, err) in zip(workers, outputs, strict=True) if w.returncode or "Traceback" in err]
    documents = [json.loads(out) for out, _err in outputs] if not failures else []
    retried = sum(err.count("lost the connection to the catalog") for _out, err in outputs)
    expected = {hashlib.sha256(site.photo(name)).hexdigest() for name in names}
    shas, uris = catalogued(ws)
    counts = fetched()
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        run_ids = {d["run_id"] for d in documents}
        statuses = [str(s) for s in conn.execute(sa.text("SELECT status FROM runs WHERE kind = 'job'")).scalars()]
    lost = len(expected - shas)
    doubled = len(shas - expected) + sum(n - 1 for n in uris.values()) + sum(n - 1 for n in counts.values())
    survived = restarts if not failures and not lost and not doubled and statuses == ["done"] else 0
    entry = ledger.record(
        Entry(
            area="servers",
            case=f"PostgreSQL restarted {len(PG_RESTARTS_AT)} times (`pg_ctl restart -m fast`) under three "
            f"`harvest jobs run` workers of one run over {URLS} URLs",
            faults=restarts,
            survived=survived,
            items_lost=lost,
            items_doubled=doubled,
            note=f"added {[d['added'] for d in documents]} by the three workers, {retried} transaction(s) cut "
            f"and run again, run {statuses}, URLs fetched twice: {sum(1 for n in counts.values() if n > 1)}",
        )
    )
    assert not failures, failures  # every worker reconnected and finished: exit 0, no traceback
    assert restarts == len(PG_RESTARTS_AT), f"only {restarts} restarts fell inside the run"
    assert len(run_ids) == 1 and statuses == ["done"], (documents, statuses)
    assert sum(d["added"] for d in documents) == URLS and all(d["failed"] == 0 for d in documents), documents
    assert set(counts.values()) == {1} and len(counts) == URLS, counts
    assert_zero_loss(entry)
