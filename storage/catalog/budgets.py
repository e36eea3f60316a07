"""A job run's admission budget across all its workers: `max_images` and `max_per_label` are per run.

Every worker of a run reserves the images it admits in `run_budgets` (one row per label key, `admitted`
counting up), in batches: a web worker reserves a claim batch's images in the transaction that claims them, a
worker ingesting local files a few at a time. `reserve` runs under one lock per run (PostgreSQL: an advisory
transaction lock; SQLite: the write transaction, which is the database's write lock), so two workers can never
both take the last image of the budget: the run's total never exceeds `max_images`, nor a label's
`max_per_label`. What a worker reserved and did not admit is given back with `give_back`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, text

from storage.catalog.schema import run_budgets

__all__ = ["Reservation", "admitted", "give_back", "reserve"]


@dataclass(frozen=True)
class Reservation:
    refused: list[str | None]  # per key asked for, in order: None (reserved), "max_images" or "max_per_label"
    total: int  # what the run has admitted, every label, after this reservation
    per_label: dict[str, int]  # what the run has admitted by label key, after this reservation


def reserve(
    conn: Connection,
    run_id: int,
    keys: Sequence[str],
    *,
    max_images: int | None = None,
    max_per_label: int | None = None,
) -> Reservation:
    """Reserve one image per key (label keys, "" for unlabelled), in order, while the run's total stays within
    `max_images` and each label's within `max_per_label` (None: no limit)."""
    _lock(conn, run_id)
    counts = _counts(conn, run_id)
    before = dict(counts)
    total = sum(counts.values())
    refused: list[str | None] = []
    for key in keys:
        if max_images is not None and total >= max_images:
            refused.append("max_images")
        elif max_per_label is not None and counts[key] >= max_per_label:
            refused.append("max_per_label")
        else:
            counts[key] += 1
            total += 1
            refused.append(None)
    _store(conn, run_id, before, counts)
    return Reservation(refused, total, dict(counts))


def give_back(conn: Connection, run_id: int, keys: Mapping[str, int]) -> None:
    """Return reservations that were not used (label key -> images)."""
    if not any(n > 0 for n in keys.values()):
        return
    _lock(conn, run_id)
    counts = _counts(conn, run_id)
    before = dict(counts)
    for key, n in keys.items():
        counts[key] = max(0, counts[key] - max(0, n))
    _store(conn, run_id, before, counts)


def admitted(conn: Connection, run_id: int) -> dict[str, int]:
    """What the run has admitted so far, by label key."""
    return dict(_counts(conn, run_id))


def _counts(conn: Connection, run_id: int) -> Counter[str]:
    query = select(run_budgets.c.label_key, run_budgets.c.admitted).where(run_budgets.c.run_id == run_id)
    return Counter({str(key): int(n) for key, n in conn.execute(query)})


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
