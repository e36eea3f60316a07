"""Review actions (label, accept, reject, undo) written to the catalog at once, each with its history row.

Label changes go through `storage.catalog.set_label` (label_events); review changes through
`storage.catalog.review_events.set_review` (review_events).
An action remembers every value it replaced, so undo can put exactly those back, skipping images that someone
else (another tab, the CLI) has changed since.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from storage.catalog import Catalog, set_label
from storage.catalog.review_events import current_states, set_review
from storage.errors import GleanerError

__all__ = ["ACTIONS", "Action", "Change", "apply_action", "undo_action"]

ACTIONS = ("label", "clear", "accept", "reject", "unreview")
REVIEW_AFTER = {"accept": "accepted", "reject": "rejected", "unreview": "unreviewed"}
CHUNK = 500  # images per write transaction: a bulk action never holds the catalog's write lock for long
ORIGIN = "human"


@dataclass(frozen=True)
class Change:
    """One value replaced: the image's label (a name or None) or its review state."""

    sha256: str
    field: str  # "label" | "review"
    before: str | None
    after: str | None


@dataclass
class Action:
    """What one key press or bulk action did: the changes undo reverses."""

    kind: str
    changes: list[Change] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # requested images not in the catalog

    @property
    def shas(self) -> list[str]:
        return list(dict.fromkeys(change.sha256 for change in self.changes))


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def apply_action(catalog: Catalog, kind: str, shas: Sequence[str], *, actor: str, label: str | None = None) -> Action:
    """Apply one action to images; only images whose value changes are written (and recorded for undo)."""
    if kind not in ACTIONS:
        raise GleanerError(f"unknown action {kind!r}")
    if kind == "label" and not label:
        raise GleanerError("the label action needs a label name")
    action = Action(kind)
    wanted = list(dict.fromkeys(shas))
    for chunk in _chunks(wanted):
        with catalog.write() as conn:
            current = current_states(conn, chunk)
            action.missing += [sha for sha in chunk if sha not in current]
            if kind in ("label", "clear"):
                target = label if kind == "label" else None
                todo = [sha for sha in chunk if sha in current and current[sha][0] != target]
                if todo:
                    set_label(conn, todo, target, actor=actor, origin=ORIGIN)
                action.changes += [Change(sha, "label", current[sha][0], target) for sha in todo]
            else:
                after = REVIEW_AFTER[kind]
                todo = [sha for sha in chunk if sha in current and current[sha][1] != after]
                if todo:
                    set_review(conn, todo, after, {sha: current[sha][1] for sha in todo}, actor)
                action.changes += [Change(sha, "review", current[sha][1], after) for sha in todo]
    return action


def undo_action(catalog: Catalog, action: Action, *, actor: str) -> Action:
    """Put back what `action` replaced, as new history rows; images changed since by others are left alone."""
    undone = Action(f"undo-{action.kind}")
    for chunk_start in range(0, len(action.changes), CHUNK):
        chunk = action.changes[chunk_start : chunk_start + CHUNK]
        with catalog.write() as conn:
            current = current_states(conn, [change.sha256 for change in chunk])
            label_targets: dict[str | None, list[str]] = defaultdict(list)
            review_targets: dict[str, list[str]] = defaultdict(list)
            for change in chunk:
                state = current.get(change.sha256)
                if state is None:
                    continue
                if change.field == "label" and state[0] == change.after:
                    label_targets[change.before].append(change.sha256)
                    undone.changes.append(Change(change.sha256, "label", change.after, change.before))
                elif change.field == "review" and state[1] == change.after and change.before:
                    review_targets[change.before].append(change.sha256)
                    undone.changes.append(Change(change.sha256, "review", change.after, change.before))
            for name, shas in label_targets.items():
                set_label(conn, shas, name, actor=actor, origin=ORIGIN)
            for state_name, shas in review_targets.items():
                set_review(conn, shas, state_name, {sha: current[sha][1] for sha in shas}, actor)
    return undone
