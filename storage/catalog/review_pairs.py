"""Near-duplicate candidates as the review app shows them: the Candidates view's keyset-paged pairs (closest
first), an image's candidates and decisions, and what a decision about a pair touches (for undo).

Pairs are the live candidates of storage.catalog.review (both images whole, the newer one not set aside);
the grid's filter (label, review state, quality flag) keeps a pair when either image passes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, or_, select, tuple_

from storage.catalog.duplicates import PAIR_KINDS, Candidate, decision_history
from storage.catalog.labels import label_id as find_label
from storage.catalog.review import DEFAULT_PAGE, MAX_PAGE, Filter, decode_cursor, encode_cursor, live_candidates
from storage.catalog.schema import duplicate_candidates, duplicate_decisions, images, labels, quality_flags, sources
from storage.keepers import ImageInfo, keeper_order

__all__ = [
    "CandidatePage",
    "candidate_page",
    "candidate_rows",
    "count_candidates",
    "decisions_in_force",
    "image_near_duplicates",
    "involved_marks",
]

IMAGE_PAIRS_LIMIT = 50

_c = duplicate_candidates.c
_KEYS = (_c.distance, _c.sha256, _c.other)  # the Candidates view's order: closest pairs first


# --- the Candidates view -----------------------------------------------------------------------------------


@dataclass
class CandidatePage:
    """One page of candidate pairs, each with its images' facts, and cursors to the neighbouring pages."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    prev_cursor: str | None
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # sha256 -> what a card shows


def _filtered(conn: Connection, flt: Filter, *columns: Any) -> Any:
    """Live candidates with either image matching the label, review state and quality flag filters."""
    query = live_candidates(*columns)
    wanted = _image_condition(conn, flt)
    if wanted is not None:
        query = query.where(or_(_c.sha256.in_(wanted), _c.other.in_(wanted)))
    return query


def _image_condition(conn: Connection, flt: Filter) -> Any:
    """The images that pass the filter's label, review state and flag (None: no such filter)."""
    if flt.label is None and flt.review is None and flt.flag is None:
        return None
    query = select(images.c.sha256)
    if flt.label is not None:
        label_id = find_label(conn, flt.label)
        query = query.where(images.c.label_id == (label_id if label_id is not None else -1))
    if flt.review is not None:
        query = query.where(images.c.review == flt.review)
    if flt.flag is not None:
        query = query.where(images.c.sha256.in_(select(quality_flags.c.sha256).where(quality_flags.c.flag == flt.flag)))
    return query


def count_candidates(conn: Connection, flt: Filter | None = None) -> int:
    """How many candidate pairs wait for a decision (in the filter)."""
    return int(conn.execute(_filtered(conn, flt or Filter("candidates"), func.count())).scalar_one())


