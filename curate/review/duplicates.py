"""Near-duplicate decisions in the review app (not duplicates, duplicate, keeper) that the session can undo.

Decisions go through curate.dedupe.clusters (which records them in duplicate_decisions with who and when). Undo
writes history too: it revokes the decision (a stamp, never a delete), re-records the decisions it had replaced,
puts the candidate row back and restores the duplicate marks it changed, leaving alone images that someone else
has changed since. The Candidates view's pages come from storage.catalog.review_pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from curate.dedupe.clusters import choose_keeper, confirm_duplicates, mark_not_duplicates
from curate.review.actions import Action, Change
from storage.catalog.duplicates import (
    PAIR_KINDS,
    Candidate,
    add_decision,
    duplicate_marks,
    record_candidate,
    revoke_decisions,
    set_duplicate_marks,
)
from storage.catalog.review_pairs import candidate_rows, decisions_in_force, involved_marks
from storage.errors import GleanerError
from storage.workspace import Workspace

__all__ = ["DEDUPE_ACTIONS", "DedupeAction", "dedupe_action", "undo_dedupe"]

DEDUPE_ACTIONS = ("not_duplicate", "duplicate", "keeper")


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


def _pair_decision(kind: str, a: str, b: str) -> tuple[str, str, str | None]:
    low, high = sorted((a, b))
    return kind, low, high


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
        before = involved_marks(conn, [a, b] if b else [a])
        in_force = decisions_in_force(conn, a, b)
        cleared = candidate_rows(conn, a, b)
        if a not in before or (b is not None and b not in before):
            raise GleanerError("no such image in the catalog")
    action = DedupeAction(f"dedupe-{kind}", cleared=cleared, pair=(a, b))
    if kind == "not_duplicate":
        assert b is not None
        mark_not_duplicates(workspace, a, b, actor)
        action.recorded.append(_pair_decision("not_duplicate", a, b))
    elif kind == "duplicate":
        assert b is not None
        confirm_duplicates(workspace, a, b, actor)
        action.recorded.append(_pair_decision("duplicate", a, b))
    else:
        if b is not None:
            confirm_duplicates(workspace, a, b, actor)
            action.recorded.append(_pair_decision("duplicate", a, b))
        choose_keeper(workspace, a, actor)
        action.recorded.append(("keeper", a, None))
    action.replaced = [
        decision
        for decision in in_force
        if decision[0] in PAIR_KINDS or (decision[0] == "keeper" and ("keeper", a, None) in action.recorded)
    ]
    with workspace.catalog.read() as conn:
        after = involved_marks(conn, [a, b] if b else [a])
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
        current = duplicate_marks(conn, [change.sha256 for change in action.changes])
        marks: dict[str, str | None] = {}
        for change in action.changes:
            if change.field == "duplicate_of" and change.sha256 in current and current[change.sha256] == change.after:
                marks[change.sha256] = change.before
                undone.changes.append(Change(change.sha256, "duplicate_of", change.after, change.before))
            elif change.field == "decision" and revoked:
                undone.changes.append(Change(change.sha256, "decision", change.after, None))
        set_duplicate_marks(conn, marks)
    return undone
