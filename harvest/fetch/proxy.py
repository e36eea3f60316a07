"""A forward proxy on 127.0.0.1 through which the rendering browser makes every connection.

Route interception in the browser sees only the first URL of a redirect chain and no WebSockets, and the
browser resolves host names itself, so a guard there can be walked around. Here every hop arrives on its
own (plain HTTP as an absolute-URI request, HTTPS as `CONNECT host:port`): the host is resolved once with the
fetch layer's `AddressGuard`, refused when the guard refuses it, and the connection goes to the very address
that was checked. Anything the proxy cannot check is refused: upgrades (WebSocket), other schemes, and
tunnels whose first bytes are not a TLS handshake (a `ws://` socket tunnelled through CONNECT).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from harvest.fetch.ssrf import AddressGuard, BlockedAddress

__all__ = ["REFUSED_HEADER", "GuardedProxy", "OnRefuse"]

REFUSED_HEADER = "X-Gleaner-Refused"  # on the proxy's own refusals (an upstream's copy is dropped)
MAX_HEAD = 64 * 1024
_HOP_HEADERS = frozenset(
    ("connection", "proxy-connection", "keep-alive", "proxy-authorization", "te", "trailer", "upgrade")
)
_TLS_HANDSHAKE = 0x16
# Called with (target, kind, reason) for each refused request: kind is "ssrf", "scheme" or "connection".
OnRefuse = Callable[[str, str, str], None]


class _Refused(Exception):
    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason


class GuardedProxy:
    """A small threaded HTTP/CONNECT proxy that dials only addresses `guard` approved.

    At most `max_connections` browser connections are served at once (others wait in the listen backlog);
    every socket has `idle_timeout`, and `close()` shuts the open ones so no thread outlives the browser.
    """

    def __init__(
        self,
        guard: AddressGuard,
        *,
        connect_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        max_connections: int = 64,
        on_refuse: OnRefuse | None = None,
    ) -> None:
        self.guard = guard
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.on_refuse = on_refuse
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._listener is not None, "the proxy is not started"
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> GuardedProxy:
        listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        listener.settimeout(0.2)  # the accept loop looks at `_closed` this often
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, name="render-proxy", daemon=True)
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop accepting, cut every open connection and wait (briefly) for their threads."""
        self._closed.set()
        if self._acceptor is not None:
            self._acceptor.join(5.0)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sockets, threads = list(self._open), list(self._threads)
        for sock in sockets:
            _shutdown(sock)
        for thread in threads:
            thread.join(5.0)

    def __enter__(self) -> GuardedProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- connections ---------------------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            if not self._slots.acquire(timeout=0.2):
                continue
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                self._slots.release()
                continue
            except OSError:
                self._slots.release()
                return
            thread = threading.Thread(target=self._serve, args=(client,), name="render-proxy-conn", daemon=True)
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._open.add(sock)
        if self._closed.is_set():
            _shutdown(sock)
        return sock

    def _serve(self, client: socket.socket) -> None:
        opened = [client]  # this connection's sockets, the upstream one once dialled: all closed at the end
        try:
            client.settimeout(self.idle_timeout)
            self._track(client)
            head, rest = _read_head(client, b"", time.monotonic() + self.idle_timeout)
            method, target, version, headers = _parse_request(head)
            try:
                if method == "CONNECT":
                    self._tunnel(client, target, rest, opened)
                else:
                    self._forward(client, method, target, version, headers, rest, opened)
            except _Refused as refusal:
                if self.on_refuse is not None and refusal.kind != "connection":
                    self.on_refuse(target, refusal.kind, refusal.reason)
                client.sendall(_refusal(refusal))
        except (OSError, ValueError):
            pass  # a broken, slow or malformed connection: drop it
        finally:
            for sock in opened:
                with self._lock:
                    self._open.discard(sock)
                sock.close()
            with self._lock:
                self._threads.discard(threading.current_thread())
            self._slots.release()

    def _dial(self, host: str, port: int, opened: list[socket.socket]) -> socket.socket:
        """Connect to an address of `host` that the guard checked (never to a fresh lookup of the name)."""
        try:
            addresses = self.guard.addresses(host)
        except BlockedAddress as exc:
            raise _Refused(403, "ssrf", str(exc)) from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise _Refused(502, "connection", f"cannot resolve {host}: {exc}") from None
        last: OSError | None = None
        for address in addresses:
            try:
                sock = socket.create_connection((address, port), timeout=self.connect_timeout)
            except OSError as exc:
                last = exc
                continue
            sock.settimeout(self.idle_timeout)
            opened.append(sock)
            return self._track(sock)
        raise _Refused(502, "connection", f"cannot connect to {host}:{port}: {last}")

    def _tunnel(self, client: socket.socket, target: str, rest: bytes, opened: list[socket.socket]) -> None:
        host, port = _authority(target, None)
        upstream = self._dial(host, port, opened)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        first = rest or client.recv(65536)
        if not first:
            return
        if first[0] != _TLS_HANDSHAKE:  # plaintext in a tunnel: a ws:// socket or a protocol we cannot check
            if self.on_refuse is not None:
                self.on_refuse(target, "scheme", "only TLS may be tunnelled (WebSockets are refused)")
            return
        upstream.sendall(first)
        _relay(client, upstream, self.idle_timeout, forward_client=True)

    def _forward(
        self,
        client: socket.socket,
        method: str,
        target: str,
        version: str,
        headers: list[tuple[str, str]],
        rest: bytes,
        opened: list[socket.socket],
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise _Refused(403, "scheme", f"only http:// requests and CONNECT are proxied: {target[:200]}")
        names = {name.lower() for name, _ in headers}
        if "upgrade" in names:
            raise _Refused(403, "scheme", "protocol upgrades (WebSockets) are refused")
        if "transfer-encoding" in names:
            raise _Refused(411, "scheme", "request bodies need a Content-Length")
        length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
        host, port = _authority(parts.netloc, 80)
        upstream = self._dial(host, port, opened)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        named = [token.strip().lower() for n, v in headers if n.lower() == "connection" for token in v.split(",")]
        dropped = _HOP_HEADERS | set(named)  # headers the Connection header names are hop-by-hop too
        lines = [f"{method} {path} {version}", f"Host: {parts.netloc}"]
        lines += [f"{n}: {v}" for n, v in headers if n.lower() not in dropped and n.lower() != "host"]
        lines.append("Connection: close")
        upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        body = rest[:length]
        upstream.sendall(body)
        remaining = length - len(body)
        while remaining > 0:
            chunk = client.recv(min(remaining, 65536))
            if not chunk:
                return
            upstream.sendall(chunk)
            remaining -= len(chunk)
        self._answer(client, upstream)

    def _answer(self, client: socket.socket, upstream: socket.socket) -> None:
        """Pass the response on with `Connection: close`, so each browser connection carries one request."""
        rest = b""
        deadline = time.monotonic() + self.idle_timeout  # for the final head, however many 1xx come first
        while True:
            head, rest = _read_head(upstream, rest, deadline)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            if status == 101:  # no upgrade was asked for: nothing to pass on
                return
            kept = [h for h in header_lines if h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
            kept = [h for h in kept if h.split(":", 1)[0].strip().lower() != REFUSED_HEADER.lower()]
            if status >= 200:
                kept.append("Connection: close")
            client.sendall(("\r\n".join([status_line, *kept]) + "\r\n\r\n").encode("latin-1"))
            if status >= 200:
                break
        if rest:
            client.sendall(rest)
        _relay(upstream, client, self.idle_timeout, forward_client=False)


def _relay(a: socket.socket, b: socket.socket, idle: float, *, forward_client: bool) -> None:
    """Copy a -> b (and b -> a when `forward_client`) until either side closes or nothing moves for `idle` s.

    With `forward_client` off, `b` is the browser and whatever it sends is dropped: a second request on the
    same connection must come back through the checks, not reach this upstream.
    """
    while True:
        readable, _, _ = select.select([a, b], [], [], idle)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            if sock is a:
                b.sendall(data)
            elif forward_client:
                a.sendall(data)


def _read_head(sock: socket.socket, buffered: bytes, deadline: float) -> tuple[bytes, bytes]:
    """The bytes up to the blank line that ends an HTTP head, and whatever arrived after it.

    The head must be complete by `deadline` (a `time.monotonic()` value): a server dripping its headers a
    byte at a time would otherwise hold one of the proxy's bounded connections for ever.
    """
    data = buffered
    timeout = sock.gettimeout()
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise ValueError("HTTP head too large")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("HTTP head not complete in time")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("connection closed inside an HTTP head")
        data += chunk
    sock.settimeout(timeout)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _parse_request(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, version = request_line.split(" ")  # anything but three words is a ValueError
    headers = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise ValueError(f"bad header line: {line[:100]!r}")
        headers.append((name, value.strip()))
    return method.upper(), target, version, headers


def _authority(netloc: str, default_port: int | None) -> tuple[str, int]:
    """Host and port of `host:port` or `[v6]:port` (no user info: a browser never sends it here)."""
    if "@" in netloc:
        raise ValueError("user info in a proxied authority")
    parts = urlsplit(f"//{netloc}")
    host, port = parts.hostname, parts.port or default_port
    if not host or port is None:
        raise ValueError(f"bad authority: {netloc[:100]!r}")
    return host, port


def _refusal(refusal: _Refused) -> bytes:
    body = refusal.reason.encode("utf-8", "replace")
    reason = {403: "Forbidden", 411: "Length Required"}.get(refusal.status, "Bad Gateway")
    head = (
        f"HTTP/1.1 {refusal.status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"{REFUSED_HEADER}: {refusal.kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
