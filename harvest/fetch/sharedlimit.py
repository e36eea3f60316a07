"""Per-host politeness across processes: HostLimiter's budget kept in shared memory.

When several worker processes fetch from one host, each with its own HostLimiter, the host would see the
sum of their rates. SharedHostLimiter keeps one state record per host (token bucket, requests in progress,
Retry-After hold, failures in a row, pause) in a shared-memory table that every process updates under one
lock, so `per_host_rate`, `per_host_concurrency`, Retry-After and failure pauses hold for the whole run.

The table has a fixed number of slots, found by hashing the host and probing a few neighbours. A record
at rest (no request in progress, bucket full, no hold, pause or failures) says nothing a fresh record would
not, so its slot may be reused by another host without changing any limit. When every probed slot is busy,
a request waits until one comes to rest (requests are never counted on another host's record); a
Retry-After hold or a failure count is then kept on the first probed record, stricter for both hosts.

A worker process killed in the middle of a request (out-of-memory killer) cannot give its slots back, so
each process is a numbered member that counts what it holds; the parent calls `forget(member, pid)` when it
sees the process gone, which returns the slots and, if the process died holding the lock, the lock.

Waiting for a free request slot polls (a few milliseconds at first, at most 50 ms): processes cannot share
a threading.Condition, and politeness waits are long compared with that.
"""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from harvest.fetch.ratelimit import HostPaused, LimiterTimeout, take_token

__all__ = ["SharedHostLimiter"]

# Fields of one host's record, in order.
_TOKENS, _UPDATED, _ACTIVE, _NOT_BEFORE, _FAILURES, _PAUSED_UNTIL = range(6)
_FIELDS = 6
_PROBES = 16
_POLL_FIRST, _POLL_MAX = 0.002, 0.05


def _host_key(host: str) -> int:
    """A non-zero 64-bit key for the host (0 marks an empty slot)."""
    return int.from_bytes(hashlib.blake2b(host.encode(), digest_size=8).digest(), "little", signed=True) or 1


