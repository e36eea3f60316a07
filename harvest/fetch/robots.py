"""robots.txt per RFC 9309: parsed once per origin, shared by all threads, longest match wins.

Python's `urllib.robotparser` is not used: it takes the first matching rule instead of the longest and
ignores `*` and `$`, so it disagrees with Google and Bing on common files.
Availability (RFC 9309 2.3.1): 2xx → the rules; 4xx → no rules, allow all; 5xx, 429 or unreachable
(connection error, timeout) → disallow all, remembered for `retry_after` seconds, after which the next
request asks again. Such rules carry `unavailable` (the fetch error kind), so that collectors report the
host's trouble as a retryable failure instead of a final robots refusal.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

__all__ = ["RobotsCache", "RobotsRules", "parse_robots"]

# What a robots fetch reports: HTTP status (None when unreachable) and the body (None unless 2xx).
RobotsFetch = Callable[[str], tuple[int | None, bytes | None]]


def _normalise_path(path: str) -> str:
    """Percent-encoding normalised so that `/a%7Eb` and `/a~b` compare equal (RFC 9309 2.2.2)."""
    return quote(unquote(path), safe="/?=&;:@!$'()*+,~-._%")


@dataclass(frozen=True)
class _Rule:
    allow: bool
    path: str
    pattern: re.Pattern[str]

    @classmethod
    def make(cls, allow: bool, path: str) -> _Rule:
        path = _normalise_path(path)
        anchored = path.endswith("$")
        body = path[:-1] if anchored else path
        regex = ".*".join(re.escape(part) for part in body.split("*"))
        return cls(allow, path, re.compile(regex + ("$" if anchored else "")))


@dataclass(frozen=True)
class RobotsRules:
    """The rules of the group that applies to one user agent."""

    rules: tuple[_Rule, ...] = ()
    allow_all: bool = False
    disallow_all: bool = False
    unavailable: str | None = None  # fetch error kind when robots.txt could not be read (disallow_all is set)
    note: str = ""

    def allowed(self, path_and_query: str) -> bool:
        if self.disallow_all:
            return False
        if self.allow_all:
            return True
        target = _normalise_path(path_and_query or "/")
        if target == "/robots.txt":
            return True
        best: _Rule | None = None
        for rule in self.rules:
            if rule.pattern.match(target) and (
                best is None or len(rule.path) > len(best.path) or (len(rule.path) == len(best.path) and rule.allow)
            ):
                best = rule
        return best is None or best.allow


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)
    rules: list[_Rule] = field(default_factory=list)


def parse_robots(text: str, agent: str) -> RobotsRules:
    """Rules for the product token `agent` (e.g. "GleanerBot"); groups for the same agent are merged."""
    groups: list[_Group] = []
    current: _Group | None = None
    in_agents = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        key = key.lower()
        if key == "user-agent":
            if current is None or not in_agents:
                current = _Group()
                groups.append(current)
            current.agents.append(value.lower())
            in_agents = True
        elif key in ("allow", "disallow") and current is not None:
            in_agents = False
            if value:  # an empty Disallow allows everything: no rule
                current.rules.append(_Rule.make(key == "allow", value))
    token = agent.lower()
    mine = [g for g in groups if any(a != "*" and token.startswith(a) for a in g.agents)]
    chosen = mine or [g for g in groups if "*" in g.agents]
    return RobotsRules(rules=tuple(rule for group in chosen for rule in group.rules))


@dataclass
class _Cached:
    rules: RobotsRules
    expires: float  # monotonic; inf for a file that was read


class RobotsCache:
    """robots.txt fetched once per origin (scheme, host, port); threads asking at once wait for one fetch."""

    def __init__(self, fetch: RobotsFetch, agent: str, *, retry_after: float = 60.0) -> None:
        self.fetch = fetch
        self.agent = agent.split("/", 1)[0].strip() or agent
        self.retry_after = retry_after
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
        status, body = self.fetch(origin + "/robots.txt")
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
