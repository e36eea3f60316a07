"""Filtered, keyset-paged grid queries over the catalog: the review app's (curate.review) only read path for
lists of images.

Keyset paging (WHERE key > cursor ORDER BY key LIMIT n) keeps every page as cheap as the first on a large
catalog, where OFFSET paging would scan and throw away all the rows before the page.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, CompoundSelect, Connection, Select, and_, case, func, or_, select, tuple_, union

from storage.catalog.audits import latest_audit
from storage.catalog.labels import label_id as find_label
from storage.catalog.predictions import latest_prediction_run
from storage.catalog.quality import flag_counts
from storage.catalog.schema import (
    audit_suspects,
    duplicate_candidates,
    duplicate_decisions,
    images,
    label_events,
    labels,
    predictions,
    quality_flags,
    review_events,
    sources,
)

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "REVIEW_STATES",
    "SHA_RE",
    "VIEWS",
    "WANTED_INDEXES",
    "Filter",
    "LegendEntry",
    "Page",
    "catalog_version",
    "count_changes",
    "count_view",
    "cursor_before",
    "decode_cursor",
    "digit_key",
    "encode_cursor",
    "flag_counts",
    "grid_page",
    "image_states",
    "label_names",
    "latest_run",
    "legend",
    "live_candidates",
    "neighbours",
    "view_shas",
]

VIEWS = (
    "all", "unlabelled", "candidates", "duplicates", "conflicts", "flagged", "misclassified", "lowconf", "suspects",
)  # fmt: skip
MODEL_VIEWS = ("misclassified", "lowconf")
AUDIT_VIEWS = ("suspects",)  # suspected label errors of the newest `train audit`, most likely first
GROUP_VIEWS = ("duplicates", "conflicts")
REVIEW_STATES = ("unreviewed", "accepted", "rejected")
DEFAULT_PAGE = 200
MAX_PAGE = 500
SHA_RE = re.compile(r"[0-9a-f]{64}")

# Indexes that keep every view's keyset page cheap at 100,000+ images (bench/review.py measures with and
# without them). Portable DDL for SQLite and PostgreSQL; the catalog schema should own them.
WANTED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_images_label_sha ON images (label_id, sha256)",
    "CREATE INDEX IF NOT EXISTS ix_images_duplicate_of ON images (duplicate_of, sha256)",
    "CREATE INDEX IF NOT EXISTS ix_quality_flags_flag_sha ON quality_flags (flag, sha256)",
    "CREATE INDEX IF NOT EXISTS ix_sources_sha_label ON sources (sha256, label)",
)


@dataclass(frozen=True)
class Filter:
    """What the grid shows: a view plus optional label, review state and quality flag."""

    view: str = "all"
    label: str | None = None
    review: str | None = None
    flag: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Filter:
        """Parse query parameters; unknown values raise ValueError (the app answers 400)."""
        view = params.get("view") or "all"
        review: str | None
        if view == "unreviewed":  # a shorthand the sidebar uses
            view, review = "all", "unreviewed"
        else:
            review = params.get("review") or None
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}")
        if review is not None and review not in REVIEW_STATES:
            raise ValueError(f"unknown review state {review!r}")
        label = params.get("label") or None
        flag = params.get("flag") or None
        if label is not None and len(label) > 200:
            raise ValueError("label too long")
        if flag is not None and len(flag) > 32:
            raise ValueError("flag too long")
        return cls(view=view, label=None if view == "unlabelled" else label, review=review, flag=flag)

    def to_params(self) -> dict[str, str]:
        found = {"view": self.view, "label": self.label, "review": self.review, "flag": self.flag}
        return {k: v for k, v in found.items() if v and not (k == "view" and v == "all")}

    def query_string(self, **extra: str | None) -> str:
        params = {**self.to_params(), **{k: v for k, v in extra.items() if v is not None}}
        return urlencode(params)

    def with_(self, **changes: Any) -> Filter:
        return replace(self, **changes)


@dataclass
class Page:
    """One page of the grid: card rows, cursors to the neighbouring pages, and the view's size."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    prev_cursor: str | None
    run_id: int | None
    total: int | None = None  # the view's size, when the query found it on the way (first page of group views)
    audit_id: int | None = None  # the audit whose suspects the page shows (the suspects view)
    flags: dict[str, list[str]] = field(default_factory=dict)  # sha256 -> quality flags


