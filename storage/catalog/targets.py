"""Collection targets: which labels need more images. The one writer of the `targets` table.

Training runs open targets (`replace_run_targets`), people set or close them by hand (`set_manual_target`,
`close_targets`), and collectors read them (`open_targets`, `target_sources`) and close the ones they met
(`refresh_targets`, which the collection engine calls at the end of every run). The vocabulary:

- `open`: wanted now;
- `met`: closed because enough images arrived (`collected >= want`);
- `closed`: closed by a person (`harvest targets close LABEL`, or `set LABEL --want 0`);
- `dropped`: replaced by a newer target for the label (a later run's, or one set by hand).

**collected** is derived, never counted by collectors: the images whose current label is the target's label,
not rejected, duplicates or missing, added to the catalog from the moment the target opened (until it closed).
So every collector counts (import, scrape, urls, watch, jobs) without knowing targets exist. An open target
whose `collected` reached `want` is listed as `met` at once; `refresh_targets` makes that stick.

One open target per label: a hand-set target replaces the label's open targets, and a run's target for a label
with a hand-set open target is kept only as `dropped` history (a person's judgement wins over reruns). A run
replaces the open targets of the labels it *measured* (its snapshot's labels), whether or not it wants more of
them; targets of other labels stay. `origin` is the run's folder (`train run --out`), or `manual`.

For the jobs engine: `open_targets(conn)` is the still-open targets, most urgent first, each with `label`,
`want`, `collected`, `remaining`, `status` and `sources` (a hand-set target's `--source` URLs; also
`target_sources(conn)`); call `refresh_targets(conn)` after a batch to close the met ones (it returns them),
and `list_targets(conn, include_closed=True)` to report on targets that closed during a run (by `id`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from sqlalchemy import Connection, Row, func, or_, select

from storage.catalog.labels import add_label, label_key, stored_label
from storage.catalog.schema import images, labels, targets
from storage.catalog.sql import now
from storage.errors import GleanerError

__all__ = [
    "CLOSED",
    "DONE",
    "DROPPED",
    "MANUAL",
    "MANUAL_REASON",
    "MET",
    "OPEN",
    "STATUSES",
    "OpenTarget",
    "Target",
    "TargetSpec",
    "close_targets",
    "list_targets",
    "open_targets",
    "refresh_targets",
    "replace_run_targets",
    "set_manual_target",
    "target_sources",
]

OPEN: Final = "open"
MET: Final = "met"
CLOSED: Final = "closed"
DONE: Final = CLOSED  # the name of `closed` before schema v8 (the rows were migrated)
DROPPED: Final = "dropped"
STATUSES: Final = (OPEN, MET, CLOSED, DROPPED)
MANUAL: Final = "manual"
MANUAL_REASON: Final = "set by hand"
KNOWN_SHOWN: Final = 20  # labels named in the error for an unknown label


@dataclass(frozen=True)
class Target:
    """One row of the targets table, with what has been collected for it so far."""

    id: int
    label: str
    want: int
    collected: int
    reason: str
    status: str
    origin: str  # the run folder, or "manual"
    run_id: int | None
    priority: int
    opened_at: datetime
    sources: tuple[str, ...] = field(default=())

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    @property
    def remaining(self) -> int:
        return max(0, self.want - self.collected)

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "want": self.want,
            "collected": self.collected,
            "reason": self.reason,
            "status": self.status,
            "origin": self.origin,
            "run_id": self.run_id,
            "sources": list(self.sources),
        }


OpenTarget = Target  # the name before targets counted what was collected


class TargetSpec(Protocol):
    """What a run's target needs to carry (train.feedback.Target has it; storage never imports train)."""

    @property
    def label(self) -> str: ...

    @property
    def want(self) -> int: ...

    @property
    def reason(self) -> str: ...


