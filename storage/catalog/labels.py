"""Label management with history: every change writes a label_events row (who, when, before, after).

**The label rule** (`normalize_label`, used by every writer: the CLI, the review API, ingest from folders, CSV
and URL lists, scraping): a label is stored NFC-normalised, with surrounding white space and invisible format
characters (zero-width spaces and joiners, bidi marks and overrides, the BOM) removed; it must then be 1-200
UTF-8 bytes, hold no control characters (NUL, tabs, line breaks, C1 codes), no line or paragraph separators, no
`/` or `\\`, and be neither `.` nor `..` (labels become folder names on export). Two names that are equal under
case-folding (`Cat`, `cat`, `CAT`; `ﬁsh`, `fish`) are one label: the first one stored keeps its spelling and
later writers of the other spellings get it (`label_key` is that comparison).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import Connection, func, select

from storage.catalog.schema import images, label_events, labels
from storage.catalog.sql import insert_ignore, now
from storage.errors import GleanerError

__all__ = [
    "MAX_LABEL_BYTES",
    "InvalidLabel",
    "add_label",
    "delete_label",
    "ensure_label",
    "label_counts",
    "label_event",
    "label_history",
    "label_id",
    "label_key",
    "label_name",
    "merge_labels",
    "normalize_label",
    "rename_label",
    "set_label",
    "stored_label",
    "unlabelled_count",
]


MAX_LABEL_BYTES: Final = 200
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls, lone surrogates, line/para breaks
_REMOVED_CATEGORIES: Final = frozenset({"Cf"})  # invisible format characters: zero-width, bidi, BOM, soft hyphen


class InvalidLabel(GleanerError, ValueError):
    """A label name that the label rule cannot make valid; the message says which part of the rule it breaks."""


def normalize_label(name: str) -> str:
    """The stored form of a label name (see the module docstring), or InvalidLabel. Pure and idempotent:
    collectors call it per item, so that one bad label rejects that item only."""
    if not isinstance(name, str):
        raise InvalidLabel(f"invalid label name {name!r}: not text")
    text = unicodedata.normalize("NFC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _REMOVED_CATEGORIES).strip()
    text = unicodedata.normalize("NFC", text)  # removing a joiner can leave a composable pair
    shown = repr(name) if len(name) <= 80 else repr(name[:80]) + "..."
    if not text:
        raise InvalidLabel(f"invalid label name {shown}: empty (or only invisible characters)")
    bad = next((ch for ch in text if unicodedata.category(ch) in _REFUSED_CATEGORIES), None)
    if bad is not None:
        raise InvalidLabel(f"invalid label name {shown}: control character U+{ord(bad):04X} is not allowed")
    if "/" in text or "\\" in text:
        raise InvalidLabel(f"invalid label name {shown}: no slashes (labels become folder names)")
    if text in (".", ".."):
        raise InvalidLabel(f"invalid label name {shown}: '.' and '..' are not label names")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_LABEL_BYTES:
        raise InvalidLabel(f"invalid label name {shown}: {size} UTF-8 bytes, at most {MAX_LABEL_BYTES}")
    return text


def label_key(name: str) -> str:
    """What makes two label names the same label: NFC after case-folding (`Cat` = `cat`, `ﬁsh` = `fish`)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def _check_name(name: str) -> str:
    return normalize_label(name)


_KEYS_CACHE: Final = "gleaner_label_keys"


def _keys(conn: Connection) -> dict[str, int]:
    """label_key → id (the oldest label of a key), built once per transaction and kept up to date by the
    writers here, so that adding thousands of labels stays linear."""
    transaction = conn.get_transaction()
    cached = conn.info.get(_KEYS_CACHE)
    if cached is not None and transaction is not None and cached[0] is transaction:
        known: dict[str, int] = cached[1]
        return known
    keys: dict[str, int] = {}
    for label, stored in conn.execute(select(labels.c.id, labels.c.name).order_by(labels.c.id)):
        keys.setdefault(label_key(stored), int(label))
    conn.info[_KEYS_CACHE] = (transaction, keys)
    return keys


def _forget_keys(conn: Connection) -> None:
    conn.info.pop(_KEYS_CACHE, None)


