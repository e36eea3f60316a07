"""Label audits in the catalog: the out-of-fold probabilities `train audit` measured for every image of a snapshot,
and the suspected label errors found in them (confident learning, near-duplicate conflicts).

An audit is a run (`runs.kind` "audit"); its row in `audits` holds the snapshot and the class order of every
probability vector. Probabilities are written fold by fold as the folds finish, so a killed audit keeps what it
measured. The suspects are what `curate labels --suspects` and the review app's "suspected label errors" view list:
`suspects()` returns them most likely first, each with the image's current label, so a suspect whose label a
person has changed since the audit (a suggestion accepted, or another label chosen) is shown as resolved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, select

from storage.catalog.schema import audit_predictions, audit_suspects, audits, images, labels
from storage.catalog.sql import now

__all__ = [
    "SUSPECT_SOURCES",
    "AuditPrediction",
    "Suspect",
    "audit_info",
    "audit_probabilities",
    "current_labels",
    "finish_audit",
    "latest_audit",
    "replace_suspects",
    "start_audit",
    "suspect_count",
    "suspects",
    "write_audit_predictions",
]

SUSPECT_SOURCES = ("confident_learning", "near_duplicate_conflict")
CHUNK = 500


@dataclass(frozen=True)
class AuditPrediction:
    sha256: str
    label: str  # the label in the audited snapshot
    group: str  # near-duplicate group
    fold: int  # 1-based
    probs: list[float]  # in the audit's class order


@dataclass(frozen=True)
class Suspect:
    """A suspected label error, as the CLI prints it and the review view shows it."""

    sha256: str
    label: str  # the label at the audit
    suggested: str  # the label it probably is
    score: float  # 0-1: higher, more likely wrong
    sources: list[str] = field(default_factory=list)
    current: str | None = None  # the image's label now (None: unlabelled); filled by `suspects()`

    @property
    def resolved(self) -> bool:
        """A person changed the label since the audit (to the suggestion or to another label)."""
        return self.current != self.label

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256, "label": self.label, "suggested": self.suggested, "score": round(self.score, 4),
            "sources": list(self.sources), "current": self.current,
        }  # fmt: skip


def start_audit(conn: Connection, run_id: int, snapshot: str, class_order: Sequence[str], folds: int) -> None:
    conn.execute(
        audits.insert().values(
            run_id=run_id, snapshot=snapshot, labels=list(class_order), folds=folds, status="running",
            started_at=now(),
        )
    )  # fmt: skip


def audit_info(conn: Connection, run_id: int) -> dict[str, Any] | None:
    """The audit's row (snapshot, labels, folds, status, times), or None."""
    row = conn.execute(select(audits).where(audits.c.run_id == run_id)).first()
    return dict(row._mapping) if row else None


def write_audit_predictions(conn: Connection, run_id: int, rows: Iterable[AuditPrediction]) -> int:
    """Record out-of-fold probabilities; an image recorded before (a fold measured again on --resume) is replaced."""
    rows = list(rows)
    shas = [r.sha256 for r in rows]
    for start in range(0, len(shas), CHUNK):
        part = shas[start : start + CHUNK]
        conn.execute(
            audit_predictions.delete().where(audit_predictions.c.run_id == run_id, audit_predictions.c.sha256.in_(part))
        )
    values = [
        {"run_id": run_id, "sha256": r.sha256, "label": r.label, "group_key": r.group, "fold": r.fold,
         "probs": [round(float(p), 6) for p in r.probs]}
        for r in rows
    ]  # fmt: skip
    for start in range(0, len(values), CHUNK):
        conn.execute(audit_predictions.insert(), values[start : start + CHUNK])
    return len(values)


def audit_probabilities(conn: Connection, run_id: int) -> list[AuditPrediction]:
    """Every recorded out-of-fold prediction of the audit, by sha256."""
    query = select(audit_predictions).where(audit_predictions.c.run_id == run_id).order_by(audit_predictions.c.sha256)
    return [
        AuditPrediction(r.sha256, r.label, r.group_key, int(r.fold), [float(p) for p in r.probs])
        for r in conn.execute(query)
    ]


def replace_suspects(conn: Connection, run_id: int, found: Iterable[Suspect]) -> int:
    conn.execute(audit_suspects.delete().where(audit_suspects.c.run_id == run_id))
    values = [
        {"run_id": run_id, "sha256": s.sha256, "label": s.label, "suggested": s.suggested,
         "score": float(s.score), "sources": list(s.sources)}
        for s in found
    ]  # fmt: skip
    for start in range(0, len(values), CHUNK):
        conn.execute(audit_suspects.insert(), values[start : start + CHUNK])
    return len(values)


def finish_audit(conn: Connection, run_id: int) -> None:
    conn.execute(audits.update().where(audits.c.run_id == run_id).values(status="done", finished_at=now()))


def latest_audit(conn: Connection) -> int | None:
    """The newest finished audit's run id (the one whose suspects are listed), or None."""
    found = conn.execute(select(func.max(audits.c.run_id)).where(audits.c.status == "done")).scalar()
    return None if found is None else int(found)


def _suspect_query(run_id: int, include_resolved: bool) -> Any:
    current = labels.c.name
    query = (
        select(audit_suspects, current.label("current"))
        .select_from(
            audit_suspects.join(images, images.c.sha256 == audit_suspects.c.sha256).outerjoin(
                labels, labels.c.id == images.c.label_id
            )
        )
        .where(audit_suspects.c.run_id == run_id, images.c.review != "rejected", images.c.status == "ok")
    )
    if not include_resolved:
        query = query.where(and_(current.is_not(None), current == audit_suspects.c.label))
    return query


def suspects(
    conn: Connection,
    run_id: int | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
    include_resolved: bool = False,
) -> list[Suspect]:
    """The audit's suspects (the newest finished audit when `run_id` is None), highest score first, ties by
    sha256; images rejected since are left out, and so are those whose label changed since the audit unless
    `include_resolved`. `limit` and `offset` page through them (the review view's grid)."""
    run_id = latest_audit(conn) if run_id is None else run_id
    if run_id is None:
        return []
    query = _suspect_query(run_id, include_resolved).order_by(audit_suspects.c.score.desc(), audit_suspects.c.sha256)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return [
        Suspect(r.sha256, r.label, r.suggested, float(r.score), [str(s) for s in r.sources], r.current)
        for r in conn.execute(query)
    ]


def suspect_count(conn: Connection, run_id: int | None = None, *, include_resolved: bool = False) -> int:
    run_id = latest_audit(conn) if run_id is None else run_id
    if run_id is None:
        return 0
    inner = _suspect_query(run_id, include_resolved).subquery()
    return int(conn.execute(select(func.count()).select_from(inner)).scalar() or 0)


def current_labels(conn: Connection, shas: Sequence[str]) -> dict[str, str | None]:
    """The current label of each image that is still usable (not rejected, duplicate or missing); an image left
    out has become unusable since. None: it has no label now."""
    found: dict[str, str | None] = {}
    for start in range(0, len(shas), CHUNK):
        part = list(shas[start : start + CHUNK])
        query = (
            select(images.c.sha256, labels.c.name)
            .select_from(images.outerjoin(labels, labels.c.id == images.c.label_id))
            .where(images.c.sha256.in_(part), images.c.review != "rejected", images.c.status == "ok",
                   images.c.duplicate_of.is_(None))
        )  # fmt: skip
        found.update({str(sha): (None if name is None else str(name)) for sha, name in conn.execute(query)})
    return found
