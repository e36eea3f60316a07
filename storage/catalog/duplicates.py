"""Near-duplicate state in the catalog: candidates waiting for review, and the decisions people made.

Decisions win over every rerun of `curate dedupe` and of ingest: a pair marked "not duplicates" is never grouped
again, a chosen keeper stays the keeper of its group. Each decision is a row; revoking one stamps it, so the
history of who decided what, and when, is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, or_, select

from storage.catalog.schema import duplicate_candidates, duplicate_decisions, images, labels
from storage.catalog.sql import insert_ignore, now
from storage.keepers import ImageInfo

__all__ = [
    "PAIR_KINDS",
    "Candidate",
    "Decisions",
    "add_decision",
    "candidates",
    "clear_candidates",
    "decision_history",
    "dedupe_facts",
    "duplicate_marks",
    "group_members",
    "load_decisions",
    "marked_duplicates",
    "record_candidate",
    "replace_keeper",
    "revoke_decisions",
    "set_duplicate_marks",
]


@dataclass(frozen=True)
class Candidate:
    sha256: str
    other: str
    distance: int
    matched: str
    score: float
    reason: str


@dataclass(frozen=True)
class Decisions:
    """The decisions in force: pairs that are not duplicates, pairs confirmed as duplicates, chosen keepers."""

    not_duplicates: frozenset[frozenset[str]] = frozenset()
    keepers: frozenset[str] = frozenset()
    confirmed: frozenset[frozenset[str]] = frozenset()

    def separated(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.not_duplicates

    def confirmed_pair(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.confirmed


PAIR_KINDS = ("not_duplicate", "duplicate")


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def record_candidate(conn: Connection, candidate: Candidate) -> None:
    """Remember a near-duplicate that was not set aside automatically (idempotent)."""
    insert_ignore(
        conn,
        duplicate_candidates,
        {
            "sha256": candidate.sha256,
            "other": candidate.other,
            "distance": candidate.distance,
            "matched": candidate.matched,
            "score": candidate.score,
            "reason": candidate.reason,
            "found_at": now(),
        },
        ["sha256", "other"],
    )


def candidates(conn: Connection) -> list[Candidate]:
    """Candidates of images that are still in the catalog and not set aside, closest first."""
    query = (
        select(duplicate_candidates)
        .join(images, images.c.sha256 == duplicate_candidates.c.sha256)
        .where(images.c.duplicate_of.is_(None))
        .order_by(duplicate_candidates.c.distance, duplicate_candidates.c.sha256)
    )
    return [
        Candidate(row.sha256, row.other, row.distance, row.matched, row.score, row.reason)
        for row in conn.execute(query)
    ]


def clear_candidates(conn: Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """Forget candidates that were decided (either order of the pair)."""
    for a, b in pairs:
        conn.execute(
            delete(duplicate_candidates).where(
                or_(
                    (duplicate_candidates.c.sha256 == a) & (duplicate_candidates.c.other == b),
                    (duplicate_candidates.c.sha256 == b) & (duplicate_candidates.c.other == a),
                )
            )
        )


def add_decision(conn: Connection, kind: str, sha_a: str, sha_b: str | None, actor: str) -> None:
    """Record a decision: ("not_duplicate", a, b), ("duplicate", a, b) or ("keeper", a, None). A decision about
    a pair replaces the one in force about that pair (history keeps both)."""
    if kind in PAIR_KINDS:
        assert sha_b is not None
        sha_a, sha_b = _pair(sha_a, sha_b)
        clear_candidates(conn, [(sha_a, sha_b)])
        for other in PAIR_KINDS:
            revoke_decisions(conn, other, sha_a, sha_b)
    conn.execute(duplicate_decisions.insert().values(kind=kind, sha_a=sha_a, sha_b=sha_b, actor=actor, at=now()))


def revoke_decisions(conn: Connection, kind: str, sha_a: str, sha_b: str | None = None) -> int:
    """Revoke the decisions in force of this kind about a (and b); returns how many."""
    if sha_b is not None:
        sha_a, sha_b = _pair(sha_a, sha_b)
    table = duplicate_decisions
    condition = (table.c.kind == kind) & (table.c.sha_a == sha_a) & table.c.revoked_at.is_(None)
    if sha_b is not None:
        condition &= table.c.sha_b == sha_b
    return int(conn.execute(table.update().where(condition).values(revoked_at=now())).rowcount)


def load_decisions(conn: Connection) -> Decisions:
    table = duplicate_decisions
    rows = conn.execute(select(table.c.kind, table.c.sha_a, table.c.sha_b).where(table.c.revoked_at.is_(None)))
    pairs: dict[str, set[frozenset[str]]] = {kind: set() for kind in PAIR_KINDS}
    keepers: set[str] = set()
    for kind, a, b in rows:
        if kind in PAIR_KINDS and b:
            pairs[kind].add(frozenset((a, b)))
        elif kind == "keeper":
            keepers.add(a)
    return Decisions(frozenset(pairs["not_duplicate"]), frozenset(keepers), frozenset(pairs["duplicate"]))


def decision_history(conn: Connection, sha256: str | None = None) -> list[dict[str, object]]:
    table = duplicate_decisions
    query = select(table).order_by(table.c.id)
    if sha256:
        query = query.where((table.c.sha_a == sha256) | (table.c.sha_b == sha256))
    return [
        {
            "kind": row.kind,
            "a": row.sha_a,
            "b": row.sha_b,
            "actor": row.actor,
            "at": row.at.isoformat(),
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        }
        for row in conn.execute(query)
    ]


def set_duplicate_marks(conn: Connection, marks: dict[str, str | None]) -> int:
    """Set duplicate_of for each image (None: not set aside); returns how many rows changed."""
    changed = 0
    stamp = now()
    for sha, keeper in marks.items():
        statement = images.update().where(images.c.sha256 == sha)
        if keeper is None:
            statement = statement.where(images.c.duplicate_of.isnot(None))
        else:
            statement = statement.where(images.c.duplicate_of.is_(None) | (images.c.duplicate_of != keeper))
        changed += conn.execute(statement.values(duplicate_of=keeper, updated_at=stamp)).rowcount
    return changed


def replace_keeper(conn: Connection, old: str, new: str) -> None:
    """A better copy arrived: `new` becomes the keeper of `old`'s group, `old` its duplicate."""
    stamp = now()
    conn.execute(images.update().where(images.c.duplicate_of == old).values(duplicate_of=new, updated_at=stamp))
    conn.execute(images.update().where(images.c.sha256 == old).values(duplicate_of=new, updated_at=stamp))


