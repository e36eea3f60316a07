"""A job run's admission budget across all its workers: `max_images` and `max_per_label` are per run.

Every worker of a run reserves the images it admits in `run_budgets` (one row per label key, `admitted`
counting up), in batches: a web worker reserves a claim batch's images in the transaction that claims them, a
worker ingesting local files a few at a time. `reserve` runs under one lock per run (PostgreSQL: an advisory
transaction lock; SQLite: the write transaction, which is the database's write lock), so two workers can never
both take the last image of the budget: the run's total never exceeds `max_images`, nor a label's
`max_per_label`. What a worker reserved and did not admit is given back with `give_back`.

A `targets = true` run's target quotas are run-wide the same way: a label's quota is its open target's remaining
want when the run first reserves an image of it (`reserve(..., quotas=...)`), stored next to the counts (a row
whose key is `QUOTA` + the label key), and a reservation past it is refused (`target_met`); `renew_quotas` sets
a label's quota to what the run admitted plus what the target still wants (a later pass, once the images in
flight have landed: some were duplicates or failed).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, bindparam, select, text

from storage.catalog.schema import run_budgets

__all__ = ["QUOTA", "Reservation", "admitted", "give_back", "renew_quotas", "reserve"]

QUOTA = "\x1fquota:"  # key prefix of a label's target quota (no label key starts with a control character)


@dataclass(frozen=True)
class Reservation:
    refused: list[str | None]  # per key asked for, in order: None (reserved), max_images, max_per_label, target_met
    total: int  # what the run has admitted, every label, after this reservation
    per_label: dict[str, int]  # what the run has admitted by label key, after this reservation
    quotas: dict[str, int] = field(default_factory=dict)  # label key -> the run's target quota (targets jobs)


def reserve(
    conn: Connection,
    run_id: int,
    keys: Sequence[str],
    *,
    max_images: int | None = None,
    max_per_label: int | None = None,
    quotas: Mapping[str, int] | None = None,
) -> Reservation:
    """Reserve one image per key (label keys, "" for unlabelled), in order, while the run's total stays within
    `max_images`, each label's within `max_per_label` (None: no limit) and, with `quotas` (label key -> what
    its open target still wants now; a targets job), each label's within the run's target quota, which the
    run's first reservation of the label fixes from `quotas`."""
    _lock(conn, run_id)
    counts, fixed = _read(conn, run_id)
    before = {**dict(counts), **{QUOTA + k: n for k, n in fixed.items()}}
    total = sum(counts.values())
    refused: list[str | None] = []
    for key in keys:
        if quotas is not None and key not in fixed:
            fixed[key] = counts[key] + max(0, quotas.get(key, 0))
        if max_images is not None and total >= max_images:
            refused.append("max_images")
        elif max_per_label is not None and counts[key] >= max_per_label:
            refused.append("max_per_label")
        elif quotas is not None and counts[key] >= fixed[key]:
            refused.append("target_met")
        else:
            counts[key] += 1
            total += 1
            refused.append(None)
    _store(conn, run_id, before, {**dict(counts), **{QUOTA + k: n for k, n in fixed.items()}})
    return Reservation(refused, total, dict(counts), dict(fixed))


def renew_quotas(conn: Connection, run_id: int, remaining: Mapping[str, int]) -> dict[str, int]:
    """Set each label's target quota to what the run has admitted of it plus `remaining` (what its target still
    wants now), for a later pass once nothing of the run is in flight; returns the quotas."""
    _lock(conn, run_id)
    counts, fixed = _read(conn, run_id)
    before = {**dict(counts), **{QUOTA + k: n for k, n in fixed.items()}}
    for key, n in remaining.items():
        fixed[key] = counts[key] + max(0, n)
    _store(conn, run_id, before, {**dict(counts), **{QUOTA + k: n for k, n in fixed.items()}})
    return dict(fixed)


def give_back(conn: Connection, run_id: int, keys: Mapping[str, int]) -> None:
    """Return reservations that were not used (label key -> images)."""
    if not any(n > 0 for n in keys.values()):
        return
    _lock(conn, run_id)
    counts, _fixed = _read(conn, run_id)
    before = dict(counts)
    for key, n in keys.items():
        counts[key] = max(0, counts[key] - max(0, n))
    _store(conn, run_id, before, counts)


def admitted(conn: Connection, run_id: int) -> dict[str, int]:
    """What the run has admitted so far, by label key."""
    return dict(_read(conn, run_id)[0])


def _read(conn: Connection, run_id: int) -> tuple[Counter[str], dict[str, int]]:
    """The run's admissions by label key, and its target quotas by label key."""
    query = select(run_budgets.c.label_key, run_budgets.c.admitted).where(run_budgets.c.run_id == run_id)
    counts: Counter[str] = Counter()
    fixed: dict[str, int] = {}
    for key, n in conn.execute(query):
        if str(key).startswith(QUOTA):
            fixed[str(key)[len(QUOTA) :]] = int(n)
        else:
            counts[str(key)] = int(n)
    return counts, fixed


def _store(conn: Connection, run_id: int, before: Mapping[str, int], after: Mapping[str, int]) -> None:
    table = run_budgets
    new = [{"run_id": run_id, "label_key": k, "admitted": n} for k, n in after.items() if k not in before]
    changed = [{"b_key": k, "b_n": n} for k, n in after.items() if k in before and before[k] != n]
    if new:
        conn.execute(table.insert(), new)
    if changed:
        conn.execute(
            table.update()
            .where((table.c.run_id == run_id) & (table.c.label_key == bindparam("b_key")))
            .values(admitted=bindparam("b_n")),
            changed,
        )


def _lock(conn: Connection, run_id: int) -> None:
    """Serialise the run's reservations (SQLite: the write transaction already does)."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha1(f"gleaner-run-budget:{run_id}".encode()).digest()
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest[:8], "big", signed=True)})
