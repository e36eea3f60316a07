"""Near-duplicates in the review app: the Candidates view's keyset-paged pairs, an image's candidates and
decisions, and decisions (not duplicates, duplicate, keeper) that the session can undo.

Decisions go through curate.dedupe.clusters (which records them in duplicate_decisions with who and when). Undo
writes history too: it revokes the decision (a stamp, never a delete), re-records the decisions it had replaced,
puts the candidate row back and restores the duplicate marks it changed, leaving alone images that someone else
has changed since.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, or_, select, tuple_

from curate.dedupe.clusters import choose_keeper, confirm_duplicates, mark_not_duplicates
from curate.review.actions import Action, Change
from curate.review.queries import DEFAULT_PAGE, MAX_PAGE, Filter, decode_cursor, encode_cursor, live_candidates
from storage.catalog.duplicates import (
    PAIR_KINDS,
    Candidate,
    add_decision,
    decision_history,
    record_candidate,
    revoke_decisions,
    set_duplicate_marks,
)
from storage.catalog.schema import duplicate_candidates, duplicate_decisions, images, labels, quality_flags, sources
from storage.errors import GleanerError
from storage.keepers import ImageInfo, keeper_order
from storage.workspace import Workspace

__all__ = [
    "DEDUPE_ACTIONS",
    "CandidatePage",
    "DedupeAction",
    "candidate_page",
    "count_candidates",
    "dedupe_action",
    "image_near_duplicates",
    "undo_dedupe",
]

DEDUPE_ACTIONS = ("not_duplicate", "duplicate", "keeper")
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
        label_id = conn.execute(select(labels.c.id).where(labels.c.name == flt.label)).scalar()
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
        next_cursor=encode_cursor(last) if rows and has_next else None,
        prev_cursor=encode_cursor(first) if rows and has_prev else None,
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


# --- decisions that can be undone ------------------------------------------------------------------------------


@dataclass
class DedupeAction(Action):
    """A near-duplicate decision made in the app: the duplicate marks it changed (`changes`, field
    "duplicate_of"), the decisions it recorded and those in force it replaced, and the candidate rows it
    cleared; undo_dedupe reverses all of it."""

    recorded: list[tuple[str, str, str | None]] = field(default_factory=list)
    replaced: list[tuple[str, str, str | None]] = field(default_factory=list)
    cleared: list[Candidate] = field(default_factory=list)
    pair: tuple[str, str | None] = ("", None)


def _involved(conn: Connection, shas: Sequence[str]) -> dict[str, str | None]:
    """duplicate_of of the images a decision about `shas` can touch: the images, their keepers, and every member
    of those groups (choosing a keeper re-points a whole group)."""
    c = images.c
    tops = {sha for sha in shas if sha}
    keepers = select(c.duplicate_of).where(c.sha256.in_(list(tops)), c.duplicate_of.isnot(None))
    tops |= set(conn.execute(keepers).scalars())
    query = select(c.sha256, c.duplicate_of).where(or_(c.sha256.in_(list(tops)), c.duplicate_of.in_(list(tops))))
    return {sha: keeper for sha, keeper in conn.execute(query)}


def _in_force(conn: Connection, a: str, b: str | None) -> list[tuple[str, str, str | None]]:
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


def _candidate_rows(conn: Connection, a: str, b: str | None) -> list[Candidate]:
    if b is None:
        return []
    query = select(duplicate_candidates).where(
        or_((_c.sha256 == a) & (_c.other == b), (_c.sha256 == b) & (_c.other == a))
    )
    return [Candidate(r.sha256, r.other, r.distance, r.matched, r.score, r.reason) for r in conn.execute(query)]


def dedupe_action(workspace: Workspace, kind: str, a: str, b: str | None, *, actor: str) -> DedupeAction:
    """Record one decision about full sha256s a and b:

    - "not_duplicate" (a, b): never grouped again; neither stays set aside as the other's copy;
    - "duplicate" (a, b): b is a copy of a, set aside;
    - "keeper" (a[, b]): a is the keeper of its group; with b, b is also confirmed as a's copy (the Candidates
      view's "keep this one")."""
    if kind not in DEDUPE_ACTIONS:
        raise GleanerError(f"unknown near-duplicate decision {kind!r}")
    if kind in PAIR_KINDS and b is None:
        raise GleanerError(f"{kind} needs two images, a and b")
    if b == a:
        raise GleanerError("a decision about a pair needs two different images")
    with workspace.catalog.read() as conn:
        before = _involved(conn, [a, b] if b else [a])
        in_force = _in_force(conn, a, b)
        cleared = _candidate_rows(conn, a, b)
        if a not in before or (b is not None and b not in before):
            raise GleanerError("no such image in the catalog")
    action = DedupeAction(f"dedupe-{kind}", cleared=cleared, pair=(a, b))
    if kind == "not_duplicate":
        assert b is not None
        mark_not_duplicates(workspace, a, b, actor)
        action.recorded.append(("not_duplicate", *sorted((a, b))))
    elif kind == "duplicate":
        assert b is not None
        confirm_duplicates(workspace, a, b, actor)
        action.recorded.append(("duplicate", *sorted((a, b))))
    else:
        if b is not None:
            confirm_duplicates(workspace, a, b, actor)
            action.recorded.append(("duplicate", *sorted((a, b))))
        choose_keeper(workspace, a, actor)
        action.recorded.append(("keeper", a, None))
    action.replaced = [
        decision
        for decision in in_force
        if decision[0] in PAIR_KINDS or (decision[0] == "keeper" and ("keeper", a, None) in action.recorded)
    ]
    with workspace.catalog.read() as conn:
        after = _involved(conn, [a, b] if b else [a])
    for sha in sorted(set(before) | set(after)):
        if before.get(sha) != after.get(sha):
            action.changes.append(Change(sha, "duplicate_of", before.get(sha), after.get(sha)))
    if not action.changes and not action.recorded:
        return action
    if not action.changes:  # a decision with no mark to change is still a change undo can take back
        action.changes.append(Change(a, "decision", None, kind))
    return action


def undo_dedupe(workspace: Workspace, action: DedupeAction, *, actor: str) -> DedupeAction:
    """Take a decision back, as new history: revoke what it recorded (when still in force), re-record what it
    replaced, restore the candidate rows it cleared and the duplicate marks it set (where nobody changed them
    since)."""
    undone = DedupeAction(f"undo-{action.kind}", pair=action.pair)
    with workspace.catalog.write() as conn:
        revoked = 0
        for kind, a, b in action.recorded:
            revoked += revoke_decisions(conn, kind, a, b)
        if revoked:
            for kind, a, b in action.replaced:
                add_decision(conn, kind, a, b, actor)
            for candidate in action.cleared:
                record_candidate(conn, candidate)
        current = dict(
            conn.execute(
                select(images.c.sha256, images.c.duplicate_of).where(
                    images.c.sha256.in_([change.sha256 for change in action.changes])
                )
            ).all()
        )
        marks: dict[str, str | None] = {}
        for change in action.changes:
            if change.field == "duplicate_of" and change.sha256 in current and current[change.sha256] == change.after:
                marks[change.sha256] = change.before
                undone.changes.append(Change(change.sha256, "duplicate_of", change.after, change.before))
            elif change.field == "decision" and revoked:
                undone.changes.append(Change(change.sha256, "decision", change.after, None))
        set_duplicate_marks(conn, marks)
    return undone
