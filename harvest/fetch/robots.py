"""robots.txt per RFC 9309: parsed once per origin, shared by all threads, longest match wins.

Parsing and matching are Protego's (scrapy's robots.txt parser): RFC 9309 longest match, `*` and `$` matched
in linear time (a hand-made regular expression per rule backtracked for minutes on a rule with a dozen `*`),
percent-encoding normalised, `Crawl-delay` read. Python's `urllib.robotparser` is not used: it takes the first
matching rule instead of the longest and ignores `*` and `$`.
Availability (RFC 9309 2.3.1): 2xx → the rules; 4xx → no rules, allow all; 5xx, 429 or unreachable
(connection error, timeout) → disallow all, remembered for `retry_after` seconds, after which the next
request asks again. Such rules carry `unavailable` (the fetch error kind), so that collectors report the
host's trouble as a retryable failure instead of a final robots refusal.
Processes of one run share the answers through a `RobotsStore`: a folder on one machine (FolderRobotsStore),
the catalog across machines (harvest.fetch.catalogshare.CatalogRobotsStore).
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from protego import Protego

__all__ = ["FolderRobotsStore", "RobotsCache", "RobotsRules", "RobotsStore", "SharedAnswer", "parse_robots"]

# What a robots fetch reports: HTTP status (None when unreachable) and the body (None unless 2xx).
RobotsFetch = Callable[[str], tuple[int | None, bytes | None]]


@dataclass(frozen=True)
class RobotsRules:
    """The rules that apply to one user agent: a parsed file (Protego), or allow/disallow all."""

    parser: Protego | None = None
    agent: str = "*"
    allow_all: bool = False
    disallow_all: bool = False
    unavailable: str | None = None  # fetch error kind when robots.txt could not be read (disallow_all is set)
    note: str = ""

    def allowed(self, path_and_query: str) -> bool:
        if self.disallow_all:
            return False
        if self.allow_all or self.parser is None:
            return True
        target = path_and_query or "/"
        if target == "/robots.txt":
            return True
        return bool(self.parser.can_fetch(target, self.agent))

    @property
    def crawl_delay(self) -> float | None:
        """The file's Crawl-delay for this agent (seconds), None when it sets none."""
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(self.agent)
        return float(delay) if delay is not None else None


def parse_robots(text: str, agent: str) -> RobotsRules:
    """Rules for the product token `agent` (e.g. "GleanerBot"): its own group, else the `*` group. Protego
    matches patterns in linear time (no regular expressions: a hostile `/*a*a*a...` costs one scan)."""
    return RobotsRules(parser=Protego.parse(text), agent=agent)


@dataclass
class _Cached:
    rules: RobotsRules
    expires: float  # monotonic; inf for a file that was read


# A shared answer: HTTP status (None when unreachable), body (None unless a 2xx body was read whole), and the
# seconds it stays valid (inf: for good).
SharedAnswer = tuple[int | None, bytes | None, float]


class RobotsStore(Protocol):
    """Where the processes of one run share robots.txt answers: `share` returns the answer another process
    left, else calls `load` (fetch it now), keeps its answer for the others and returns it. One `load` per
    origin at a time across all the processes, so the site sees one request."""

    def share(self, origin: str, load: Callable[[], SharedAnswer]) -> SharedAnswer: ...


class RobotsCache:
    """robots.txt fetched once per origin (scheme, host, port); threads asking at once wait for one fetch.

    With a `store` (or `shared_dir`, a FolderRobotsStore), processes that share it also share the answers:
    the first to need an origin's file fetches it and leaves the answer for the others (worker processes of
    one run, on one machine through a folder or on many through the catalog), so the site still sees one
    request per origin.
    """

    def __init__(
        self,
        fetch: RobotsFetch,
        agent: str,
        *,
        retry_after: float = 60.0,
        shared_dir: Path | None = None,
        store: RobotsStore | None = None,
    ) -> None:
        self.fetch = fetch
        self.agent = agent.split("/", 1)[0].strip() or agent
        self.retry_after = retry_after
        self.store = store if store is not None else FolderRobotsStore(shared_dir) if shared_dir else None
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def allowed(self, url: str) -> bool:
        rules, path = self.rules_for_url(url)
        return rules.allowed(path)

    def rules_for_url(self, url: str) -> tuple[RobotsRules, str]:
        """The rules of the URL's origin and the path (with query) they apply to."""
        parts = urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return self.rules_for(f"{parts.scheme}://{parts.netloc}".lower()), path

    def rules_for(self, origin: str) -> RobotsRules:
        cached = self._cache.get(origin)
        if cached is not None and cached.expires > time.monotonic():
            return cached.rules
        with self._lock:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            cached = self._cache.get(origin)
            if cached is None or cached.expires <= time.monotonic():
                cached = self._load(origin)
                self._cache[origin] = cached
        return cached.rules

    def _load(self, origin: str) -> _Cached:
        if self.store is None:
            return self._interpret(*self.fetch(origin + "/robots.txt"))

        def load() -> SharedAnswer:
            status, body = self.fetch(origin + "/robots.txt")
            return status, body, self._interpret(status, body).expires - time.monotonic()

        status, body, valid = self.store.share(origin, load)
        return _Cached(self._interpret(status, body).rules, time.monotonic() + valid)

    def _interpret(self, status: int | None, body: bytes | None) -> _Cached:
        if status is not None and 200 <= status < 300 and body is not None:
            return _Cached(parse_robots(body.decode("utf-8", errors="replace"), self.agent), float("inf"))
        if status is not None and 400 <= status < 500 and status != 429:
            return _Cached(RobotsRules(allow_all=True), float("inf"))
        if status is None:
            kind, note = "connection", "unreachable"
        else:
            kind, note = ("rate_limited" if status == 429 else "http_5xx"), f"HTTP {status}"
        rules = RobotsRules(disallow_all=True, unavailable=kind, note=note)
        return _Cached(rules, time.monotonic() + self.retry_after)


class FolderRobotsStore:
    """Answers shared through a folder by the processes of one machine, one file per origin under a file lock.

    A file holds "STATUS EXPIRES HAS_BODY\n" and the body; STATUS -1 is unreachable, EXPIRES is wall-clock time
    (processes do not share a monotonic origin) or inf, HAS_BODY 0 when a 2xx body could not be read (too
    large, cut off), which must stay "disallow for now", not become an empty file that allows all.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def share(self, origin: str, load: Callable[[], SharedAnswer]) -> SharedAnswer:
        name = hashlib.sha256(origin.encode()).hexdigest()[:32]
        answer = self.folder / f"{name}.robots"
        with open(self.folder / f"{name}.lock", "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            left = self._read(answer)
            if left is not None:
                return left
            status, body, valid = load()
            header = f"{-1 if status is None else status} {time.time() + valid!r} {int(body is not None)}\n"
            partial = answer.with_suffix(".part")
            partial.write_bytes(header.encode() + (body or b""))
            partial.replace(answer)
            return status, body, valid

    @staticmethod
    def _read(answer: Path) -> SharedAnswer | None:
        try:
            header, _, body = answer.read_bytes().partition(b"\n")
            status_text, expires_text, has_body = header.split()
            status, valid = int(status_text), float(expires_text) - time.time()
        except (FileNotFoundError, ValueError):
            return None
        if valid <= 0:
            return None
        return (status if status >= 0 else None), (body if has_body == b"1" else None), valid