class SharedHostLimiter:
    """HostLimiter's interface (`slot`, `hold_off`, `record`) with its state shared by processes.

    Create it in the parent with the multiprocessing context that starts the workers and hand it to them
    as a Process argument (it pickles only while a process is being started, like multiprocessing.Lock).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        concurrency: int,
        *,
        failure_limit: int = 0,
        pause: float = 30.0,
        slots: int = 16384,
        members: int = 1,
        context: multiprocessing.context.BaseContext | None = None,
    ) -> None:
        context = context or multiprocessing.get_context()
        self.rate = rate
        self.burst = max(1, burst)
        self.concurrency = max(1, concurrency)
        self.failure_limit = failure_limit
        self.pause = pause
        self.slots = slots
        self._lock = context.Lock()
        self._keys = context.RawArray(ctypes.c_int64, slots)
        self._state = context.RawArray(ctypes.c_double, slots * _FIELDS)
        self._failures = context.RawValue(ctypes.c_bool, False)  # any connection failure recorded yet?
        # Request slots each member (worker process) holds per record, and the pid holding the lock: what
        # `forget` needs to give back when a member is killed in the middle of a request.
        self.members = max(1, members)
        self._held = context.RawArray(ctypes.c_int32, self.members * slots)
        self._holder = context.RawValue(ctypes.c_int64, 0)
        self._member = 0

    def bind(self, member: int) -> None:
        """Make this process member `member` (0 <= member < members); call it first thing in the worker."""
        if not 0 <= member < self.members:
            raise ValueError(f"member {member} out of range 0..{self.members - 1}")
        self._member = member

    def forget(self, member: int, pid: int | None) -> None:
        """Give back what a dead member held: the lock (when `pid` held it) and its request slots."""
        if pid is not None and self._holder.value == pid:
            self._holder.value = 0
            self._lock.release()
        with self._locked():
            offset = member * self.slots
            for index in range(self.slots):
                held = self._held[offset + index]
                if held:
                    self._state[index * _FIELDS + _ACTIVE] -= held
                    self._held[offset + index] = 0

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self._holder.value = os.getpid()
            try:
                yield
            finally:
                self._holder.value = 0

    # -- the HostLimiter interface ----------------------------------------------------------------------

    @contextmanager
    def slot(self, host: str, deadline: float, spacing: float = 0.0) -> Iterator[float]:
        """Hold one of the host's request slots, across all processes; yields the seconds spent waiting.

        Taking the slot and the token is one critical section: the lock is shared by every fetch thread of
        every process, so it is taken as few times as possible.
        """
        key = _host_key(host)
        started = time.monotonic()
        poll = _POLL_FIRST
        while True:
            with self._locked():
                now = time.monotonic()
                base = self._record(key, now, share=False)
                state = self._state
                # base < 0: every probed record is busy with other hosts; wait as for a request slot.
                if base >= 0 and state[base + _PAUSED_UNTIL] > now:
                    raise HostPaused(f"{host} failed {self.failure_limit} times in a row; skipped for now")
                if base >= 0 and state[base + _ACTIVE] < self.concurrency:
                    start, tokens = take_token(
                        state[base + _TOKENS], state[base + _UPDATED], state[base + _NOT_BEFORE], now, deadline,
                        rate=self.rate, burst=self.burst, host=host,
                    )  # fmt: skip
                    state[base + _TOKENS], state[base + _UPDATED] = tokens, now
                    if spacing > 0:  # Crawl-delay: the next request, from any process, waits
                        state[base + _NOT_BEFORE] = max(state[base + _NOT_BEFORE], start + spacing)
                    state[base + _ACTIVE] += 1
                    self._held[self._member * self.slots + base // _FIELDS] += 1
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LimiterTimeout(f"no free connection slot for {host} before the deadline")
            time.sleep(min(poll, remaining))
            poll = min(2 * poll, _POLL_MAX)
        # While a request is active the record is not at rest, so `base` stays this host's record.
        try:
            delay = start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield time.monotonic() - started
        finally:
            with self._locked():
                self._state[base + _ACTIVE] -= 1
                self._held[self._member * self.slots + base // _FIELDS] -= 1

    def hold_off(self, host: str, seconds: float) -> None:
        """Start no request to `host`, from any process, for `seconds` (a Retry-After the host sent)."""
        with self._locked():
            now = time.monotonic()
            base = self._record(_host_key(host), now)
            self._state[base + _NOT_BEFORE] = max(self._state[base + _NOT_BEFORE], now + seconds)

    def record(self, host: str, *, ok: bool) -> None:
        """Count connection failures in a row; pause the host when there are too many."""
        if self.failure_limit <= 0:
            return
        if ok and not self._failures.value:
            return  # nothing to reset (the common case): no trip through the shared lock
        with self._locked():
            now = time.monotonic()
            base = self._record(_host_key(host), now)
            if ok:
                self._state[base + _FAILURES] = 0
                return
            self._state[base + _FAILURES] += 1
            self._failures.value = True
            if self._state[base + _FAILURES] >= self.failure_limit:
                self._state[base + _PAUSED_UNTIL] = now + self.pause
                self._state[base + _FAILURES] = 0

    # -- the table (callers hold the lock) ------------------------------------------------------------

    def _record(self, key: int, now: float, *, share: bool = True) -> int:
        """Offset of the host's record in the state array, claiming a slot for a host not seen yet.

        When every probed slot is busy: -1 with `share=False` (the caller waits for one to come to rest),
        else the first probed record, shared (for a Retry-After hold or a failure count, which must not be
        dropped)."""
        first = key % self.slots
        reusable, oldest = -1, float("inf")
        for step in range(_PROBES):
            index = (first + step) % self.slots
            held = self._keys[index]
            if held == key:
                return index * _FIELDS
            if held == 0:
                return self._claim(index, key, now)
            updated = self._state[index * _FIELDS + _UPDATED]
            if updated < oldest and self._at_rest(index * _FIELDS, now):
                reusable, oldest = index, updated
        if reusable >= 0:
            return self._claim(reusable, key, now)
        return first * _FIELDS if share else -1

    def _claim(self, index: int, key: int, now: float) -> int:
        self._keys[index] = key
        base = index * _FIELDS
        self._state[base + _TOKENS] = float(self.burst)
        self._state[base + _UPDATED] = now
        for field in (_ACTIVE, _NOT_BEFORE, _FAILURES, _PAUSED_UNTIL):
            self._state[base + field] = 0.0
        return base

    def _at_rest(self, base: int, now: float) -> bool:
        """True when the record equals a fresh one: forgetting it changes no limit."""
        state = self._state
        refilled = self.rate <= 0 or state[base + _TOKENS] + (now - state[base + _UPDATED]) * self.rate >= self.burst
        return (
            refilled
            and state[base + _ACTIVE] == 0
            and state[base + _FAILURES] == 0
            and state[base + _NOT_BEFORE] <= now
            and state[base + _PAUSED_UNTIL] <= now
        )
