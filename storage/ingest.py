"""Ingest: the single entry every collector uses to turn bytes into a stored, catalogued image.

Order of work, so that a crash never loses or half-records anything:
1. read and validate the bytes (`imaging.analyze`), compute sha256 and pHash;
2. write the object under its content address unless it is already there (durable when `put` returns, or
   for batch writers when the `store.sync()` before step 3 returns);
3. commit the image, source and label rows in one catalog transaction.
A crash between 2 and 3 leaves at most an orphan object, which `curate fsck --fix` removes and a rerun
records. The CPU-bound steps 1-2 run in worker processes; step 3 runs in the calling process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection

from storage.catalog import Catalog, ImageFacts, Sighting, SourceInfo, default_actor, mark_duplicate, record_images
from storage.catalog.duplicates import Candidate, load_decisions, record_candidate, replace_keeper
from storage.catalog.reconnect import retrying
from storage.errors import StoreError, StoreFull
from storage.imaging import Rejected, analyze
from storage.keys import image_key
from storage.localfiles import read_regular_file
from storage.neardup import NearDuplicateIndex, PixelVerifier
from storage.parallel import WorkerDied, process_map
from storage.settings import IngestSettings
from storage.stores import ObjectStore, open_store

__all__ = ["IngestItem", "IngestSummary", "Ingestor", "Outcome", "Prepared", "commit_due", "prepare", "source_for_path"]

Status = Literal["added", "duplicate", "rejected", "failed"]
REMOTE_WORKERS_PER_CORE = 4
COMMIT_EVERY = 64  # prepared images per catalog transaction (and per store sync)
COMMIT_SECONDS = 0.5  # ...or fewer, when they arrive slowly


def commit_due(pending: int, since: float) -> bool:
    """Whether `pending` prepared images, gathered since monotonic time `since`, make a batch to commit."""
    return pending >= COMMIT_EVERY or (pending > 0 and time.monotonic() - since > COMMIT_SECONDS)


@dataclass(frozen=True)
class IngestItem:
    """One candidate image: bytes already in memory (`data`) or a file to read (`path`)."""

    source: SourceInfo
    label: str | None = None
    data: bytes | None = None
    path: str | None = None


@dataclass(frozen=True)
class Outcome:
    item: str
    status: Status
    sha256: str | None = None
    reason: str | None = None
    near_duplicate_of: str | None = None  # a new image set aside as a verified near-duplicate of this keeper


@dataclass(frozen=True)
class Prepared:
    """What a worker hands back: facts of a stored object, or why the item was refused."""

    facts: ImageFacts | None = None
    object_key: str | None = None
    status: Status = "added"
    reason: str | None = None
    disk_full: bool = False  # the store write failed for want of space: the run stops (see Ingestor.stop_if_full)


@dataclass
class IngestSummary:
    """Counts in the collectors' JSON shape (DESIGN.md)."""

    added: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    near_duplicates: int = 0  # among `added`: set aside as verified near-duplicates of catalogued images
    problems: list[dict[str, str]] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        if outcome.status == "added":
            self.added += 1
            self.near_duplicates += outcome.near_duplicate_of is not None
        elif outcome.status == "duplicate":
            self.duplicates += 1
        else:
            self.rejected += outcome.status == "rejected"
            self.failed += outcome.status == "failed"
            self.problems.append({"item": outcome.item, "reason": outcome.reason or outcome.status})

    @property
    def total(self) -> int:
        return self.added + self.duplicates + self.rejected + self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "failed": self.failed,
            "near_duplicates": self.near_duplicates,
            "problems": list(self.problems),
        }


def read_file(path: str, max_bytes: int) -> bytes:
    """Read a file for ingest, refusing non-files (decided on the opened descriptor: a path swapped for a FIFO
    must not hang a worker) and files over the size limit with a reason."""
    return read_regular_file(path, max_bytes)


def prepare(item: IngestItem, store: ObjectStore, limits: IngestSettings, *, durable: bool = True) -> Prepared:
    """Steps 1-2: validate, hash, store if absent. Pure apart from the store write; runs in workers.

    `durable=False` leaves the write's durability to `store.sync()`, which `Ingestor.commit(sync_store=True)`
    calls once per batch (group commit) before any of its rows are recorded."""
    try:
        data = item.data if item.data is not None else read_file(item.path or item.source.uri, limits.max_bytes)
        if len(data) > limits.max_bytes:
            raise Rejected(f"{len(data):,} bytes, over the {limits.max_bytes:,}-byte limit")
        facts = analyze(data, min_side=limits.min_side, max_pixels=limits.max_pixels)
    except Rejected as exc:
        return Prepared(status="rejected", reason=str(exc))
    key = image_key(facts.sha256, facts.ext)
    try:
        if not store.exists(key, size=len(data)):  # a short leftover of a power cut is written again
            store.put(key, data, facts.content_type, durable=durable)
    except (StoreError, OSError) as exc:
        return Prepared(status="failed", reason=f"store write failed: {exc}", disk_full=_no_space(exc))
    return Prepared(facts=facts, object_key=key)


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def _no_space(exc: BaseException) -> bool:
    """Whether a failed store write means a full disk or quota (the error itself or what it wraps)."""
    return any(isinstance(e, OSError) and e.errno in _FULL_ERRNOS for e in (exc, exc.__cause__, exc.__context__))


