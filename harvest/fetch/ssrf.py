"""SSRF guard: which addresses a collector may connect to, and a cached resolver that checks every answer.

The check runs where the socket is opened (see `connection.py`), on the addresses actually dialled, so a
redirect hop or a DNS answer that changes between the check and the connect (rebinding) cannot slip past.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "METADATA_ADDRESSES",
    "AddressGuard",
    "BlockedAddress",
    "Resolver",
    "forbidden_reason",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ResolveFn = Callable[[str], Sequence[str]]

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_NEGATIVE_TTL = 30.0  # a name that does not resolve is asked again after this many seconds


class BlockedAddress(Exception):
    """A connection to a forbidden address was refused (deliberately not an OSError: never retried)."""


def forbidden_reason(address: str | IPAddress) -> str | None:
    """Why a collector must not connect to `address` (None when it is a public unicast address)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return forbidden_reason(mapped)
        if ip.teredo is not None:
            return forbidden_reason(ip.teredo[1])
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for attribute, reason in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, attribute):
            return reason
    if not ip.is_global:  # shared (CGNAT), documentation and benchmarking ranges
        return "a non-global address"
    return None


def _system_resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]).split("%", 1)[0], None)
    return list(seen)


@dataclass
class _Entry:
    addresses: list[str] | None
    error: OSError | None
    expires: float


class Resolver:
    """A thread-safe DNS cache (one lookup per host per TTL, failures cached briefly).

    `overrides` maps host names to addresses without asking DNS: tests use it to point a name anywhere.
    """

    def __init__(
        self, ttl: float = 300.0, overrides: dict[str, Sequence[str]] | None = None, resolve: ResolveFn | None = None
    ) -> None:
        self.ttl = ttl
        self.overrides = {k.lower(): list(v) for k, v in (overrides or {}).items()}
        self._resolve = resolve or _system_resolve
        self._cache: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        """Settings only: a copy for another process starts with an empty cache and fresh locks."""
        return {"ttl": self.ttl, "overrides": self.overrides, "resolve": self._resolve}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["ttl"], state["overrides"], state["resolve"])  # type: ignore[misc]

    def resolve(self, host: str) -> list[str]:
        """Addresses of `host` (an IP literal resolves to itself); raises OSError when it cannot be resolved."""
        host = host.strip("[]").rstrip(".").lower()
        try:
            return [str(ipaddress.ip_address(host.split("%", 1)[0]))]
        except ValueError:
            pass
        if host in self.overrides:
            return list(self.overrides[host])
        with self._lock:
            entry = self._cache.get(host)
            if entry is None or entry.expires < time.monotonic():
                lock = self._locks.setdefault(host, threading.Lock())
            else:
                lock = None
        if lock is not None:
            with lock:  # one lookup per host even when many threads ask at once
                entry = self._cache.get(host)
                if entry is None or entry.expires < time.monotonic():
                    entry = self._lookup(host)
                    with self._lock:
                        self._cache[host] = entry
        assert entry is not None
        if entry.error is not None:
            raise entry.error
        return list(entry.addresses or [])

    def _lookup(self, host: str) -> _Entry:
        try:
            addresses = list(self._resolve(host))
        except OSError as exc:
            return _Entry(None, socket.gaierror(f"cannot resolve {host}: {exc}"), time.monotonic() + _NEGATIVE_TTL)
        if not addresses:
            return _Entry(None, socket.gaierror(f"{host} has no addresses"), time.monotonic() + _NEGATIVE_TTL)
        return _Entry(addresses, None, time.monotonic() + self.ttl)


class AddressGuard:
    """Resolve a host through the cache and refuse it when any of its addresses is forbidden."""

    def __init__(self, resolver: Resolver, *, allow_private: bool = False, allow_networks: Iterable[str] = ()) -> None:
        self.resolver = resolver
        self.allow_private = allow_private
        self.allow_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)

    def check_address(self, address: str) -> None:
        """Raise BlockedAddress unless `address` may be dialled under this guard's settings."""
        if self.allow_private:
            return
        ip = ipaddress.ip_address(address)
        if any(ip in network for network in self.allow_networks):
            return
        reason = forbidden_reason(ip)
        if reason:
            raise BlockedAddress(f"{address} is {reason} (use --allow-private to fetch from it)")

    def addresses(self, host: str) -> list[str]:
        """Checked addresses to dial for `host`; raises BlockedAddress, or OSError when it does not resolve."""
        addresses = self.resolver.resolve(host)
        for address in addresses:
            try:
                self.check_address(address)
            except BlockedAddress as exc:
                raise BlockedAddress(f"{host}: {exc}" if host.strip("[]") != address else str(exc)) from None
        return addresses