def label_id(conn: Connection, name: str) -> int | None:
    """The id of the label named `name`, or of the label equal to it under the label rule (`CAT` finds `cat`)."""
    found = conn.execute(select(labels.c.id).where(labels.c.name == name)).scalar()
    if found is not None:
        return int(found)
    try:
        key = label_key(normalize_label(name))
    except InvalidLabel:
        return None
    return _keys(conn).get(key)


def _created(conn: Connection, name: str) -> None:
    """Keep the transaction's key cache in step with a label just inserted."""
    cached = conn.info.get(_KEYS_CACHE)
    if cached is None:
        return
    found = conn.execute(select(labels.c.id).where(labels.c.name == name)).scalar()
    if found is not None:
        cached[1].setdefault(label_key(name), int(found))


def label_name(conn: Connection, label: int) -> str:
    """The stored spelling of a label id."""
    return str(conn.execute(select(labels.c.name).where(labels.c.id == label)).scalar_one())


def stored_label(conn: Connection, name: str) -> str | None:
    """The stored spelling of the label `name` means under the label rule (`CAT` → `cat`), None if none."""
    found = label_id(conn, name)
    return None if found is None else label_name(conn, found)


def ensure_label(conn: Connection, name: str) -> int:
    """The id of a label, creating it when needed (safe when several processes race)."""
    name = _check_name(name)
    found = label_id(conn, name)
    if found is not None:
        return found
    insert_ignore(conn, labels, {"name": name, "created_at": now()}, ["name"])
    _created(conn, name)
    found = label_id(conn, name)
    assert found is not None
    return found


def label_event(
    conn: Connection,
    *,
    action: str,
    before: str | None,
    after: str | None,
    origin: str,
    actor: str,
    sha256: str | None = None,
) -> None:
    conn.execute(
        label_events.insert().values(
            sha256=sha256, action=action, before=before, after=after, origin=origin, actor=actor, at=now()
        )
    )


def add_label(conn: Connection, name: str, *, actor: str, origin: str = "cli") -> bool:
    """Create an empty label; False when it (or a spelling of it under the label rule) already existed."""
    name = _check_name(name)
    if label_id(conn, name) is not None:
        return False
    created = insert_ignore(conn, labels, {"name": name, "created_at": now()}, ["name"])
    _created(conn, name)
    if created:
        label_event(conn, action="add", before=None, after=name, origin=origin, actor=actor)
    return created


def _require(conn: Connection, name: str) -> int:
    found = label_id(conn, name)
    if found is None:
        raise GleanerError(f"no label named {name!r}")
    return found


def rename_label(conn: Connection, old: str, new: str, *, actor: str, origin: str = "cli") -> int:
    """Rename a label in place (its images follow); returns the number of images carrying it."""
    old_id = _require(conn, old)
    old = label_name(conn, old_id)
    new = _check_name(new)
    taken = label_id(conn, new)
    if taken is not None and taken != old_id:  # a new spelling of the same label (`cat` → `Cat`) is a rename
        raise GleanerError(f"label {new!r} already exists; use `curate label merge {old} --into {new}`")
    if new == old:
        raise GleanerError(f"label {old!r} is already named {new!r}")
    conn.execute(labels.update().where(labels.c.id == old_id).values(name=new))
    _forget_keys(conn)
    label_event(conn, action="rename", before=old, after=new, origin=origin, actor=actor)
    return conn.execute(select(func.count()).where(images.c.label_id == old_id)).scalar_one()


def merge_labels(conn: Connection, sources: Iterable[str], into: str, *, actor: str, origin: str = "cli") -> int:
    """Move every image of the source labels to `into` (created if needed) and drop the sources.

    `into` may be among the sources (`merge tote bag --into bag`), but merging a label only into itself is refused:
    it would do nothing while saying it merged."""
    sources = list(sources)
    same = label_key(normalize_label(into))
    if sources and all(_same_label(name, same) for name in sources):
        raise GleanerError(f"cannot merge {into!r} into itself: name another label to merge into {into!r}")
    target_id = ensure_label(conn, into)
    into = label_name(conn, target_id)
    moved = 0
    for name in sources:
        source_id = _require(conn, name)
        if source_id == target_id:
            continue
        moved += _retire(conn, source_id, (target_id, into), ("set", "merge"), origin=origin, actor=actor)
    return moved


