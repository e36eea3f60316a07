"""Politeness shared by workers on several machines: per-host request times, robots.txt answers, lease renewal.

Worker processes on different machines cannot share memory, so what must hold for the whole crawl lives here:

- `reserve_slots`: start times for the next requests to a host, by GCRA (the generic cell rate algorithm: one
  "theoretical arrival time" per host, `next_at`) under the row's lock (`FOR UPDATE` on PostgreSQL, the write
  lock on SQLite), so N workers together keep to one rate and burst. A worker reserves a few slots at a time
  instead of one round trip per request; a slot it does not use is lost, which only slows the crawl.
- `hold_host`: a Retry-After one worker was told holds every worker off the host.
- `claim_robots` / `save_robots`: one robots.txt fetch per origin and scope (a run), whatever the number of
  workers; the others wait for the answer, and take the fetch over when its owner died.
- `renew_leases`: a live worker's heartbeat, so that only a dead worker's frontier claims lapse.

Times are seconds since the epoch on the database's clock (PostgreSQL's `clock_timestamp()`), so machines whose
clocks disagree still space their requests correctly; callers translate them to their own clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select, text

from storage.catalog.schema import frontier, hosts, robots_answers
from storage.catalog.sql import dialect_insert, insert_ignore

__all__ = [
    "Reservation",
    "RobotsAnswer",
    "RobotsClaim",
    "claim_robots",
    "claimable",
    "db_clock",
    "held_by_others",
    "hold_host",
    "host_state",
    "renew_leases",
    "reserve_slots",
    "save_robots",
]


@dataclass(frozen=True)
class Reservation:
    """Start times of reserved requests and the database clock when they were reserved (same time base)."""

    starts: list[float]
    clock: float


@dataclass(frozen=True)
class RobotsAnswer:
    """A robots.txt answer shared by a scope's workers: HTTP status (None: unreachable), body (None unless a
    2xx body was read whole), and the seconds it stays valid (None: for the whole scope)."""

    status: int | None
    body: bytes | None
    expires_in: float | None


@dataclass(frozen=True)
class RobotsClaim:
    """What a worker asking for an origin's robots.txt must do: `fetch` it (it holds the claim), `wait` for the
    worker that is fetching it, or use `answer`."""

    action: str  # fetch | wait | done
    answer: RobotsAnswer | None = None


def db_clock(conn: Connection) -> float:
    """Now on the database's clock (seconds since the epoch); SQLite lives on one machine: its clock is ours."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
    return time.time()


def _locked_host(conn: Connection, host: str) -> tuple[float, float]:
    """(next_at, hold_until) of the host's row, created if new, locked until the transaction ends."""
    insert = dialect_insert(conn, hosts).values(host=host, next_at=0.0, hold_until=0.0, updated_at=0.0)
    conn.execute(insert.on_conflict_do_nothing(index_elements=["host"]))
    query = select(hosts.c.next_at, hosts.c.hold_until).where(hosts.c.host == host).with_for_update()
    next_at, hold_until = conn.execute(query).one()
    return float(next_at), float(hold_until)


def reserve_slots(conn: Connection, host: str, count: int, *, interval: float, tolerance: float) -> Reservation:
    """Reserve the next `count` request start times for `host`: at most one per `interval` seconds on average,
    with bursts of up to `tolerance / interval + 1` (GCRA), none before a Retry-After hold. Run it in a write
    transaction: the row stays locked until it commits, so concurrent workers queue up behind each other."""
    next_at, hold_until = _locked_host(conn, host)
    clock = db_clock(conn)  # read after the lock: waiting for it must not make our slots start in the past
    starts: list[float] = []
    for _ in range(max(1, count)):
        start = max(clock, hold_until, next_at - tolerance)
        starts.append(start)
        next_at = max(next_at, start) + interval
    conn.execute(hosts.update().where(hosts.c.host == host).values(next_at=next_at, updated_at=clock))
    return Reservation(starts, clock)