# Worker-process state, set once by the pool initializer.
_worker_store: ObjectStore | None = None
_worker_limits: IngestSettings | None = None


def _init_worker(store_url: str, store_options: dict[str, Any], limits: IngestSettings) -> None:
    global _worker_store, _worker_limits
    _worker_store = open_store(store_url, store_options)
    _worker_limits = limits


def _prepare_in_worker(item: IngestItem) -> Prepared:
    assert _worker_store is not None and _worker_limits is not None
    return prepare(item, _worker_store, _worker_limits, durable=False)  # group commit: synced before step 3


class Ingestor:
    """Ingest into one store and catalog. `ingest()` for one item, `ingest_many()` for streams."""

    def __init__(
        self,
        store: ObjectStore,
        catalog: Catalog,
        limits: IngestSettings,
        *,
        store_options: dict[str, Any] | None = None,
        origin: str = "folder",
        actor: str | None = None,
        run_id: int | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.limits = limits
        self.store_options = store_options or {}
        self.origin = origin
        self.actor = actor or default_actor()
        self.run_id = run_id
        self._index: NearDuplicateIndex | None = None
        self._verifier: PixelVerifier | None = None
        self._index_state = "unloaded"

    @classmethod
    def for_workspace(cls, workspace: Any, **kwargs: Any) -> Ingestor:
        settings = workspace.settings
        return cls(
            workspace.store,
            workspace.catalog,
            settings.ingest,
            store_options=settings.store.backend_options(),
            **kwargs,
        )

    def commit(self, batch: list[tuple[IngestItem, Prepared]], *, sync_store: bool = False) -> list[Outcome]:
        """Step 3: record stored images. One transaction for the batch, so each image's rows commit together.

        `sync_store`: the objects were written with `durable=False`; make them durable first. A lost connection
        to the catalog server (a restart) rolls the batch back: it is recorded again on a new connection, with
        the near-duplicate index read again (the failed attempt added the batch to it)."""
        return retrying(
            lambda: self._commit(batch, sync_store=sync_store), on_retry=self._forget_index, what="recording images"
        )

    def _forget_index(self) -> None:
        self._index, self._index_state = None, "unloaded"

    def _commit(self, batch: list[tuple[IngestItem, Prepared]], *, sync_store: bool) -> list[Outcome]:
        outcomes: list[Outcome] = []
        stored = [(item, prepared) for item, prepared in batch if prepared.facts and prepared.object_key]
        # A fixed order of row locks: two processes recording the same new images cannot deadlock (PostgreSQL).
        stored.sort(key=lambda pair: pair[1].facts.sha256 if pair[1].facts else "")
        added_by_item: dict[int, bool] = {}
        near_of_item: dict[int, str] = {}
        if stored:
            if sync_store:
                self.store.sync()
            with self.catalog.write() as conn:
                index = self._near_index(conn)  # before recording: the batch must not match itself
                sightings = [
                    Sighting(prepared.facts, prepared.object_key, item.source, item.label)  # type: ignore[arg-type]
                    for item, prepared in stored
                ]
                added_flags = record_images(conn, sightings, origin=self.origin, actor=self.actor, run_id=self.run_id)
                for (item, _), added in zip(stored, added_flags, strict=True):
                    added_by_item[id(item)] = added
                new = [(item, prepared) for item, prepared in stored if added_by_item[id(item)]]
                if index is not None and new:
                    near_of_item = self._judge_near_duplicates(conn, index, new)
        for item, prepared in batch:
            uri = item.source.uri
            if prepared.facts is None:
                outcomes.append(Outcome(uri, prepared.status, reason=prepared.reason))
            else:
                status: Status = "added" if added_by_item[id(item)] else "duplicate"
                keeper = near_of_item.get(id(item))
                reason = f"near-duplicate of {keeper[:12]}, set aside" if keeper else None
                outcomes.append(Outcome(uri, status, prepared.facts.sha256, reason, near_duplicate_of=keeper))
        return outcomes

    def stop_if_full(self, batch: list[tuple[IngestItem, Prepared]]) -> None:
        """Raise StoreFull when a store write of this (already committed and reported) batch failed for want of
        space: the next writes would fail alike, so the run ends with one clear error, and a rerun after
        freeing space takes up the items it did not store."""
        full = sum(prepared.disk_full for _item, prepared in batch)
        if full:
            cause = OSError(errno.ENOSPC, f"the store {self.store.url}: {os.strerror(errno.ENOSPC)}")
            raise StoreFull(f"the store {self.store.url} is full ({full} image(s) not stored)") from cause

    def _judge_near_duplicates(
        self, conn: Connection, index: NearDuplicateIndex, new: list[tuple[IngestItem, Prepared]]
    ) -> dict[int, str]:
        """Set aside verified near-duplicates among the newly recorded images, let a better copy take its keeper's
        place, and record unverified matches as review candidates. Returns item id -> keeper for those set aside."""
        if self._verifier is None:
            self._verifier = PixelVerifier(self.store)
        decisions = load_decisions(conn)
        batch = [(p.facts, p.object_key, item.label is not None) for item, p in new]
        judgements = index.judge(batch, self._verifier.verify, decisions.separated)  # type: ignore[arg-type]
        near_of_item: dict[int, str] = {}
        for (item, prepared), judgement in zip(new, judgements, strict=True):
            sha = prepared.facts.sha256  # type: ignore[union-attr]
            if judgement.duplicate_of:
                mark_duplicate(conn, sha, judgement.duplicate_of)
                near_of_item[id(item)] = judgement.duplicate_of
            elif judgement.replaces:
                replace_keeper(conn, judgement.replaces, sha)
            for keeper, distance, matched, verdict in judgement.candidates:
                record_candidate(conn, Candidate(sha, keeper, distance, matched, verdict.score, verdict.reason))
        return near_of_item

    def _near_index(self, conn: Connection) -> NearDuplicateIndex | None:
        """Loaded on the first commit, then kept up to date with the keepers this run adds."""
        if not self.limits.near_duplicates:
            return None
        if self._index_state == "unloaded":
            self._index = NearDuplicateIndex.load(conn, self.limits.near_duplicate_threshold)
            self._index_state = "loaded"
        return self._index

    def ingest(self, item: IngestItem) -> Outcome:
        """Ingest one item in this process."""
        return self.commit([(item, prepare(item, self.store, self.limits))])[0]

    def ingest_many(
        self,
        items: Iterable[IngestItem],
        *,
        workers: int | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> Iterator[Outcome]:
        """Ingest a stream with validation and hashing spread over processes; outcomes in completion order.

        At most `4 * workers` items are in flight, so memory stays bounded for any input length.
        """
        count = workers if workers is not None else (self.limits.workers or os.cpu_count() or 1)
        if workers is None and getattr(self.store, "remote", False):
            # Workers spend most of their time waiting on the network: more of them keep the cores busy.
            count *= REMOTE_WORKERS_PER_CORE
        if count <= 1:
            for item in items:
                single = [(item, prepare(item, self.store, self.limits))]
                outcome = self.commit(single)[0]
                if on_outcome:
                    on_outcome(outcome)
                yield outcome
                self.stop_if_full(single)
            return

        groups = process_map(  # closed below, so an error or an early stop shuts the pool down at once
            _prepare_in_worker,
            items,
            workers=count,
            initializer=_init_worker,
            initargs=(self.store.url, self.store_options, self.limits),
        )
        batch: list[tuple[IngestItem, Prepared]] = []
        started = time.monotonic()
        with contextlib.closing(groups):
            for group in groups:
                batch.extend(
                    (item, result if isinstance(result, Prepared) else _worker_failed(result)) for item, result in group
                )
                if commit_due(len(batch), started):
                    yield from self._commit_reported(batch, on_outcome)
                    batch, started = [], time.monotonic()
        yield from self._commit_reported(batch, on_outcome)

    def _commit_reported(
        self, batch: list[tuple[IngestItem, Prepared]], on_outcome: Callable[[Outcome], None] | None
    ) -> Iterator[Outcome]:
        for outcome in self.commit(batch, sync_store=True):  # the workers wrote with durable=False
            if on_outcome:
                on_outcome(outcome)
            yield outcome
        self.stop_if_full(batch)


def _worker_failed(exc: BaseException) -> Prepared:
    """A worker died (e.g. out of memory) with the item in hand: reported, and the run goes on."""
    return Prepared(status="failed", reason=f"worker failed: {exc if isinstance(exc, WorkerDied) else repr(exc)}")


def source_for_path(path: Path, kind: str = "file") -> SourceInfo:
    """Provenance of a local file: its absolute path (symlinks not resolved: that is what the user named)."""
    return SourceInfo(kind=kind, uri=str(path.absolute()))