def _same_label(name: str, key: str) -> bool:
    try:
        return label_key(normalize_label(name)) == key
    except InvalidLabel:
        return False


def delete_label(conn: Connection, name: str, *, actor: str, origin: str = "cli") -> int:
    """Remove a label; its images become unlabelled (one `clear` event each). Returns how many images it had."""
    return _retire(conn, _require(conn, name), (None, None), ("clear", "delete"), origin=origin, actor=actor)


def _retire(
    conn: Connection,
    label_id: int,
    successor: tuple[int | None, str | None],
    actions: tuple[str, str],
    *,
    origin: str,
    actor: str,
) -> int:
    """Move a label's images to `successor` (id, name; None: unlabelled), one `actions[0]` event each, then delete
    the label with one `actions[1]` event: what merge and delete share. Returns how many images it had."""
    name = label_name(conn, label_id)
    successor_id, successor_name = successor
    image_action, label_action = actions
    shas = conn.execute(select(images.c.sha256).where(images.c.label_id == label_id)).scalars().all()
    for sha in shas:
        label_event(
            conn, sha256=sha, action=image_action, before=name, after=successor_name, origin=origin, actor=actor
        )
    conn.execute(images.update().where(images.c.label_id == label_id).values(label_id=successor_id, updated_at=now()))
    conn.execute(labels.delete().where(labels.c.id == label_id))
    _forget_keys(conn)
    label_event(conn, action=label_action, before=name, after=successor_name, origin=origin, actor=actor)
    return len(shas)


def set_label(
    conn: Connection,
    shas: Iterable[str],
    name: str | None,
    *,
    actor: str,
    origin: str = "cli",
    only_if_unlabelled: bool = False,
) -> int:
    """Set (or clear, with None) the current label of images; returns how many changed."""
    new_id = ensure_label(conn, name) if name is not None else None
    if new_id is not None:
        name = label_name(conn, new_id)  # the stored spelling, for the history
    changed = 0
    for sha in shas:
        row = conn.execute(
            select(images.c.label_id, labels.c.name)
            .select_from(images.outerjoin(labels, images.c.label_id == labels.c.id))
            .where(images.c.sha256 == sha)
        ).first()
        if row is None:
            raise GleanerError(f"no image with sha256 {sha}")
        if row.label_id == new_id or (only_if_unlabelled and row.label_id is not None):
            continue
        conn.execute(images.update().where(images.c.sha256 == sha).values(label_id=new_id, updated_at=now()))
        label_event(
            conn, sha256=sha, action="set" if name else "clear", before=row.name, after=name, origin=origin, actor=actor
        )
        changed += 1
    return changed


def label_counts(conn: Connection, *, include_empty: bool = True) -> dict[str, int]:
    """Current labels of images that are not rejected, duplicates or missing: name → count."""
    counted = (
        select(labels.c.name, func.count(images.c.sha256))
        .select_from(
            labels.outerjoin(
                images,
                (images.c.label_id == labels.c.id)
                & (images.c.review != "rejected")
                & (images.c.status == "ok")
                & images.c.duplicate_of.is_(None),
            )
        )
        .group_by(labels.c.name)
        .order_by(labels.c.name)
    )
    result = {name: int(count) for name, count in conn.execute(counted)}
    return result if include_empty else {k: v for k, v in result.items() if v}


def unlabelled_count(conn: Connection) -> int:
    """Images without a label, counted as `label_counts` counts (not rejected, duplicates or missing)."""
    query = select(func.count()).where(
        images.c.label_id.is_(None),
        images.c.review != "rejected",
        images.c.status == "ok",
        images.c.duplicate_of.is_(None),
    )
    return int(conn.execute(query).scalar_one())


def label_history(conn: Connection, sha256: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest label events, for one image or for all."""
    query = select(label_events).order_by(label_events.c.id.desc()).limit(limit)
    if sha256:
        query = query.where(label_events.c.sha256 == sha256)
    return [dict(row._mapping) for row in conn.execute(query)]
