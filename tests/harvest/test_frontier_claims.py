"""Frontier claims with leases and error kinds, on SQLite and PostgreSQL (real databases, real processes)."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.catalog import Catalog, FrontierEntry, FrontierUpdate, add_urls, mark_batch, mark_done, mark_skipped
from storage.catalog.frontier import (
    claim,
    lease_owner,
    release_claims,
    release_stale,
    requeue_refused,
    retry_urls,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = Catalog(url)
    request.addfinalizer(opened.close)
    with opened.write() as conn:  # a PostgreSQL catalog is shared by the tests: start from an empty frontier
        conn.execute(sa.text("DELETE FROM frontier WHERE job LIKE 'claims-%'"))
    return opened


def _urls(n: int) -> list[FrontierEntry]:
    return [FrontierEntry(f"http://x.example/{i}.jpg", "image") for i in range(n)]


def test_two_owners_claim_disjoint_batches_and_marking_clears_the_lease(catalog: Catalog) -> None:
    job = "claims-disjoint"
    with catalog.write() as conn:
        add_urls(conn, job, _urls(10))
    with catalog.write() as conn:
        first = claim(conn, job, "a", limit=4)
    with catalog.write() as conn:
        second = claim(conn, job, "b", limit=100)
    assert len(first) == 4 and len(second) == 6
    assert not {r["url"] for r in first} & {r["url"] for r in second}
    with catalog.write() as conn:
        assert claim(conn, job, "c") == []  # everything is held
        mark_done(conn, job, "image", first[0]["url"], "a" * 64)
        assert release_claims(conn, job, "a") == 3  # the marked row is no longer held
        again = claim(conn, job, "c")
    assert sorted(r["url"] for r in again) == sorted(r["url"] for r in first[1:])


def test_lapsed_leases_and_dead_owners_are_freed(catalog: Catalog) -> None:
    job = "claims-stale"
    with catalog.write() as conn:
        add_urls(conn, job, _urls(6))
        claim(conn, job, "other-host:1:1", limit=2, lease_seconds=-1)  # lapsed already
        claim(conn, job, "other-host:2:1", limit=2, lease_seconds=600)  # another machine, alive as far as we know
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = f"{socket.gethostname()}:{int(dead.stdout)}:7"  # a process of this host that has exited
    with catalog.write() as conn:
        assert len(claim(conn, job, dead_owner, limit=2)) == 2
        assert len(claim(conn, job, lease_owner(1))) == 2  # the lapsed ones are free for anyone
        assert release_stale(conn, job) == 2  # the dead owner's rows (the lapsed ones were re-claimed)
        owners = conn.execute(sa.text(f"SELECT lease_owner FROM frontier WHERE job = '{job}'")).scalars().all()
    assert sorted(o for o in owners if o) == sorted([lease_owner(1)] * 2 + ["other-host:2:1"] * 2)
    with catalog.read() as conn:
        until = conn.execute(sa.text(f"SELECT max(lease_until) FROM frontier WHERE job = '{job}'")).scalar_one()
    if isinstance(until, str):  # SQLite through text()
        until = datetime.fromisoformat(until)
    assert until.replace(tzinfo=until.tzinfo or UTC) > datetime.now(UTC) + timedelta(seconds=500)


def test_refusals_are_requeued_by_error_kind_not_by_message_text(catalog: Catalog) -> None:
    job = "claims-kinds"
    with catalog.write() as conn:
        add_urls(conn, job, _urls(4))
        mark_skipped(conn, job, "image", "http://x.example/0.jpg", "robots: disallowed", "robots")
        mark_skipped(conn, job, "image", "http://x.example/1.jpg", "robots: said by a page, not robots", "http_4xx")
        mark_batch(conn, job, [FrontierUpdate("image", "http://x.example/2.jpg", "skipped", "ssrf: 10.0.0.1", "ssrf")])
        assert retry_urls(conn, job, ["robots"])["image"] == {"http://x.example/0.jpg"}
        assert requeue_refused(conn, job, ["robots", "ssrf"]) == 2
        kinds = dict(conn.execute(sa.text(f"SELECT url, state FROM frontier WHERE job = '{job}'")).all())
    assert kinds == {
        "http://x.example/0.jpg": "pending",
        "http://x.example/1.jpg": "skipped",  # its message starts with "robots:", its kind does not
        "http://x.example/2.jpg": "pending",
        "http://x.example/3.jpg": "pending",
    }
