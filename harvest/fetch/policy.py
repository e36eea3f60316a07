"""How politely and how safely the web collectors fetch: one frozen policy shared by every worker thread."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_USER_AGENT", "FetchPolicy"]

DEFAULT_USER_AGENT = "GleanerBot/0.1 (+https://github.com/gleaner/gleaner; image dataset collector)"


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and manners of the fetch layer; the defaults are safe for crawling sites you do not own.

    `per_host_rate <= 0` turns the token bucket off (benchmarks against a local server); `allow_networks`
    lets named private networks through the SSRF guard without opening all of them (`allow_private`).
    """

    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    item_deadline: float = 60.0  # wall time for one item including retries: nothing hangs
    max_bytes: int = 50 * 1024 * 1024  # streamed body limit
    max_redirects: int = 5
    retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0  # exp backoff + jitter for 5xx/conn errors
    per_host_rate: float = 10.0
    per_host_burst: int = 20
    per_host_concurrency: int = 16  # token bucket + limit
    obey_robots: bool = True
    allow_private: bool = False
    respect_noai: bool = True
    # Additions beyond the shared contract:
    allow_networks: tuple[str, ...] = ()  # CIDRs let through the SSRF guard, e.g. ("10.1.2.0/24",)
    robots_max_bytes: int = 512 * 1024  # RFC 9309 asks crawlers to parse at least 500 KiB
    dns_ttl: float = 300.0  # seconds a resolved host is reused
    host_failure_limit: int = 8  # consecutive connection failures before a host is paused
    host_pause: float = 30.0  # seconds a failing host is skipped (items fail fast with `connection`)
    ca_bundle: str | None = None  # PEM file of extra CAs to trust instead of certifi's (in-house or test servers)
