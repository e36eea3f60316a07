"""robots.txt per RFC 9309: parsed once per origin, shared by all threads, longest match wins.

Parsing and matching are Protego's (scrapy's robots.txt parser): RFC 9309 longest match, `*` and `$` matched
in linear time (a hand-made regular expression per rule backtracked for minutes on a rule with a dozen `*`),
percent-encoding normalised, `Crawl-delay` read. Python's `urllib.robotparser` is not used: it takes the first
matching rule instead of the longest and ignores `*` and `$`.
Availability (RFC 9309 2.3.1): 2xx → the rules; 4xx → no rules, allow all; 5xx, 429 or unreachable
(connection error, timeout) → disallow all, remembered for `retry_after` seconds, after which the next
request asks again. Such rules carry `unavailable` (the fetch error kind), so that collectors report the
host's trouble as a retryable failure instead of a final robots refusal.
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from protego import Protego

__all__ = ["RobotsCache", "RobotsRules", "parse_robots"]

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


class RobotsCache:
    """robots.txt fetched once per origin (scheme, host, port); threads asking at once wait for one fetch.

    With `shared_dir`, processes that share the folder also share the answers: the first to need an
    origin's file fetches it under a file lock and leaves it there for the others (worker processes of
    one run), so the site still sees one request per origin.
    """

    def __init__(
        self, fetch: RobotsFetch, agent: str, *, retry_after: float = 60.0, shared_dir: Path | None = None
    ) -> None:
        self.fetch = fetch
        self.agent = agent.split("/", 1)[0].strip() or agent
        self.retry_after = retry_after
        self.shared_dir = shared_dir
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
        if self.shared_dir is not None:
            return self._load_shared(origin, self.shared_dir)
        return self._interpret(*self.fetch(origin + "/robots.txt"))

    def _load_shared(self, origin: str, folder: Path) -> _Cached:
        """The answer another process left in `folder`, else fetch it (one process at a time per origin).

        A file holds "STATUS EXPIRES HAS_BODY\n" and the body; STATUS -1 is unreachable, EXPIRES is wall-clock
        time (processes do not share a monotonic origin) or inf, HAS_BODY 0 when a 2xx body could not be read
        (too large, cut off), which must stay "disallow for now", not become an empty file that allows all.
        """
        name = hashlib.sha256(origin.encode()).hexdigest()[:32]
        answer = folder / f"{name}.robots"
        with open(folder / f"{name}.lock", "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            left = self._read_shared(answer)
            if left is not None:
                return left
            status, body = self.fetch(origin + "/robots.txt")
            cached = self._interpret(status, body)
            expires_wall = cached.expires - time.monotonic() + time.time()
            partial = answer.with_suffix(".part")
            header = f"{-1 if status is None else status} {expires_wall!r} {int(body is not None)}\n"
            partial.write_bytes(header.encode() + (body or b""))
            partial.replace(answer)
            return cached

    def _read_shared(self, answer: Path) -> _Cached | None:
        try:
            header, _, body = answer.read_bytes().partition(b"\n")
            status_text, expires_text, has_body = header.split()
            status, expires = int(status_text), float(expires_text) - time.time() + time.monotonic()
        except (FileNotFoundError, ValueError):
            return None
        if expires <= time.monotonic():
            return None
        rules = self._interpret(status if status >= 0 else None, body if has_body == b"1" else None).rules
        return _Cached(rules, expires)

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
