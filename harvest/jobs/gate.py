"""The admission gate of a collection job (the engine's `Admission` hook): which images a run takes.

The engine asks it about every image before the image is fetched (frontier rows carry the label the page, the
URL list or the seed option gave) or ingested (local files, labelled by folder or option), so the filtering
is the same for every source. It enforces, per run:

- `targets = true`: only labels with an open target, each until its target is met: a pass admits at most the
  images the target still wants (`remaining` when the pass began), so a label stops when enough are in;
- `max_images` and `max_per_label`.

A refusal is a frontier row marked skipped with one of `REFUSAL_KINDS` as its error kind, which the next run
of the job re-queues (targets and budgets change between runs); the gate counts what it skipped and why.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from harvest.engine import Refusal
from storage.catalog.labels import label_key
from storage.catalog.targets import Target

__all__ = ["BUDGET", "NO_TARGET", "REFUSAL_KINDS", "TARGET", "JobGate"]

NO_TARGET: Final = "no_target"  # the label has no open target (or the image has no label)
TARGET: Final = "target"  # the label's target has what it wants (in this pass)
BUDGET: Final = "budget"  # max_images or max_per_label reached in this run
REFUSAL_KINDS: Final = (NO_TARGET, TARGET, BUDGET)
UNLABELLED: Final = "(unlabelled)"


class JobGate:
    """Admits images by label for one worker of a job run; `begin_pass` gives it the open targets."""

    def __init__(self, *, targets: bool, max_images: int | None = None, max_per_label: int | None = None) -> None:
        self.targets = targets
        self.max_images = max_images
        self.max_per_label = max_per_label
        self.admitted = 0
        self.per_label: Counter[str] = Counter()  # this run, by label key
        self.pass_admitted: Counter[str] = Counter()  # this pass, by label key
        self.remaining: dict[str, int] = {}  # label key -> images its open target still wanted when the pass began
        self.met_refused: Counter[str] = Counter()  # this pass: label keys refused because their quota was used
        self.skipped: Counter[str] = Counter()  # why -> images passed over
        self.skipped_labels: Counter[str] = Counter()  # label -> images passed over
        self._lock = threading.Lock()

    def begin_pass(self, open_targets: Sequence[Target]) -> None:
        """A new pass over the sources, with the targets open now (their `collected` counts what arrived)."""
        with self._lock:
            self.remaining = {label_key(t.label): t.remaining for t in open_targets if t.remaining > 0}
            self.pass_admitted.clear()
            self.met_refused.clear()

    @property
    def closed(self) -> bool:
        """Nothing more will be admitted in this pass: max_images reached, or (targets) every label's quota."""
        with self._lock:
            if self.max_images is not None and self.admitted >= self.max_images:
                return True
            if not self.targets:
                return False
            return all(self._quota_used(key) for key in self.remaining)

    @property
    def budget_spent(self) -> bool:
        return self.max_images is not None and self.admitted >= self.max_images

    def admit(self, label: str | None) -> Refusal | None:
        with self._lock:
            key = label_key(label) if label else ""
            refusal = self._refusal(label, key)
            if refusal is not None:
                why, refused = refusal
                self.skipped[why] += 1
                self.skipped_labels[label or UNLABELLED] += 1
                if why == "target_met":
                    self.met_refused[key] += 1
                return refused
            self.admitted += 1
            self.per_label[key] += 1
            self.pass_admitted[key] += 1
            return None

    def _refusal(self, label: str | None, key: str) -> tuple[str, Refusal] | None:
        if self.max_images is not None and self.admitted >= self.max_images:
            return "max_images", Refusal(BUDGET, f"max_images ({self.max_images}) reached in this run")
        if self.targets:
            if not key:
                return "unlabelled", Refusal(NO_TARGET, "no label: a targets job takes only labels with open targets")
            if key not in self.remaining:
                return "no_target", Refusal(NO_TARGET, f"no open target for label {label!r}")
            if self.pass_admitted[key] >= self.remaining[key]:
                return "target_met", Refusal(TARGET, f"the target for {label!r} has what it wants")
        if self.max_per_label is not None and self.per_label[key] >= self.max_per_label:
            return "max_per_label", Refusal(BUDGET, f"max_per_label ({self.max_per_label}) reached for {label!r}")
        return None

    def _quota_used(self, key: str) -> bool:
        if self.pass_admitted[key] >= self.remaining[key]:
            return True
        return self.max_per_label is not None and self.per_label[key] >= self.max_per_label

    def to_json(self) -> dict[str, Any]:
        """What was passed over and why: `total`, `by_reason` and `by_label`."""
        with self._lock:
            return {
                "total": sum(self.skipped.values()),
                "by_reason": dict(sorted(self.skipped.items())),
                "by_label": dict(sorted(self.skipped_labels.items())),
            }