def _collected_column() -> Any:
    """Accepted images with the target's label added while it was open: a correlated count per target row."""
    return (
        select(func.count(images.c.sha256))
        .select_from(images.join(labels, images.c.label_id == labels.c.id))
        .where(
            labels.c.name == targets.c.label,
            images.c.added_at >= targets.c.created_at,
            or_(targets.c.closed_at.is_(None), images.c.added_at < targets.c.closed_at),
            images.c.review != "rejected",
            images.c.status == "ok",
            images.c.duplicate_of.is_(None),
        )
        .correlate(targets)
        .scalar_subquery()
        .label("collected")
    )


def _target(row: Row[Any]) -> Target:
    collected = int(row.collected)
    status = MET if row.status == OPEN and collected >= int(row.want) else str(row.status)
    origin = row.origin or (MANUAL if row.run_id is None else f"run {row.run_id}")
    return Target(
        id=int(row.id),
        label=str(row.label),
        want=int(row.want),
        collected=collected,
        reason=str(row.reason),
        status=status,
        origin=str(origin),
        run_id=None if row.run_id is None else int(row.run_id),
        priority=int(row.priority),
        opened_at=row.created_at,
        sources=tuple(row.sources or ()),
    )


def list_targets(conn: Connection, *, include_closed: bool = False) -> list[Target]:
    """Open targets, one per label: hand-set ones first, then the newest run's by urgency, then older runs'; one
    already met is listed as `met`. With include_closed, then every closed target, the newest first."""
    query = select(targets, _collected_column())
    opened = conn.execute(
        query.where(targets.c.status == OPEN).order_by(
            targets.c.run_id.is_not(None), targets.c.run_id.desc(), targets.c.priority, targets.c.id.desc()
        )
    ).all()
    seen: set[str] = set()
    result = []
    for row in opened:
        if row.label not in seen:  # catalogs from before schema v8 may hold two open targets of one label
            seen.add(row.label)
            result.append(_target(row))
    if include_closed:
        closed = conn.execute(query.where(targets.c.status != OPEN).order_by(targets.c.id.desc())).all()
        result += [_target(row) for row in closed]
    return result


def open_targets(conn: Connection) -> list[Target]:
    """The targets still wanting images (open and not yet met), most urgent first."""
    return [target for target in list_targets(conn) if target.is_open]


def target_sources(conn: Connection) -> dict[str, list[str]]:
    """label → the `--source` URLs of its open target (labels whose target has none are left out)."""
    return {target.label: list(target.sources) for target in open_targets(conn) if target.sources}


def refresh_targets(conn: Connection) -> list[Target]:
    """Close the open targets whose collected count reached their want (status `met`); returns them."""
    met = [target for target in list_targets(conn) if target.status == MET]
    if met:
        stamp = now()
        conn.execute(
            targets.update()
            .where(targets.c.id.in_([t.id for t in met]), targets.c.status == OPEN)
            .values(status=MET, closed_at=stamp, updated_at=stamp)
        )
    return met


def _close_open(conn: Connection, labels_: Iterable[str], status: str, *, runs_only: bool = False) -> int:
    """Set the open targets of these labels (compared under the label rule) to `status`; how many."""
    keys = {label_key(label) for label in labels_}
    query = select(targets.c.id, targets.c.label).where(targets.c.status == OPEN)
    if runs_only:
        query = query.where(targets.c.run_id.is_not(None))
    ids = [row_id for row_id, label in conn.execute(query) if label_key(label) in keys]
    if ids:
        stamp = now()
        conn.execute(
            targets.update().where(targets.c.id.in_(ids)).values(status=status, closed_at=stamp, updated_at=stamp)
        )
    return len(ids)