def candidate_page(
    conn: Connection,
    flt: Filter | None = None,
    *,
    after: str | None = None,
    before: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> CandidatePage:
    """One page of candidate pairs, closest first (keyset paging on distance, sha256, other). Each pair lists
    the better keeper first (storage.keepers.keeper_order): `duplicate` keeps `a` and sets `b` aside."""
    limit = max(1, min(int(limit), MAX_PAGE))
    flt = flt or Filter("candidates")
    backwards = before is not None and after is None
    cursor = before if backwards else after
    query = _filtered(conn, flt, *duplicate_candidates.c)
    if cursor is not None:
        values = decode_cursor(cursor, len(_KEYS))
        keys, here = tuple_(*_KEYS), tuple_(*values)
        query = query.where(keys < here if backwards else keys > here)
    order = [key.desc() for key in _KEYS] if backwards else list(_KEYS)
    rows = [dict(row._mapping) for row in conn.execute(query.order_by(*order).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    shas = sorted({row["sha256"] for row in rows} | {row["other"] for row in rows})
    facts = _image_facts(conn, shas)
    items = [_pair(row, facts) for row in rows]
    first = [rows[0][key.name] for key in _KEYS] if rows else None
    last = [rows[-1][key.name] for key in _KEYS] if rows else None
    has_next = more if not backwards else True
    has_prev = (cursor is not None) if not backwards else more
    return CandidatePage(
        items=items,
        next_cursor=encode_cursor(last) if last is not None and has_next else None,
        prev_cursor=encode_cursor(first) if first is not None and has_prev else None,
        images=facts,
    )


def _pair(row: dict[str, Any], facts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    newer, older = row["sha256"], row["other"]
    a, b = sorted((older, newer), key=lambda sha: facts[sha]["order"])
    return {
        "a": a,
        "b": b,
        "newer": newer,
        "distance": row["distance"],
        "matched": row["matched"],
        "score": row["score"],
        "reason": row["reason"],
        "found_at": row["found_at"].isoformat() if row["found_at"] else None,
    }


def _image_facts(conn: Connection, shas: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What a pair's cards show, and each image's rank as a keeper."""
    if not shas:
        return {}
    c = images.c
    query = (
        select(
            c.sha256,
            c.ext,
            c.width,
            c.height,
            c.size_bytes,
            c.format,
            c.mode,
            c.added_at,
            c.content_pixels,
            c.review,
            c.duplicate_of,
            c.label_id,
            labels.c.name.label("label"),
        )
        .select_from(images.outerjoin(labels, c.label_id == labels.c.id))
        .where(c.sha256.in_(list(shas)))
    )
    keepers = set(
        conn.execute(
            select(duplicate_decisions.c.sha_a).where(
                duplicate_decisions.c.kind == "keeper",
                duplicate_decisions.c.revoked_at.is_(None),
                duplicate_decisions.c.sha_a.in_(list(shas)),
            )
        ).scalars()
    )
    first_source: dict[str, str] = {}
    for sha, uri in conn.execute(
        select(sources.c.sha256, sources.c.uri).where(sources.c.sha256.in_(list(shas))).order_by(sources.c.id)
    ):
        first_source.setdefault(sha, uri)
    found: dict[str, dict[str, Any]] = {}
    for row in conn.execute(query):
        info = ImageInfo(
            row.sha256,
            row.width,
            row.height,
            row.size_bytes,
            row.format,
            row.mode,
            row.label is not None,
            row.added_at,
            row.content_pixels,
        )
        found[row.sha256] = {
            "sha256": row.sha256,
            "ext": row.ext,
            "width": row.width,
            "height": row.height,
            "format": row.format,
            "mode": row.mode,
            "size_bytes": row.size_bytes,
            "review": row.review,
            "label": row.label,
            "duplicate_of": row.duplicate_of,
            "chosen_keeper": row.sha256 in keepers,
            "source": first_source.get(row.sha256),
            "order": keeper_order(info, chosen=row.sha256 in keepers),
        }
    return found


def image_near_duplicates(conn: Connection, sha256: str) -> dict[str, Any]:
    """The detail view's near-duplicate facts: the image's candidate pairs waiting for review (with the other
    image) and every decision about it, revoked ones included (oldest first)."""
    rows = conn.execute(
        live_candidates(*duplicate_candidates.c)
        .where(or_(_c.sha256 == sha256, _c.other == sha256))
        .order_by(*_KEYS)
        .limit(IMAGE_PAIRS_LIMIT)
    ).all()
    pairs = [
        {
            "other": row.other if row.sha256 == sha256 else row.sha256,
            "newer": row.sha256 == sha256,
            "distance": row.distance,
            "matched": row.matched,
            "score": row.score,
            "reason": row.reason,
        }
        for row in rows
    ]
    return {"candidates": pairs, "decisions": decision_history(conn, sha256)}


# --- what a decision touches ----------------------------------------------------------------------------


def involved_marks(conn: Connection, shas: Sequence[str]) -> dict[str, str | None]:
    """duplicate_of of the images a decision about `shas` can touch: the images, their keepers, and every member
    of those groups (choosing a keeper re-points a whole group)."""
    c = images.c
    tops = {sha for sha in shas if sha}
    keepers = select(c.duplicate_of).where(c.sha256.in_(list(tops)), c.duplicate_of.isnot(None))
    tops |= set(conn.execute(keepers).scalars())
    query = select(c.sha256, c.duplicate_of).where(or_(c.sha256.in_(list(tops)), c.duplicate_of.in_(list(tops))))
    return {sha: keeper for sha, keeper in conn.execute(query)}


def decisions_in_force(conn: Connection, a: str, b: str | None) -> list[tuple[str, str, str | None]]:
    t = duplicate_decisions.c
    found: list[tuple[str, str, str | None]] = []
    if b is not None:
        low, high = sorted((a, b))
        query = select(t.kind, t.sha_a, t.sha_b).where(
            t.kind.in_(PAIR_KINDS), t.sha_a == low, t.sha_b == high, t.revoked_at.is_(None)
        )
        found += [(kind, x, y) for kind, x, y in conn.execute(query)]
    query = select(t.kind, t.sha_a, t.sha_b).where(t.kind == "keeper", t.sha_a == a, t.revoked_at.is_(None))
    found += [(kind, x, y) for kind, x, y in conn.execute(query).all()[:1]]
    return found


def candidate_rows(conn: Connection, a: str, b: str | None) -> list[Candidate]:
    if b is None:
        return []
    query = select(duplicate_candidates).where(
        or_((_c.sha256 == a) & (_c.other == b), (_c.sha256 == b) & (_c.other == a))
    )
    return [Candidate(r.sha256, r.other, r.distance, r.matched, r.score, r.reason) for r in conn.execute(query)]
