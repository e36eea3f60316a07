"""The admission gate of a collection job (the engine's `Admission` hook): which images a run takes.

The engine asks it about every image before the image is fetched (frontier rows carry the label the page, the
URL list or the seed option gave) or ingested (local files, labelled by folder or option), so the filtering
is the same for every source. It enforces, per run:

- `targets = true`: only labels with an open target, each until its target is met: the run admits at most the
  images the target still wanted when the run first reserved one of them (a quota reserved in the catalog
  like the budgets below, across every worker; the runner renews it for a later pass), so a label stops when
  enough are in; unbound, a pass admits at most `remaining` when the pass began;
- `max_images` and `max_per_label`, across every worker of the run: a gate bound to the run (`bind`) reserves
  what it admits in the catalog (storage.catalog.budgets), a claim batch's images in the transaction that
  claims them (`admit_many`), local files a few at a time (`admit`; what it reserved and did not use goes back
  with `release`). An admitted image counts whatever then becomes of it (added, duplicate, rejected, failed),
  like `harvest scrape --max-images`, which counts the fetches it starts; so the run's `added` never exceeds
  them. An image admitted by a worker that is stopped or killed before it fetched it stays counted (the budget
  errs on the side of fewer images, never more).

A refusal is a frontier row marked skipped with one of `REFUSAL_KINDS` as its error kind, which the next run
of the job re-queues (targets and budgets change between runs); the gate counts what it skipped and why.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from copy import copy
from typing import Any, Final

from sqlalchemy import Connection

from harvest.engine import Refusal
from storage.catalog.budgets import give_back, reserve
from storage.catalog.core import Catalog
from storage.catalog.labels import label_key
from storage.catalog.targets import Target

__all__ = ["BUDGET", "LOCAL_RESERVATION", "NO_TARGET", "REFUSAL_KINDS", "TARGET", "JobGate"]

NO_TARGET: Final = "no_target"  # the label has no open target (or the image has no label)
TARGET: Final = "target"  # the label's target has what it wants (in this pass)
BUDGET: Final = "budget"  # max_images or max_per_label reached in this run
REFUSAL_KINDS: Final = (NO_TARGET, TARGET, BUDGET)
UNLABELLED: Final = "(unlabelled)"
LOCAL_RESERVATION: Final = 8  # local files: images reserved per catalog transaction
_COUNTS: Final = (
    "admitted", "per_label", "pass_admitted", "met_refused", "skipped", "skipped_labels", "run_total",
    "run_per_label", "run_quotas",
)  # fmt: skip


class JobGate:
    """Admits images by label for one worker of a job run; `begin_pass` gives it the open targets, `bind` the
    run whose budget its workers share (unbound, it counts this worker's admissions only)."""

    def __init__(self, *, targets: bool, max_images: int | None = None, max_per_label: int | None = None) -> None:
        self.targets = targets
        self.max_images = max_images
        self.max_per_label = max_per_label
        self.admitted = 0  # by this worker
        self.per_label: Counter[str] = Counter()  # by this worker, by label key
        self.pass_admitted: Counter[str] = Counter()  # this pass, by label key
        self.remaining: dict[str, int] = {}  # label key -> images its open target still wanted when the pass began
        self.met_refused: Counter[str] = Counter()  # this pass: label keys refused because their quota was used
        self.skipped: Counter[str] = Counter()  # why -> images passed over
        self.skipped_labels: Counter[str] = Counter()  # label -> images passed over
        self.run_total = 0  # what the whole run had admitted at this gate's last reservation
        self.run_per_label: Counter[str] = Counter()  # the same, by label key
        self.run_quotas: dict[str, int] = {}  # label key -> the run's target quota, at the last reservation
        self._catalog: Catalog | None = None
        self._run_id: int | None = None
        self._pool: Counter[str] = Counter()  # reserved for local files and not admitted yet, by label key
        self._lock = threading.Lock()

    def checkpoint(self) -> dict[str, Any]:
        """This worker's counts now, for `restore` when a claim transaction that admitted images was rolled back
        (a lost catalog connection: the claim runs again, storage.catalog.reconnect) and must not count twice."""
        with self._lock:
            return {name: copy(getattr(self, name)) for name in _COUNTS}

    def restore(self, state: dict[str, Any]) -> None:
        with self._lock:
            for name, value in state.items():
                setattr(self, name, copy(value))

    @property
    def budgeted(self) -> bool:
        return self.max_images is not None or self.max_per_label is not None

    def bind(self, catalog: Catalog, run_id: int) -> None:
        """Count max_images and max_per_label across every worker of run `run_id` (in the catalog)."""
        self._catalog, self._run_id = catalog, run_id

    def begin_pass(self, open_targets: Sequence[Target]) -> None:
        """A new pass over the sources, with the targets open now (their `collected` counts what arrived)."""
        with self._lock:
            self.remaining = {label_key(t.label): t.remaining for t in open_targets if t.remaining > 0}
            self.pass_admitted.clear()
            self.met_refused.clear()
            self.run_quotas = {}  # the run's quotas may have been renewed: the next reservation reads them

    @property
    def closed(self) -> bool:
        """Nothing more will be admitted in this pass: max_images reached, or (targets) every label's quota."""
        with self._lock:
            if self._spent():
                return True
            if not self.targets:
                return False
            return all(self._quota_used(key) for key in self.remaining)

    @property
    def budget_spent(self) -> bool:
        with self._lock:
            return self._spent()

    def admit(self, label: str | None) -> Refusal | None:
        """One image (a local file): reserved from the run's budget a few at a time."""
        with self._lock:
            key = label_key(label) if label else ""
            refusal = self._local_refusal(label, key) or self._budget_refusal(label, key, self._take(key))
            return self._count(label, key, refusal)

    def admit_many(self, conn: Connection, labels: Sequence[str | None]) -> list[Refusal | None]:
        """A claim batch's images, in the transaction that claims them: what passes the targets is reserved
        from the run's budget at once."""
        with self._lock:
            keys = [label_key(label) if label else "" for label in labels]
            if not self._reserving:  # this worker's counts decide, image by image
                return [
                    self._count(label, key, self._local_refusal(label, key) or self._budget_refusal(label, key, None))
                    for label, key in zip(labels, keys, strict=True)
                ]
            verdicts: list[tuple[str, Refusal] | None] = []
            candidates: list[int] = []
            planned: Counter[str] = Counter()
            for index, (label, key) in enumerate(zip(labels, keys, strict=True)):
                refusal = self._local_refusal(label, key, planned[key])
                verdicts.append(refusal)
                if refusal is None:
                    planned[key] += 1
                    candidates.append(index)
            if candidates:
                answers = self._reserve(conn, [keys[i] for i in candidates])
                for index, why in zip(candidates, answers, strict=True):
                    verdicts[index] = self._budget_refusal(labels[index], keys[index], why or "")
            return [self._count(label, key, v) for label, key, v in zip(labels, keys, verdicts, strict=True)]

    def release(self) -> None:
        """Give back to the run what was reserved for local files and not admitted."""
        with self._lock:
            pool, self._pool = +self._pool, Counter()
            if pool and self._catalog is not None and self._run_id is not None:
                run_id = self._run_id
                self._catalog.transact(lambda conn: give_back(conn, run_id, pool), what="giving back reservations")
                self.run_total -= sum(pool.values())
                self.run_per_label.subtract(pool)

    # --- under the lock ---------------------------------------------------------------------------------

    @property
    def _bound(self) -> bool:
        return self._catalog is not None and self._run_id is not None

    @property
    def _reserving(self) -> bool:
        """Admissions are reserved from the run (budgets, or a targets job's quotas)."""
        return self._bound and (self.budgeted or self.targets)

    def _spent(self) -> bool:
        """max_images reached: by the run (and this worker holds no reservation for local files), or unbound,
        by this worker."""
        if self.max_images is None:
            return False
        if self._bound:
            return self.run_total >= self.max_images and not +self._pool
        return self.admitted >= self.max_images

    def _label_count(self, key: str) -> int:
        return self.run_per_label[key] if self._bound else self.per_label[key]

    def _local_refusal(self, label: str | None, key: str, planned: int = 0) -> tuple[str, Refusal] | None:
        """What this worker knows without asking the run: max_images spent, and the targets."""
        if self._spent():
            return "max_images", Refusal(BUDGET, f"max_images ({self.max_images}) reached in this run")
        if self.targets:
            if not key:
                return "unlabelled", Refusal(NO_TARGET, "no label: a targets job takes only labels with open targets")
            if key not in self.remaining:
                return "no_target", Refusal(NO_TARGET, f"no open target for label {label!r}")
            if self._reserving:
                if key in self.run_quotas and self.run_per_label[key] >= self.run_quotas[key] and self._pool[key] <= 0:
                    return self._met_refusal(label)
            elif self.pass_admitted[key] + planned >= self.remaining[key]:
                return self._met_refusal(label)
        if self.max_per_label is not None and self._label_count(key) >= self.max_per_label and self._pool[key] <= 0:
            return self._per_label_refusal(label)
        return None

    def _budget_refusal(self, label: str | None, key: str, answer: str | None) -> tuple[str, Refusal] | None:
        """`answer`: the run's budget's ("": reserved, or `max_images`, `max_per_label`; None: not asked, this
        worker's counts decide)."""
        if answer is None:
            if self.max_images is not None and self.admitted >= self.max_images:
                return "max_images", Refusal(BUDGET, f"max_images ({self.max_images}) reached in this run")
            if self.max_per_label is not None and self.per_label[key] >= self.max_per_label:
                return self._per_label_refusal(label)
            return None
        if not answer:
            return None
        if answer == "max_images":
            return "max_images", Refusal(BUDGET, f"max_images ({self.max_images}) reached in this run")
        if answer == "target_met":
            return self._met_refusal(label)
        return self._per_label_refusal(label)

    @staticmethod
    def _met_refusal(label: str | None) -> tuple[str, Refusal]:
        return "target_met", Refusal(TARGET, f"the target for {label!r} has what it wants")

    def _per_label_refusal(self, label: str | None) -> tuple[str, Refusal]:
        return "max_per_label", Refusal(BUDGET, f"max_per_label ({self.max_per_label}) reached for {label!r}")

    def _count(self, label: str | None, key: str, verdict: tuple[str, Refusal] | None) -> Refusal | None:
        if verdict is not None:
            why, refused = verdict
            self.skipped[why] += 1
            self.skipped_labels[label or UNLABELLED] += 1
            if why == "target_met":
                self.met_refused[key] += 1
            return refused
        self.admitted += 1
        self.per_label[key] += 1
        self.pass_admitted[key] += 1
        return None

    def _take(self, key: str) -> str | None:
        """One reservation for a local file of label `key`, from the pool or the run: "" (taken), the budget
        that refused it, or None (unbound: this worker's counts decide)."""
        if not self._reserving:
            return None
        if self._pool[key] > 0:
            self._pool[key] -= 1
            return ""
        want = LOCAL_RESERVATION
        if self.targets and key in self.remaining:
            want = max(1, min(want, self.remaining[key] - self.pass_admitted[key]))
        assert self._catalog is not None
        answers = self._catalog.transact(lambda conn: self._reserve(conn, [key] * want), what="reserving images")
        granted = answers.count(None)
        if not granted:
            return answers[0]
        self._pool[key] += granted - 1
        return ""

    def _reserve(self, conn: Connection, keys: list[str]) -> list[str | None]:
        assert self._run_id is not None
        quotas = self.remaining if self.targets else None
        done = reserve(
            conn, self._run_id, keys, max_images=self.max_images, max_per_label=self.max_per_label, quotas=quotas
        )
        self.run_total = done.total
        self.run_per_label = Counter(done.per_label)
        self.run_quotas = done.quotas
        return done.refused

    def _quota_used(self, key: str) -> bool:
        if self._reserving:
            quota = self.run_quotas.get(key)
            if quota is not None and self.run_per_label[key] >= quota and self._pool[key] <= 0:
                return True
        elif self.pass_admitted[key] >= self.remaining[key]:
            return True
        if self.max_per_label is None or self._pool[key] > 0:
            return False
        return self._label_count(key) >= self.max_per_label

    def to_json(self) -> dict[str, Any]:
        """What was passed over and why: `total`, `by_reason` and `by_label`."""
        with self._lock:
            return {
                "total": sum(self.skipped.values()),
                "by_reason": dict(sorted(self.skipped.items())),
                "by_label": dict(sorted(self.skipped_labels.items())),
            }