def _known_label(conn: Connection, label: str, *, create: bool, actor: str) -> str:
    """The catalog's spelling of `label`; an unknown one is created with `create`, else a user error."""
    label = label.strip()
    if not label:
        raise GleanerError("a target needs a label")
    found = stored_label(conn, label)
    if found is not None:
        return found
    if create:
        add_label(conn, label, actor=actor)
        created = stored_label(conn, label)
        assert created is not None
        return created
    names = sorted(str(name) for name in conn.execute(select(labels.c.name)).scalars())
    more = len(names) - KNOWN_SHOWN
    known = ", ".join(names[:KNOWN_SHOWN]) + (f" and {more} more" if more > 0 else "")
    hint = f"known labels: {known}" if names else "the catalog has no labels yet"
    raise GleanerError(f"no label {label!r} in the catalog ({hint}); pass --create to start a new one")


def _checked_sources(sources: Sequence[str]) -> tuple[str, ...]:
    checked = []
    for url in sources:
        url = url.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise GleanerError(f"--source must be an http(s) URL, not {url!r}")
        if url not in checked:
            checked.append(url)
    return tuple(checked)


def set_manual_target(
    conn: Connection,
    label: str,
    want: int,
    reason: str | None = None,
    *,
    sources: Sequence[str] = (),
    create: bool = False,
    actor: str = "cli",
) -> Target | None:
    """Replace the label's open targets with one set by hand (want 0 only closes them: returns None). A label
    the catalog does not know is refused unless `create`. Without new `sources`, the replaced target's stay."""
    if want < 0:
        raise GleanerError(f"--want must be 0 or more, not {want}")
    wanted = _checked_sources(sources)
    name = _known_label(conn, label, create=create, actor=actor)
    if want == 0:
        _close_open(conn, [name], CLOSED)
        return None
    if not wanted:
        earlier = next((t for t in list_targets(conn) if label_key(t.label) == label_key(name)), None)
        wanted = earlier.sources if earlier else ()
    _close_open(conn, [name], DROPPED)
    stamp = now()
    text = reason or MANUAL_REASON
    inserted = conn.execute(
        targets.insert().values(
            label=name, want=want, reason=text, status=OPEN, priority=0, run_id=None, origin=MANUAL,
            sources=list(wanted), created_at=stamp, updated_at=stamp,
        )
    )  # fmt: skip
    key = inserted.inserted_primary_key
    assert key is not None
    return Target(int(key[0]), name, want, 0, text, OPEN, MANUAL, None, 0, stamp, wanted)


def close_targets(conn: Connection, label: str) -> int:
    """Close the label's open targets by hand; refused (one line) when it has none."""
    keys = label_key(label.strip())
    if not any(label_key(t.label) == keys for t in open_targets(conn)):
        names = ", ".join(t.label for t in open_targets(conn)) or "none"
        raise GleanerError(f"no open target for {label!r} (open targets: {names})")
    return _close_open(conn, [label], CLOSED)


def replace_run_targets(
    conn: Connection,
    new: Sequence[TargetSpec],
    run_id: int | None,
    *,
    measured: Iterable[str] | None = None,
    origin: str | None = None,
) -> None:
    """A run's report replaces the open targets earlier runs made for the labels it measured (default: the
    labels of `new`), then opens the new ones (priority 1 = most urgent); `origin` is the run's folder. Targets
    set by hand stay and win: the run's target for such a label is recorded as dropped."""
    refresh_targets(conn)  # a hand-set target already met no longer holds the label
    measured_labels = [t.label for t in new] if measured is None else list(measured)
    _close_open(conn, [*measured_labels, *(t.label for t in new)], DROPPED, runs_only=True)
    manual = {label_key(t.label) for t in open_targets(conn) if t.run_id is None}
    stamp = now()
    rows: list[dict[str, Any]] = [
        {
            "label": target.label,
            "want": target.want,
            "reason": target.reason,
            "status": DROPPED if label_key(target.label) in manual else OPEN,
            "priority": rank,
            "run_id": run_id,
            "origin": origin or (f"run {run_id}" if run_id is not None else None),
            "sources": [],
            "created_at": stamp,
            "updated_at": stamp,
            "closed_at": stamp if label_key(target.label) in manual else None,
        }
        for rank, target in enumerate(new, start=1)
    ]
    if rows:
        conn.execute(targets.insert(), rows)