def marked_duplicates(conn: Connection) -> list[str]:
    """Every image set aside as a near-duplicate of another."""
    return [
        str(sha) for sha in conn.execute(select(images.c.sha256).where(images.c.duplicate_of.isnot(None))).scalars()
    ]


def duplicate_marks(conn: Connection, shas: Iterable[str]) -> dict[str, str | None]:
    """sha256 -> duplicate_of (None: not set aside) of those of `shas` that exist."""
    query = select(images.c.sha256, images.c.duplicate_of).where(images.c.sha256.in_(list(shas)))
    return {str(sha): keeper for sha, keeper in conn.execute(query)}


def dedupe_facts(conn: Connection) -> dict[str, dict[str, Any]]:
    """sha256 -> what `curate dedupe` needs of every image: object key, size, review state, label name, and its
    facts as a keeper candidate (storage.keepers.ImageInfo under "info")."""
    c = images.c
    query = select(
        c.sha256,
        c.object_key,
        c.width,
        c.height,
        c.size_bytes,
        c.format,
        c.mode,
        c.added_at,
        c.review,
        c.content_pixels,
        labels.c.name,
    ).select_from(images.outerjoin(labels, c.label_id == labels.c.id))
    return {
        row.sha256: {
            "object_key": row.object_key,
            "width": row.width,
            "height": row.height,
            "review": row.review,
            "label": row.name,
            "info": ImageInfo(
                row.sha256,
                row.width,
                row.height,
                row.size_bytes,
                row.format,
                row.mode,
                row.name is not None,
                row.added_at,
                row.content_pixels,
            ),
        }
        for row in conn.execute(query)
    }


def group_members(conn: Connection, keeper: str, limit: int = 60) -> list[dict[str, Any]]:
    """The keeper and the images set aside as its duplicates, keeper first (sha256, width, height, review,
    keeper, label)."""
    query = (
        select(images.c.sha256, images.c.width, images.c.height, images.c.review, images.c.duplicate_of, labels.c.name)
        .select_from(images.outerjoin(labels, images.c.label_id == labels.c.id))
        .where(or_(images.c.sha256 == keeper, images.c.duplicate_of == keeper))
        .order_by(images.c.duplicate_of.isnot(None), images.c.sha256)
        .limit(limit)
    )
    return [
        {
            "sha256": sha,
            "width": width,
            "height": height,
            "review": review,
            "keeper": duplicate_of is None,
            "label": name,
        }
        for sha, width, height, review, duplicate_of, name in conn.execute(query)
    ]