@dataclass(frozen=True)
class LegendEntry:
    name: str
    count: int
    key: int | None  # the digit that assigns it (1-9, then 0 for the tenth), None beyond the tenth
    id: int  # stable across renames and new labels: the page derives the label's colour from it


# --- cursors ---------------------------------------------------------------------------------------------------


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> list[Any]:
    """The key values a cursor carries; ValueError for anything that is not a list of scalars of the width."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except Exception as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(values, list) or len(values) != width or not all(map(_cursor_scalar, values)):
        raise ValueError("invalid cursor")
    return values


def _cursor_scalar(value: Any) -> bool:
    """A value a database can compare: a string, a finite float, or an integer in SQL's 64-bit range (a larger
    one would overflow the driver: a 500 instead of a 400)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and "\x00" not in value  # PostgreSQL text cannot hold NUL


# --- the query ------------------------------------------------------------------------------------------------


def latest_run(conn: Connection) -> int | None:
    """The newest training run with predictions (the model views show its mistakes)."""
    return latest_prediction_run(conn)


def _group_key() -> ColumnElement[Any]:
    return func.coalesce(images.c.duplicate_of, images.c.sha256)


def _sort_keys(view: str) -> list[ColumnElement[Any]]:
    """Ascending sort keys, the last one unique, so that a tuple of them is a keyset cursor."""
    if view in MODEL_VIEWS:
        return [-func.coalesce(predictions.c.loss, -1.0), predictions.c.confidence, images.c.sha256]
    if view in AUDIT_VIEWS:
        return [-audit_suspects.c.score, images.c.sha256]
    if view in GROUP_VIEWS:
        keeper_first = case((images.c.duplicate_of.is_(None), 0), else_=1)
        return [_group_key(), keeper_first, images.c.sha256]
    return [images.c.sha256]


def _group_members() -> CompoundSelect[Any]:
    """Images in an applied near-duplicate group: marked duplicates and the keepers they point to."""
    marked = images.alias("marked")
    return union(
        select(marked.c.sha256).where(marked.c.duplicate_of.isnot(None)),
        select(marked.c.duplicate_of).where(marked.c.duplicate_of.isnot(None)),
    )


def live_candidates(*columns: Any) -> Select[Any]:
    """Near-duplicate candidates waiting for a person: both images whole, the newer one not set aside (as
    storage.catalog.duplicates.candidates lists them). Decided pairs are gone: a decision clears the row."""
    newer, older = images.alias("newer"), images.alias("older")
    return (
        select(*(columns or (duplicate_candidates,)))
        .select_from(
            duplicate_candidates.join(newer, newer.c.sha256 == duplicate_candidates.c.sha256).join(
                older, older.c.sha256 == duplicate_candidates.c.other
            )
        )
        .where(newer.c.duplicate_of.is_(None), newer.c.status == "ok", older.c.status == "ok")
    )


def _candidate_members() -> CompoundSelect[Any]:
    """Images in a near-duplicate candidate pair that waits for review (either side)."""
    return union(
        live_candidates(duplicate_candidates.c.sha256.label("sha256")),
        live_candidates(duplicate_candidates.c.other.label("sha256")),
    )


def _conflict_members() -> CompoundSelect[Any]:
    """Label conflicts: every member of a group whose members carry different labels, and images whose
    sources suggested different labels. One IN over a union lets the database look the few rows up by key."""
    members = _group_members().subquery("members")
    member = images.alias("member")
    group = func.coalesce(member.c.duplicate_of, member.c.sha256)
    groups = (
        select(group.label("g"))
        .where(member.c.sha256.in_(select(members.c.sha256)))
        .group_by(group)
        .having(func.count(func.distinct(member.c.label_id)) > 1)
        .cte("conflict_groups")
    )
    duplicate = images.alias("duplicate")
    return union(
        select(sources.c.sha256)
        .where(sources.c.label.isnot(None))
        .group_by(sources.c.sha256)
        .having(func.count(func.distinct(sources.c.label)) > 1),
        select(groups.c.g),
        select(duplicate.c.sha256).where(duplicate.c.duplicate_of.in_(select(groups.c.g))),
    )


