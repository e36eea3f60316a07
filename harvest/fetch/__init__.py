"""The fetch layer shared by the web collectors: polite, bounded, SSRF-guarded HTTP GETs.

`Fetcher(FetchPolicy(...)).fetch(url, kind="image")` returns a `FetchResult`; see `client.py` for the
order of checks and `policy.py` for the limits.
"""

from harvest.fetch.client import ERROR_KINDS, Fetcher, FetchResult, parse_retry_after
from harvest.fetch.policy import DEFAULT_USER_AGENT, FetchPolicy
from harvest.fetch.robots import RobotsCache, RobotsRules, parse_robots
from harvest.fetch.ssrf import AddressGuard, BlockedAddress, Resolver, forbidden_reason

__all__ = [
    "DEFAULT_USER_AGENT",
    "ERROR_KINDS",
    "AddressGuard",
    "BlockedAddress",
    "FetchPolicy",
    "FetchResult",
    "Fetcher",
    "Resolver",
    "RobotsCache",
    "RobotsRules",
    "forbidden_reason",
    "parse_retry_after",
    "parse_robots",
]
