"""The `watch` source: ingest the images that arrive in a folder (screenshots, downloads) once each is complete.

The loop, on the calling thread: hints from the event feed and a full scan every `rescan` seconds feed the
`Tracker`; files it finds complete go to the engine in a batch (worker processes read, validate, hash and
store them; one dying worker fails only its file); after the batch commits, `--move-to` or `--delete` clear
them out of the folder. Files already there at start are taken by the first scan. SIGINT and SIGTERM set the
run's stop flag: the files in hand are finished and committed, nothing new is started, and the run ends
with its summary (exit 0). `once` takes what is there, waits for files still being written, and ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvest.engine import Engine, Run
from harvest.importer import folder_label
from harvest.labels import InvalidLabel, collector_label, fallback_label
from harvest.paths import file_source
from harvest.watch.events import EventFeed, Hint
from harvest.watch.settle import Signature, Tracker, ignored_name
from storage.errors import GleanerError
from storage.ingest import IngestItem
from storage.parallel import start_worker_server

__all__ = ["DEFAULT_RESCAN", "DEFAULT_SETTLE", "DEFAULT_STUCK_AFTER", "WatchOptions", "WatchSource"]

log = logging.getLogger(__name__)

DEFAULT_SETTLE = 2.0  # seconds a file's size and mtime must stay the same
DEFAULT_RESCAN = 30.0  # seconds between full scans (events are hints; the scan is the truth)
DEFAULT_STUCK_AFTER = 600.0  # a file still changing after this long is reported, not taken
TICK = 0.2  # the longest wait for events before pending files are looked at again


@dataclass(frozen=True)
class WatchOptions:
    root: Path
    label: str | None = None
    labels_from_folders: bool = False
    once: bool = False
    poll: bool = False
    move_to: Path | None = None
    delete: bool = False
    settle: float = DEFAULT_SETTLE
    rescan: float = DEFAULT_RESCAN
    stuck_after: float = DEFAULT_STUCK_AFTER
    poll_interval: float = 1.0

    def checked(self) -> WatchOptions:
        """The options with absolute folders; a user error for impossible combinations."""
        root = Path(self.root).absolute()
        if not root.is_dir():
            raise GleanerError(f"not a folder: {self.root}")
        if self.move_to is not None and self.delete:
            raise GleanerError("give --move-to DIR or --delete, not both")
        move_to = Path(self.move_to).absolute() if self.move_to is not None else None
        if move_to is not None and (move_to == root or root.is_relative_to(move_to)):
            raise GleanerError(f"--move-to must be outside the watched folder, not {self.move_to}")
        for name, value, zero_ok in (
            ("--settle", self.settle, True), ("--rescan-every", self.rescan, False),
            ("--stuck-after", self.stuck_after, False),
        ):  # fmt: skip
            if value < 0 or (value == 0 and not zero_ok):
                raise GleanerError(f"{name} must be {'zero or more' if zero_ok else 'positive'}, not {value:g}")
        return WatchOptions(
            root, self.label, self.labels_from_folders, self.once, self.poll, move_to, self.delete,
            self.settle, self.rescan, self.stuck_after, self.poll_interval,
        )  # fmt: skip


class WatchSource:
    """`harvest watch DIR`: a source on the engine that runs until stopped (or, with `once`, until done)."""

    kind = "watch"

    def __init__(self, options: WatchOptions, *, on_event: Callable[[str, str], None] | None = None) -> None:
        self.options = options.checked()
        self.on_event = on_event  # (what, detail) for the command's log lines: "mode", "stuck", "moved"...
        self.tracker = Tracker(self.options.settle, self.options.stuck_after)
        self.feed: EventFeed | None = None

    def config(self) -> dict[str, Any]:
        o = self.options
        return {
            "root": str(o.root), "label": o.label, "labels_from_folders": o.labels_from_folders, "once": o.once,
            "poll": o.poll, "move_to": str(o.move_to) if o.move_to else None, "delete": o.delete,
            "settle": o.settle, "rescan": o.rescan, "stuck_after": o.stuck_after,
        }  # fmt: skip

    # --- what is watched ----------------------------------------------------------------------------------

    def _wanted(self, path: str) -> bool:
        """Not hidden or temporary (at any level below the root), and not in the --move-to folder."""
        options = self.options
        try:
            parts = Path(path).relative_to(options.root).parts
        except ValueError:
            return False
        if not parts or any(ignored_name(part) for part in parts):
            return False
        return options.move_to is None or not Path(path).is_relative_to(options.move_to)

    def _label(self, path: str) -> str | None:
        folder = folder_label(Path(path), self.options.root) if self.options.labels_from_folders else None
        if folder is not None:  # the first folder under the root (ImageFolder layout)
            return collector_label(folder) or fallback_label(self.options.label)
        return fallback_label(self.options.label)

    def _scan(self, folder: Path | None = None) -> None:
        """Walk the folder (hidden folders skipped) and give every wanted file to the tracker."""
        top = folder or self.options.root
        present: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(
                d for d in dirnames if not ignored_name(d) and self._wanted(os.path.join(dirpath, d, "x"))
            )
            for name in filenames:
                path = os.path.join(dirpath, name)
                if self._wanted(path):
                    present.add(path)
                    self.tracker.see(path)
        if folder is None:
            self.tracker.forget_missing(present)

    def _hinted(self, hints: list[Hint]) -> None:
        for hint in hints:
            if hint.folder:
                if self._wanted(os.path.join(hint.path, "x")):
                    self._scan(Path(hint.path))
            elif hint.gone:
                self.tracker.gone(hint.path)
            elif self._wanted(hint.path):
                self.tracker.see(hint.path, closed=hint.closed)

    # --- the loop -----------------------------------------------------------------------------------------

    def check(self) -> None:
        """User errors, before a run is recorded."""
        fallback_label(self.options.label)

    def collect(self, engine: Engine, run: Run) -> None:
        options = self.options
        start_worker_server()  # before the event threads and our handlers: workers are born deaf to Ctrl-C
        with _stop_on_signals(run.stop):
            if not options.once:
                self.feed = EventFeed(options.root, poll=options.poll, poll_interval=options.poll_interval)
                self._tell("mode", self.feed.mode + (f" ({self.feed.reason})" if self.feed.reason else ""))
            try:
                self._loop(engine, run)
            finally:
                if self.feed is not None:
                    run.report["event_source"] = {"mode": self.feed.mode, "restarts": self.feed.restarts}
                    self.feed.close()
        run.report["stopped"] = "signal" if run.stop.is_set() else "done"

    def _loop(self, engine: Engine, run: Run) -> None:
        options = self.options
        self._scan()
        next_scan = time.monotonic() + options.rescan
        while not run.stop.is_set():
            if self.feed is not None:
                self._hinted(self.feed.drain(TICK if self.tracker.pending or not options.once else 0))
                if self.feed.check():
                    self._scan()
            elif self.tracker.pending:
                time.sleep(min(TICK, max(options.settle / 4, 0.01)))
            ready, stuck = self.tracker.due()
            for path, reason in self.tracker.refusals():  # a FIFO, a device, a link to nothing: said once
                self._tell("rejected", path)
                engine.reject(run, file_source(path, kind="watch").uri, reason)
            for path in stuck:
                reason = f"still being written after {options.stuck_after:g} s; not ingested"
                run.summary.problems.append({"item": path, "reason": reason})
                self._tell("stuck", path)
            if ready:
                self._ingest(engine, run, ready)
            if time.monotonic() >= next_scan:
                self._scan()
                next_scan = time.monotonic() + options.rescan
            if options.once and not self.tracker.waiting():
                return

    def _ingest(self, engine: Engine, run: Run, ready: list[tuple[str, Signature]]) -> None:
        """Hand complete files to the workers; stop handing out new ones once a stop was asked for."""
        by_uri: dict[str, tuple[str, Signature]] = {}

        def items() -> Iterator[IngestItem]:
            for path, sig in ready:
                if run.stop.is_set():
                    return  # the files in hand finish; the rest wait for the next run
                self.tracker.take(path, sig)
                source = file_source(path, kind="watch")
                by_uri[source.uri] = (path, sig)
                try:
                    label = self._label(path)
                except InvalidLabel as exc:  # this file only: the watch goes on
                    self._tell("rejected", path)
                    engine.reject(run, source.uri, str(exc))
                    continue
                yield IngestItem(source=source, label=label, path=path)

        for outcome in engine.ingest(run, items(), origin="folder"):
            path, sig = by_uri.get(outcome.item, (outcome.item, (0, 0)))
            self._tell(outcome.status, path)
            if outcome.status in ("added", "duplicate"):
                self._clear(run, path, sig)

    def _clear(self, run: Run, path: str, sig: Signature) -> None:
        """--move-to or --delete, once the image is in the catalog (and only if the file is what was taken)."""
        options = self.options
        if options.move_to is None and not options.delete:
            return
        try:
            info = os.stat(path)
            if (info.st_size, info.st_mtime_ns) != sig:
                return  # written again since it was taken: it will be taken again, and cleared then
            if options.delete:
                os.unlink(path)
            else:
                assert options.move_to is not None
                target = _free_name(options.move_to / Path(path).relative_to(options.root))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
                self._tell("moved", f"{path} -> {target}")
        except OSError as exc:
            what = "delete" if options.delete else "move"
            run.summary.problems.append({"item": path, "reason": f"stored, but cannot {what} it: {exc}"})
            return
        self.tracker.gone(path)

    def _tell(self, what: str, detail: str) -> None:
        if self.on_event:
            self.on_event(what, detail)


def _free_name(target: Path) -> Path:
    """`target`, or `name-1.ext`, `name-2.ext`... when a file of that name is already there."""
    candidate, n = target, 0
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
    return candidate


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` instead of raising (main thread only); a second SIGINT interrupts at once.
    The old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now (what is committed stays; the rest is redone)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