def _filtered(
    conn: Connection, flt: Filter, run_id: int | None, columns: Sequence[Any], audit_id: int | None = None
) -> Select[Any] | None:
    """The filtered SELECT (no order, no limit), or None when the view is empty by definition."""
    query = select(*columns).where(images.c.status == "ok")
    if flt.view in MODEL_VIEWS:
        if run_id is None:
            return None
        query = query.select_from(
            images.join(predictions, and_(predictions.c.sha256 == images.c.sha256, predictions.c.run_id == run_id))
        )
        if flt.view == "misclassified":
            query = query.where(
                predictions.c.true_label.isnot(None), predictions.c.predicted_label != predictions.c.true_label
            )
        else:
            query = query.where(
                predictions.c.needs_review.is_(True),
                or_(predictions.c.true_label.is_(None), predictions.c.predicted_label == predictions.c.true_label),
            )
    if flt.view in AUDIT_VIEWS:
        if audit_id is None:
            return None
        current = labels.alias("current")
        query = query.select_from(
            images.join(
                audit_suspects, and_(audit_suspects.c.sha256 == images.c.sha256, audit_suspects.c.run_id == audit_id)
            ).join(current, current.c.id == images.c.label_id)
        ).where(  # still carrying the label the audit doubted, and not rejected since (as `curate labels --suspects`)
            current.c.name == audit_suspects.c.label, images.c.review != "rejected"
        )
    if flt.view == "unlabelled":
        query = query.where(images.c.label_id.is_(None))
    elif flt.label is not None:
        label_id = find_label(conn, flt.label)
        if label_id is None:
            return None
        query = query.where(images.c.label_id == label_id)
    if flt.review is not None:
        query = query.where(images.c.review == flt.review)
    if flt.view == "duplicates":
        query = query.where(images.c.sha256.in_(_group_members()))
    elif flt.view == "conflicts":
        query = query.where(images.c.sha256.in_(_conflict_members()))
    elif flt.view == "candidates":
        query = query.where(images.c.sha256.in_(_candidate_members()))
    if flt.view == "flagged" or flt.flag:
        flagged = select(quality_flags.c.sha256)
        if flt.flag:
            flagged = flagged.where(quality_flags.c.flag == flt.flag)
        query = query.where(images.c.sha256.in_(flagged))
    return query


_CARD_COLUMNS = (
    images.c.sha256,
    images.c.ext,
    images.c.width,
    images.c.height,
    images.c.label_id,
    images.c.review,
    images.c.duplicate_of,
)
_MODEL_COLUMNS = (
    predictions.c.predicted_label,
    predictions.c.true_label,
    predictions.c.confidence,
    predictions.c.loss,
)
_AUDIT_COLUMNS = (audit_suspects.c.suggested, audit_suspects.c.score, audit_suspects.c.sources)


def _audit_of(conn: Connection, flt: Filter) -> int | None:
    return latest_audit(conn) if flt.view in AUDIT_VIEWS else None


def _view_query(conn: Connection, flt: Filter, columns: Sequence[Any]) -> Select[Any] | None:
    """The filtered SELECT of `columns` for the view's newest training run or audit (see _filtered)."""
    run_id = latest_run(conn) if flt.view in MODEL_VIEWS else None
    return _filtered(conn, flt, run_id, columns, _audit_of(conn, flt))


