"""Politeness shared through the catalog (storage.catalog.hosts, harvest.fetch.catalogshare), on SQLite and a real
PostgreSQL, by several real processes: request times that keep to one rate together, Retry-After holds, one
robots.txt fetch per origin and run, and leases that a live worker renews.

Rates are checked on the start times the catalog handed out (data), never by timing the test.
"""

from __future__ import annotations

import multiprocessing
import pickle
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from harvest.fetch.catalogshare import CatalogHostLimiter, CatalogRobotsStore, LazyCatalog
from harvest.fetch.ratelimit import HostLimiter, LimiterTimeout
from harvest.heartbeat import Heartbeat
from storage.catalog import Catalog, FrontierEntry, add_urls
from storage.catalog.frontier import claim
from storage.catalog.hosts import (
    RobotsAnswer,
    claim_robots,
    claimable,
    held_by_others,
    hold_host,
    host_state,
    renew_leases,
    reserve_slots,
    save_robots,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    Catalog(url).close()  # created and migrated once, before the processes open it
    return url


def most_in_window(starts: list[float], window: float) -> int:
    """The most start times within any half-open window of `window` seconds."""
    starts = sorted(starts)
    most, first = 0, 0
    for last, start in enumerate(starts):
        while starts[first] <= start - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def _reserve_many(url: str, host: str, rounds: int, count: int, interval: float, tolerance: float) -> list[float]:
    catalog = Catalog(url, migrate=False)
    starts: list[float] = []
    try:
        for _ in range(rounds):
            with catalog.write() as conn:
                starts += reserve_slots(conn, host, count, interval=interval, tolerance=tolerance).starts
    finally:
        catalog.close()
    return starts


def test_processes_reserving_together_keep_to_one_rate_and_burst(catalog_url: str) -> None:
    rate, burst = 50.0, 5
    interval, tolerance = 1 / rate, (burst - 1) / rate
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(_reserve_many, [(catalog_url, "a.test:80", 10, 4, interval, tolerance)] * 3)
    starts = [s for result in results for s in result]
    assert len(starts) == 120
    assert most_in_window(starts, 1.0) <= burst + rate * 1.0  # GCRA: rate per second plus one burst
    assert most_in_window(starts, 0.2) <= burst + rate * 0.2
    assert max(starts) - min(starts) >= (120 - burst) * interval - 1e-4  # together, not three times the rate
    with Catalog(catalog_url, migrate=False) as catalog, catalog.read() as conn:
        state = host_state(conn, "a.test:80")
    assert state is not None and state["next_at"] >= max(starts)


def test_a_hold_delays_every_later_reservation(catalog_url: str) -> None:
    with Catalog(catalog_url, migrate=False) as catalog:
        with catalog.write() as conn:
            hold_host(conn, "held.test", 30.0)
        with catalog.write() as conn:
            reservation = reserve_slots(conn, "held.test", 3, interval=0.1, tolerance=0.5)
        with catalog.write() as conn:
            other = reserve_slots(conn, "free.test", 1, interval=0.1, tolerance=0.5)
    assert all(start >= reservation.clock + 29.9 for start in reservation.starts)
    assert other.starts[0] <= other.clock + 1e-6  # other hosts are not held


def test_robots_answer_is_claimed_by_one_worker_and_taken_over_when_its_claim_lapses(catalog_url: str) -> None:
    with Catalog(catalog_url, migrate=False) as catalog:
        with catalog.write() as conn:
            assert claim_robots(conn, "run:1", "http://a.test", "w1", lease_seconds=60).action == "fetch"
        with catalog.write() as conn:
            assert claim_robots(conn, "run:1", "http://a.test", "w2", lease_seconds=60).action == "wait"
            assert claim_robots(conn, "run:2", "http://a.test", "w2", lease_seconds=60).action == "fetch"  # own run
        with catalog.write() as conn:
            save_robots(conn, "run:1", "http://a.test", RobotsAnswer(200, b"User-agent: *\nDisallow: /x\n", None))
        with catalog.write() as conn:
            answer = claim_robots(conn, "run:1", "http://a.test", "w3", lease_seconds=60)
        assert answer.action == "done" and answer.answer == RobotsAnswer(200, b"User-agent: *\nDisallow: /x\n", None)
        with catalog.write() as conn:  # a fetcher that died: its claim lapsed
            assert claim_robots(conn, "run:3", "http://b.test", "dead", lease_seconds=-1).action == "fetch"
        with catalog.write() as conn:
            assert claim_robots(conn, "run:3", "http://b.test", "w2", lease_seconds=60).action == "fetch"
        with catalog.write() as conn:  # an answer that expired (robots.txt unreachable: retry later)
            save_robots(conn, "run:3", "http://b.test", RobotsAnswer(None, None, -1.0))
        with catalog.write() as conn:
            assert claim_robots(conn, "run:3", "http://b.test", "w4", lease_seconds=60).action == "fetch"


def _share_robots(url: str, owner: str, calls: str) -> tuple[int | None, bytes | None]:
    store = pickle.loads(pickle.dumps(CatalogRobotsStore(url, "run:7", owner)))  # as a Process argument travels

    def load() -> tuple[int | None, bytes | None, float]:
        with open(calls, "a") as log:
            log.write(owner + "\n")
        return 200, b"User-agent: *\nDisallow: /private/\n", float("inf")

    status, body, _valid = store.share("http://site.test", load)
    return status, body


def test_one_robots_fetch_per_origin_for_all_the_processes_of_a_run(catalog_url: str, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        answers = pool.starmap(_share_robots, [(catalog_url, f"w{i}", str(calls)) for i in range(4)])
    assert len(calls.read_text().split()) == 1
    assert answers == [(200, b"User-agent: *\nDisallow: /private/\n")] * 4


def test_the_catalog_limiter_spaces_a_crawl_delay(catalog_url: str) -> None:
    limiter = CatalogHostLimiter(catalog_url, HostLimiter(0, 1, 4), rate=1000.0, burst=10)
    deadline = 1e12
    with limiter.slot("cd.test", deadline, spacing=0.05), limiter.slot("cd.test", deadline, spacing=0.05):
        pass
    with Catalog(catalog_url, migrate=False) as catalog, catalog.read() as conn:
        state = host_state(conn, "cd.test")
    assert state is not None
    # two requests 0.05 s apart (Crawl-delay, no burst), batched in one reservation of RESERVE_AHEAD's worth
    assert state["next_at"] - state["updated_at"] >= 0.05 * 2 - 1e-6


def test_a_live_workers_leases_are_renewed_and_counted_as_held(catalog_url: str) -> None:
    with Catalog(catalog_url, migrate=False) as catalog:
        with catalog.write() as conn:
            add_urls(conn, "beat", [FrontierEntry(f"http://x.test/{i}.jpg", "image") for i in range(5)])
            claim(conn, "beat", "host:1:1", limit=3, lease_seconds=5)
            claim(conn, "beat", "host:2:1", limit=2, lease_seconds=-1)  # lapsed: not held any more
        with catalog.read() as conn:
            assert held_by_others(conn, "beat", "me") == 3
            assert held_by_others(conn, "beat", "host:1:1") == 0
            assert claimable(conn, "beat") == 2  # the lapsed ones: free for a worker that finished its pass
        heartbeat = Heartbeat(catalog, "host:1:1", lease_seconds=600, every=3600)
        heartbeat.watch("beat")
        assert heartbeat.beat() == 3
        heartbeat.stop()
        with catalog.write() as conn:
            assert renew_leases(conn, "host:1:1", [], 600) == 0
            until = conn.execute(sa.text("SELECT min(lease_until) FROM frontier WHERE lease_owner = 'host:1:1'"))
            first = until.scalar_one()
    if isinstance(first, str):
        first = datetime.fromisoformat(first)
    assert first.replace(tzinfo=first.tzinfo or UTC).timestamp() > datetime.now(UTC).timestamp() + 500


def test_a_pools_limiter_and_robots_store_travel_with_one_catalog_handle(catalog_url: str) -> None:
    shared = LazyCatalog(catalog_url)
    shared.get()  # opened here: the copies must open their own, once
    store = CatalogRobotsStore(shared, "run:1", "w")
    other = CatalogRobotsStore(shared, "run:1", "w2")
    store_copy, other_copy = pickle.loads(pickle.dumps((store, other)))
    assert store_copy.catalog is other_copy.catalog and store_copy.catalog._catalog is None
    shared.get().close()


def test_a_retry_after_one_worker_was_sent_holds_the_other_workers_off(catalog_url: str) -> None:
    told = CatalogHostLimiter(catalog_url, HostLimiter(0, 1, 4), rate=10.0, burst=2)
    other = CatalogHostLimiter(catalog_url, HostLimiter(0, 1, 4), rate=10.0, burst=2)  # another machine's worker
    with other.slot("busy.test", 1e12):
        pass  # it has reserved times of its own already
    told.hold_off("busy.test", 30.0)
    other.hold_off("calm.test", 0.0)  # a hold on another host changes nothing for this one
    soon = time.monotonic() + 5
    with pytest.raises(LimiterTimeout) as refused:  # its next times come from the catalog: after the hold
        for _ in range(8):  # past the times it reserved before the hold
            with other.slot("busy.test", soon):
                pass
    assert refused.value.kind == "rate_limited"
    with other.slot("calm.test", soon):
        pass
