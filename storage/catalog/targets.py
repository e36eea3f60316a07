"""Collection targets: which labels need more images. The one writer of the `targets` table.

Training runs open targets (`replace_run_targets`), people set or close them by hand (`set_manual_target`), and
collectors list them (`open_targets`). Both writers go through this module, so the table has one vocabulary:

- `open`: wanted now;
- `done`: closed by a person (`harvest targets set LABEL --want 0`);
- `dropped`: replaced by a newer target for the label (a later run's, or one set by hand).

One open target per label is listed: one set by hand wins over a run's, and hand-set targets come first, then the
runs' in their order of urgency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from sqlalchemy import Connection, select

from storage.catalog.schema import targets
from storage.catalog.sql import now
from storage.errors import GleanerError

__all__ = [
    "DONE",
    "DROPPED",
    "MANUAL_REASON",
    "OPEN",
    "STATUSES",
    "OpenTarget",
    "TargetSpec",
    "open_targets",
    "replace_run_targets",
    "set_manual_target",
]

OPEN: Final = "open"
DONE: Final = "done"
DROPPED: Final = "dropped"
STATUSES: Final = (OPEN, DONE, DROPPED)
MANUAL_REASON: Final = "set by hand"


@dataclass(frozen=True)
class OpenTarget:
    label: str
    want: int
    reason: str
    origin: str  # "manual" or "run <id>"
    priority: int

    def to_json(self) -> dict[str, object]:
        return {"label": self.label, "want": self.want, "reason": self.reason, "origin": self.origin}


class TargetSpec(Protocol):
    """What a run's target needs to carry (train.feedback.Target has it; storage never imports train)."""

    @property
    def label(self) -> str: ...

    @property
    def want(self) -> int: ...

    @property
    def reason(self) -> str: ...


def open_targets(conn: Connection) -> list[OpenTarget]:
    """Open targets, one per label, most urgent first (hand-set ones before those of training runs)."""
    rows = conn.execute(
        select(targets.c.label, targets.c.want, targets.c.reason, targets.c.run_id, targets.c.priority, targets.c.id)
        .where(targets.c.status == OPEN)
        .order_by(targets.c.run_id.is_not(None), targets.c.priority, targets.c.id.desc())
    ).all()
    seen: set[str] = set()
    result = []
    for label, want, reason, run_id, priority, _ in rows:
        if label in seen:
            continue
        seen.add(label)
        origin = "manual" if run_id is None else f"run {run_id}"
        result.append(OpenTarget(label, int(want), reason, origin, int(priority)))
    return result


def set_manual_target(conn: Connection, label: str, want: int, reason: str | None = None) -> OpenTarget | None:
    """Replace the label's open targets with one set by hand; want 0 only closes them (returns None)."""
    label = label.strip()
    if not label:
        raise GleanerError("a target needs a label")
    if want < 0:
        raise GleanerError(f"--want must be 0 or more, not {want}")
    stamp = now()
    conn.execute(
        targets.update()
        .where(targets.c.status == OPEN, targets.c.label == label)
        .values(status=DONE if want == 0 else DROPPED, updated_at=stamp)
    )
    if want == 0:
        return None
    text = reason or MANUAL_REASON
    conn.execute(
        targets.insert().values(
            label=label, want=want, reason=text, status=OPEN, priority=0, run_id=None, created_at=stamp,
            updated_at=stamp,
        )
    )  # fmt: skip
    return OpenTarget(label, want, text, "manual", 0)


def replace_run_targets(conn: Connection, new: Sequence[TargetSpec], run_id: int | None) -> None:
    """Drop the open targets earlier runs made, then open the new ones (priority 1 = most urgent). Targets set
    by hand stay."""
    stamp = now()
    conn.execute(
        targets.update()
        .where(targets.c.status == OPEN, targets.c.run_id.is_not(None))
        .values(status=DROPPED, updated_at=stamp)
    )
    rows = [
        {
            "label": target.label,
            "want": target.want,
            "reason": target.reason,
            "status": OPEN,
            "priority": rank,
            "run_id": run_id,
            "created_at": stamp,
            "updated_at": stamp,
        }
        for rank, target in enumerate(new, start=1)
    ]
    if rows:
        conn.execute(targets.insert(), rows)