def grid_page(
    conn: Connection,
    flt: Filter,
    *,
    after: str | None = None,
    before: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> Page:
    """One page of cards after (or before) a cursor; cursors come from a previous Page."""
    limit = max(1, min(int(limit), MAX_PAGE))
    run_id = latest_run(conn) if flt.view in MODEL_VIEWS else None
    audit_id = _audit_of(conn, flt)
    keys = _sort_keys(flt.view)
    columns = [*_CARD_COLUMNS, *(_MODEL_COLUMNS if flt.view in MODEL_VIEWS else ())]
    columns += _AUDIT_COLUMNS if flt.view in AUDIT_VIEWS else ()
    columns += [key.label(f"k{i}") for i, key in enumerate(keys)]
    backwards = before is not None and after is None
    cursor = before if backwards else after
    counted = cursor is None and flt.view in GROUP_VIEWS
    if counted:
        # Group views are small sets that are costly to find: the first page counts them in the same pass.
        # Elsewhere a window count would materialise the whole view, and a separate count is cheaper.
        columns.append(func.count().over().label("total"))
    query = _filtered(conn, flt, run_id, columns, audit_id)
    if query is None:
        return Page([], None, None, run_id, total=0 if counted else None, audit_id=audit_id)
    if cursor is not None:
        values = decode_cursor(cursor, len(keys))
        query = query.where(_after(keys, values, backwards=backwards))
    order = [key.desc() for key in keys] if backwards else list(keys)
    rows = [dict(row._mapping) for row in conn.execute(query.order_by(*order).limit(limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    names = label_names(conn)
    for row in rows:
        row["label"] = names.get(row["label_id"])
    first_key = [rows[0][f"k{i}"] for i in range(len(keys))] if rows else None
    last_key = [rows[-1][f"k{i}"] for i in range(len(keys))] if rows else None
    has_next = more if not backwards else True
    has_prev = (cursor is not None) if not backwards else more
    page = Page(
        items=rows,
        next_cursor=encode_cursor(last_key) if last_key is not None and has_next else None,
        prev_cursor=encode_cursor(first_key) if first_key is not None and has_prev else None,
        run_id=run_id,
        total=(int(rows[0]["total"]) if rows else 0) if counted else None,
        audit_id=audit_id,
    )
    for row in rows:
        row.pop("total", None)
    page.flags = _flags_of(conn, [row["sha256"] for row in rows])
    return page


def _after(keys: Sequence[ColumnElement[Any]], values: Sequence[Any], *, backwards: bool) -> ColumnElement[bool]:
    if len(keys) == 1:
        return cast(ColumnElement[bool], keys[0] < values[0] if backwards else keys[0] > values[0])
    left, right = tuple_(*keys), tuple_(*values)
    return left < right if backwards else left > right


def _flags_of(conn: Connection, shas: Sequence[str]) -> dict[str, list[str]]:
    if not shas:
        return {}
    found: dict[str, list[str]] = {}
    query = select(quality_flags.c.sha256, quality_flags.c.flag).where(quality_flags.c.sha256.in_(shas))
    for sha, flag in conn.execute(query.order_by(quality_flags.c.sha256, quality_flags.c.flag)):
        found.setdefault(sha, []).append(flag)
    return found


def count_view(conn: Connection, flt: Filter) -> int:
    """How many images the whole filtered view holds (what a bulk action on the view would touch)."""
    query = _view_query(conn, flt, [func.count()])
    return 0 if query is None else int(conn.execute(query).scalar_one())


def view_shas(conn: Connection, flt: Filter) -> Iterator[str]:
    """Every sha256 of the filtered view, in grid order (bulk actions on the whole view)."""
    query = _view_query(conn, flt, [images.c.sha256])
    if query is not None:
        yield from conn.execute(query.order_by(*_sort_keys(flt.view))).scalars()


REVIEW_AFTER = {"accept": "accepted", "reject": "rejected", "unreview": "unreviewed"}


def count_changes(conn: Connection, flt: Filter, kind: str, label: str | None = None) -> int:
    """How many images of the filtered view an action on the whole view would change (the images that do not
    carry the label or review state already): what the review page says before a bulk Apply."""
    query = _view_query(conn, flt, [func.count()])
    if query is None:
        return 0
    if kind == "label":
        target = find_label(conn, label) if label else None
        if target is not None:
            query = query.where(or_(images.c.label_id.is_(None), images.c.label_id != target))
    elif kind == "clear":
        query = query.where(images.c.label_id.isnot(None))
    elif kind in REVIEW_AFTER:
        query = query.where(images.c.review != REVIEW_AFTER[kind])
    else:
        raise ValueError(f"unknown action {kind!r}")
    return int(conn.execute(query).scalar_one())


def cursor_before(conn: Connection, flt: Filter, sha: str) -> str | None:
    """The cursor of the image just before `sha` in the filtered view, so that the page after it starts with
    `sha` (the grid page to return to from an image); None when `sha` is first or not in the view."""
    prev, _ = neighbours(conn, flt, sha)
    if prev is None:
        return None
    keys = _sort_keys(flt.view)
    query = _view_query(conn, flt, [*(k.label(f"k{i}") for i, k in enumerate(keys))])
    assert query is not None  # prev was found in it
    row = conn.execute(query.where(images.c.sha256 == prev)).first()
    return None if row is None else encode_cursor(list(row))


def neighbours(conn: Connection, flt: Filter, sha: str) -> tuple[str | None, str | None]:
    """The images before and after `sha` in the filtered view (the detail view's previous/next)."""
    keys = _sort_keys(flt.view)
    query = _view_query(conn, flt, [*(k.label(f"k{i}") for i, k in enumerate(keys))])
    if query is None:
        return None, None
    here = conn.execute(query.where(images.c.sha256 == sha)).first()
    if here is None:
        return None, None
    values = list(here)
    base = _view_query(conn, flt, [images.c.sha256])
    assert base is not None
    prev = conn.execute(
        base.where(_after(keys, values, backwards=True)).order_by(*(k.desc() for k in keys)).limit(1)
    ).scalar()
    nxt = conn.execute(base.where(_after(keys, values, backwards=False)).order_by(*keys).limit(1)).scalar()
    return prev, nxt


# --- legend, counts, states, version ---------------------------------------------------------------------------


def label_names(conn: Connection) -> dict[int, str]:
    return {row.id: row.name for row in conn.execute(select(labels.c.id, labels.c.name))}


def digit_key(position: int) -> int | None:
    """The digit key of the n-th label (0-based) in creation order: 1-9, then 0 for the tenth, then none."""
    return (position + 1) % 10 if position < 10 else None


def legend(conn: Connection) -> list[LegendEntry]:
    """Every label in creation order with its image count; the first ten get digit keys 1-9 and 0.

    Creation order (the labels table's id, which a rename keeps) means a label's key never changes when
    another label is added, whatever its name.
    Counts follow `curate labels` (storage.catalog.label_counts: images that are whole, not rejected and not
    duplicates) but come from one grouped table scan: walking the label or duplicate index instead costs a row
    lookup per image, several times slower. The coalesce() calls keep SQLite's planner off those indexes."""
    names = label_names(conn)
    counted = (
        select(func.coalesce(images.c.label_id, 0).label("label_key"), func.count())
        .where(
            images.c.status == "ok",
            images.c.review != "rejected",
            func.coalesce(images.c.duplicate_of, "") == "",
        )
        .group_by("label_key")  # by name: PostgreSQL sees two bound zeros as two different expressions
    )
    counts = {int(label_id): int(count) for label_id, count in conn.execute(counted)}
    ordered = sorted(names.items())
    return [
        LegendEntry(name, counts.get(label_id, 0), digit_key(i), label_id) for i, (label_id, name) in enumerate(ordered)
    ]


def image_states(conn: Connection, shas: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Current label and review state of some images (what cards show), for refreshing open pages."""
    found: dict[str, dict[str, Any]] = {}
    names = label_names(conn)
    wanted = [sha for sha in shas if SHA_RE.fullmatch(sha)]
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = select(images.c.sha256, images.c.label_id, images.c.review).where(images.c.sha256.in_(chunk))
        for sha, label_id, review in conn.execute(query):
            found[sha] = {"label": names.get(label_id), "review": review}
    return found


def catalog_version(conn: Connection) -> str:
    """A cheap token that changes with every label, review or near-duplicate decision, from any process (max()
    lookups, and a count of the few revoked decisions: undoing a decision only stamps its row)."""
    last_label = conn.execute(select(func.max(label_events.c.id))).scalar() or 0
    last_review = conn.execute(select(func.max(review_events.c.id))).scalar() or 0
    audit = latest_audit(conn) or 0  # a new audit changes the suspects view
    decided = conn.execute(
        select(func.max(duplicate_decisions.c.id), func.count(duplicate_decisions.c.revoked_at))
    ).one()
    return f"{last_label}.{last_review}.{decided[0] or 0}.{decided[1] or 0}.{audit}"
