"""A live worker's heartbeat: its frontier claims are renewed while it runs, so only a dead worker's lapse.

A worker on another machine cannot be asked whether it is alive (the pid check of `release_stale` works on
one host only), so claims are short leases (`LEASE_SECONDS` in harvest.engine) that a thread of the worker
pushes back every `every` seconds. A killed pod stops renewing, and within one lease its rows are free for
the other workers of the run.
"""

from __future__ import annotations

import logging
import threading

from storage.catalog import Catalog
from storage.catalog.hosts import renew_leases

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """Renew `owner`'s leases in the jobs it claimed from (`watch`) every `every` seconds until `stop`."""

    def __init__(self, catalog: Catalog, owner: str, *, lease_seconds: float, every: float) -> None:
        self.catalog = catalog
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.every = every
        self.jobs: set[str] = set()
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def watch(self, job: str) -> None:
        """Renew the claims in `job` too; the first call starts the thread."""
        with self._lock:
            self.jobs.add(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gleaner-heartbeat", daemon=True)
                self._thread.start()

    def beat(self) -> int:
        """Renew now; returns how many rows were renewed."""
        with self._lock:
            jobs = sorted(self.jobs)
        renewed = self.catalog.transact(
            lambda conn: renew_leases(conn, self.owner, jobs, self.lease_seconds), what="renewing leases"
        )
        self.beats += 1
        return renewed

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.beat()
            except Exception:  # a catalog hiccup: the next beat tries again, well within the lease
                log.warning("could not renew the frontier leases of %s", self.owner, exc_info=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