def hold_host(conn: Connection, host: str, seconds: float) -> None:
    """No worker starts a request to `host` for `seconds` from now (a Retry-After the host sent)."""
    _next_at, hold_until = _locked_host(conn, host)
    clock = db_clock(conn)
    until = max(hold_until, clock + seconds)
    conn.execute(hosts.update().where(hosts.c.host == host).values(hold_until=until, updated_at=clock))


def host_state(conn: Connection, host: str) -> dict[str, Any] | None:
    """The host's row (next_at, hold_until, updated_at), or None: for tests and diagnostics."""
    row = conn.execute(select(hosts).where(hosts.c.host == host)).first()
    return dict(row._mapping) if row else None


def claim_robots(conn: Connection, scope: str, origin: str, owner: str, *, lease_seconds: float) -> RobotsClaim:
    """The scope's answer for `origin`, or the claim to fetch it (`fetch`: nobody has, its fetcher's claim
    lapsed, or the answer expired), or `wait` while another live worker fetches it."""
    clock = db_clock(conn)
    until = clock + lease_seconds
    fresh = {"scope": scope, "origin": origin, "state": "fetching", "owner": owner, "claimed_until": until}
    if insert_ignore(conn, robots_answers, fresh, ["scope", "origin"]):
        return RobotsClaim("fetch")
    key = (robots_answers.c.scope == scope) & (robots_answers.c.origin == origin)
    row = conn.execute(select(robots_answers).where(key).with_for_update()).one()
    if row.state == "done" and (row.expires_at is None or row.expires_at > clock):
        expires_in = None if row.expires_at is None else float(row.expires_at) - clock
        return RobotsClaim("done", RobotsAnswer(row.status, row.body, expires_in))
    if row.state == "fetching" and row.owner != owner and float(row.claimed_until) > clock:
        return RobotsClaim("wait")
    conn.execute(robots_answers.update().where(key).values(state="fetching", owner=owner, claimed_until=until))
    return RobotsClaim("fetch")


def save_robots(conn: Connection, scope: str, origin: str, answer: RobotsAnswer) -> None:
    """Record the answer a worker fetched for the scope's other workers (`expires_in` seconds from now)."""
    clock = db_clock(conn)
    expires = None if answer.expires_in is None else clock + answer.expires_in
    key = (robots_answers.c.scope == scope) & (robots_answers.c.origin == origin)
    values = {"state": "done", "status": answer.status, "body": answer.body, "expires_at": expires}
    conn.execute(robots_answers.update().where(key).values(**values))


def renew_leases(conn: Connection, owner: str, jobs: list[str], lease_seconds: float) -> int:
    """Push back the lease of every pending frontier row `owner` holds in `jobs` (a live worker's heartbeat);
    returns how many. The frontier's leases are on the workers' clocks, as `frontier.claim` writes them."""
    if not jobs:
        return 0
    until = datetime.fromtimestamp(time.time() + lease_seconds, UTC)
    held = frontier.c.job.in_(jobs) & (frontier.c.state == "pending") & (frontier.c.lease_owner == owner)
    result = conn.execute(
        frontier.update().where(held).values(lease_until=until), execution_options={"preserve_rowcount": True}
    )
    return max(0, result.rowcount)


def held_by_others(conn: Connection, job: str, owner: str) -> int:
    """Pending rows of `job` under a live lease of another worker: work this worker may still have to take
    over if that worker dies (its lease then lapses, or `release_stale` sees its process gone)."""
    stamp = datetime.now(UTC)
    held = (
        (frontier.c.job == job)
        & (frontier.c.state == "pending")
        & frontier.c.lease_owner.isnot(None)
        & (frontier.c.lease_owner != owner)
        & (frontier.c.lease_until >= stamp)
    )
    return int(conn.execute(select(func.count()).select_from(frontier).where(held)).scalar_one())


def claimable(conn: Connection, job: str) -> int:
    """Pending rows of `job` nobody holds (never claimed, given back, or their lease lapsed): work a worker that
    finished its pass can still join in on."""
    stamp = datetime.now(UTC)
    free = frontier.c.lease_owner.is_(None) | (frontier.c.lease_until < stamp)
    query = select(func.count()).select_from(frontier).where((frontier.c.job == job) & (frontier.c.state == "pending"))
    return int(conn.execute(query.where(free)).scalar_one())
