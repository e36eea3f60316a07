"""A real HTTP fixture site on 127.0.0.1 (port 0) for the web collectors' tests and benchmarks.

    with Site(photos_dir) as site:          # or the `site` fixture in tests/harvest/conftest.py
        site.url("/img/000000000009.jpg")   # -> "http://127.0.0.1:PORT/img/000000000009.jpg"

Extending it (tests/support/pages.py does this for HTML pages): register a handler for a path prefix;
the longest registered prefix that matches the request path wins, so "/shop/" and "/shop/cats" can coexist.

    def category(request: Request) -> Response:
        page = int(request.arg("page", "1"))
        return Response.html(f"<img src='/img/{name}'>...")

    site.route("/shop/", category)

A handler receives a `Request` (method, path, query args, headers, the `site`) and returns a `Response`:
`status`, `headers`, and a `body` that is bytes or an iterable of byte chunks (streamed, for slow or endless
bodies; give `length` to send a Content-Length, else the connection closes after the body). Helpers:
`Response.html(text)`, `Response.image(data)`, `Response.redirect(location)`, `site.photo(name)`,
`site.photo_names`. Statistics for assertions: `site.hits[path]` (requests per path), `site.log` (one
`Hit` per request with its user agent), `site.peak` (most requests in progress at once, approximate: a
client may send its next request before the server thread has finished), `site.peaks[key]` (exact peak of
code inside `with site.tracking(key):`, e.g. /fault/hold's wait) — `site.reset()` clears them.
`site.flags` is a dict routes may read (e.g. /fault/switch/NAME fails until flags[NAME] is true).

`Site(photos, ssl_context=ctx)` serves HTTPS with a server-side `ssl.SSLContext`.

Built-in routes: /robots.txt (disallows /private/), /img/NAME (photos), /private/NAME (photos that
robots.txt forbids), and the fault routes:
  /fault/429?n=K[&key=K]    429 with Retry-After: 1 for the first K requests per key, then a photo
  /fault/503?n=K            the same with 503 (Retry-After: 1)
  /fault/flap               500 on every other request per key (first one fails), else a photo
  /fault/slow?delay=S       a photo dripped in 512-byte chunks every S seconds (0.2): far past a deadline
  /fault/endless            a JPEG header followed by zeros for ever, no Content-Length
  /fault/huge               Content-Length of 10 GB (a photo's bytes, then the connection closes)
  /fault/loop               302 → /fault/loop2 → 302 → /fault/loop
  /fault/chain?n=K          K redirects in a row, then a photo
  /fault/redirect?to=URL    one 302 to URL (absolute or relative)
  /fault/html-as-jpeg       an HTML page served as image/jpeg
  /fault/pixel.gif          a 1x1 GIF tracking pixel
  /fault/noai               a photo with X-Robots-Tag: noai
  /fault/hold?ms=M          a photo after M milliseconds (200); `site.peaks["hold"]` counts them at once
  /fault/switch/NAME        500 until `site.flags[NAME]` is true, then a photo
Photo-serving routes take `?img=NAME` to choose the photo (default: the first one).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "GIF_PIXEL",
    "Handler",
    "Hit",
    "LoopbackTarget",
    "Request",
    "Response",
    "Site",
    "add_escape_routes",
    "add_unruly_routes",
    "hostile_fetch_routes",
    "hostile_page_routes",
    "serve",
]

GIF_PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n\nUser-agent: BadBot\nDisallow: /\n"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    client: str
    site: Site

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def target(self) -> str:
        """Path plus query: the default key for per-URL fault counters."""
        query = "&".join(f"{k}={v}" for k, vs in sorted(self.query.items()) for v in vs)
        return self.path + ("?" + query if query else "")


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None  # Content-Length to announce for a streamed body
    raw: bool = False  # the body is the whole answer, status line and headers included (hostile servers)

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"})

    @classmethod
    def image(cls, data: bytes, content_type: str = "image/jpeg", **headers: str) -> Response:
        return cls(200, data, {"Content-Type": content_type, **headers})

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        return cls(status, b"", {"Location": location})


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Hit:
    path: str
    target: str
    user_agent: str | None
    referer: str | None
    at: float


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stalls
    server: _Server

    def do_GET(self) -> None:
        self.server.site._dispatch(self)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    site: Site

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-request are normal here (deadlines, size limits); say nothing."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class Site:
    """The fixture site; start with `with Site(photos) as site:` or `start()`/`stop()`."""

    def __init__(
        self, photos_dir: Path | None = None, *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context  # serve HTTPS with this server context
        self.photos: dict[str, bytes] = {}
        if photos_dir is not None:
            for path in sorted(Path(photos_dir).glob("*.jpg")):
                self.photos[path.name] = path.read_bytes()
        self.routes: dict[str, Handler] = {}
        self.flags: dict[str, Any] = {}
        self.hits: Counter[str] = Counter()
        self.log: list[Hit] = []
        self.active = 0
        self.peak = 0
        self.peaks: Counter[str] = Counter()
        self._tracked: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        _builtin_routes(self)

    # -- registry and helpers --------------------------------------------------------------------------

    def route(self, path_prefix: str, handler: Handler) -> None:
        """Serve requests whose path starts with `path_prefix` with `handler` (longest prefix wins)."""
        self.routes[path_prefix] = handler

    @property
    def photo_names(self) -> list[str]:
        return list(self.photos)

    def photo(self, name: str | None = None) -> bytes:
        if not self.photos:
            raise LookupError("this site was started without photos")
        return self.photos[name] if name else next(iter(self.photos.values()))

    def count(self, key: str) -> int:
        """Increment and return a named counter (fault routes count requests per key)."""
        with self._lock:
            self._counters[key] += 1
            return self._counters[key]

    def reset(self) -> None:
        with self._lock:
            self.hits.clear()
            self.log.clear()
            self._counters.clear()
            self.peak = self.active
            self.peaks.clear()

    @contextlib.contextmanager
    def tracking(self, key: str) -> Iterator[None]:
        """Count how many requests are inside this block at once (`site.peaks[key]`)."""
        with self._lock:
            self._tracked[key] += 1
            self.peaks[key] = max(self.peaks[key], self._tracked[key])
        try:
            yield
        finally:
            with self._lock:
                self._tracked[key] -= 1

    @property
    def port(self) -> int:
        assert self._server is not None, "the site is not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Site:
        server = _Server((self.host, 0), _RequestHandler)
        server.site = self
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Site:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------------------------

    def _handler_for(self, path: str) -> Handler | None:
        best = None
        for prefix in self.routes:
            if path.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return self.routes[best] if best is not None else None

    def _dispatch(self, raw: _RequestHandler) -> None:
        parts = urlsplit(raw.path)
        request = Request(
            method=raw.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=raw.headers,
            client=f"{raw.client_address[0]}:{raw.client_address[1]}",
            site=self,
        )
        with self._lock:
            self.hits[request.path] += 1
            self.log.append(
                Hit(
                    request.path, request.target, raw.headers.get("User-Agent"), raw.headers.get("Referer"), time.time()
                )
            )
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            handler = self._handler_for(request.path)
            response = handler(request) if handler else Response.text("not found", 404)
            self._send(raw, response)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            raw.close_connection = True  # the client went away (deadline, size limit): normal in fault tests
        finally:
            with self._lock:
                self.active -= 1

    @staticmethod
    def _send(raw: _RequestHandler, response: Response) -> None:
        if response.raw:
            raw.close_connection = True
            whole = response.body
            for piece in (whole,) if isinstance(whole, bytes | bytearray) else whole:
                raw.wfile.write(piece)
                raw.wfile.flush()
            return
        raw.send_response(response.status)
        body = response.body
        fixed: bytes | bytearray | None = None
        chunks: Iterable[bytes] = ()
        if isinstance(body, bytes | bytearray):
            fixed = body
        else:
            chunks = body
        headers = dict(response.headers)
        streamed = fixed is None
        if fixed is not None:
            headers.setdefault("Content-Length", str(len(fixed)))
        elif response.length is not None:
            headers["Content-Length"] = str(response.length)
        else:
            headers["Connection"] = "close"
        if streamed and response.length is not None:
            headers["Connection"] = "close"  # a streamed body may stop early: never reuse the connection
        for name, value in headers.items():
            raw.send_header(name, value)
        raw.end_headers()
        if raw.command == "HEAD":
            return
        if fixed is not None:
            raw.wfile.write(fixed)
        else:
            for chunk in chunks:
                raw.wfile.write(chunk)
                raw.wfile.flush()
        if headers.get("Connection") == "close":
            raw.close_connection = True


# -- built-in routes ----------------------------------------------------------------------------------------


def _photo_response(request: Request, **headers: str) -> Response:
    return Response.image(request.site.photo(request.arg("img")), **headers)


def _serve_photo(request: Request) -> Response:
    name = request.path.rsplit("/", 1)[-1]
    data = request.site.photos.get(name)
    return Response.image(data) if data is not None else Response.text("no such photo", 404)


def _fault_retry_after(status: int) -> Handler:
    def handler(request: Request) -> Response:
        limit = int(request.arg("n", "1") or 1)
        seen = request.site.count(f"{status}:{request.arg('key') or request.target}")
        if seen <= limit:
            return Response(status, b"slow down", {"Retry-After": "1", "Content-Type": "text/plain"})
        return _photo_response(request)

    return handler


def _fault_flap(request: Request) -> Response:
    seen = request.site.count(f"flap:{request.arg('key') or request.target}")
    return Response.text("flap", 500) if seen % 2 == 1 else _photo_response(request)


def _drip(data: bytes, size: int, delay: float) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        time.sleep(delay)
        yield data[start : start + size]


def _fault_slow(request: Request) -> Response:
    data = request.site.photo(request.arg("img"))
    delay = float(request.arg("delay", "0.2") or 0.2)
    return Response(200, _drip(data, 512, delay), {"Content-Type": "image/jpeg"}, length=len(data))


def _fault_endless(_request: Request) -> Response:
    def body() -> Iterator[bytes]:
        yield b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
        zeros = bytes(64 * 1024)
        for _ in itertools.count():
            yield zeros

    return Response(200, body(), {"Content-Type": "image/jpeg"})


def _fault_huge(request: Request) -> Response:
    return Response(200, iter([request.site.photo()]), {"Content-Type": "image/jpeg"}, length=10 * 1024**3)


def _fault_chain(request: Request) -> Response:
    left = int(request.arg("n", "3") or 3)
    if left <= 0:
        return _photo_response(request)
    return Response.redirect(f"/fault/chain?n={left - 1}")


def _fault_switch(request: Request) -> Response:
    name = request.path.rsplit("/", 1)[-1]
    return _photo_response(request) if request.site.flags.get(name) else Response.text("switched off", 500)


def _fault_hold(request: Request) -> Response:
    with request.site.tracking("hold"):
        time.sleep(int(request.arg("ms", "200") or 200) / 1000)
    return _photo_response(request)


def _builtin_routes(site: Site) -> None:
    html = "<!doctype html><html><body><h1>Not an image</h1></body></html>"
    routes: dict[str, Handler] = {
        "/robots.txt": lambda _r: Response.text(ROBOTS_TXT),
        "/img/": _serve_photo,
        "/private/": _serve_photo,
        "/fault/429": _fault_retry_after(429),
        "/fault/503": _fault_retry_after(503),
        "/fault/flap": _fault_flap,
        "/fault/slow": _fault_slow,
        "/fault/endless": _fault_endless,
        "/fault/huge": _fault_huge,
        "/fault/loop": lambda _r: Response.redirect("/fault/loop2"),
        "/fault/loop2": lambda _r: Response.redirect("/fault/loop"),
        "/fault/chain": _fault_chain,
        "/fault/redirect": lambda r: Response.redirect(r.arg("to") or "/"),
        "/fault/html-as-jpeg": lambda _r: Response(200, html.encode(), {"Content-Type": "image/jpeg"}),
        "/fault/pixel.gif": lambda _r: Response.image(GIF_PIXEL, "image/gif"),
        "/fault/noai": lambda r: _photo_response(r, **{"X-Robots-Tag": "noai"}),
        "/fault/hold": _fault_hold,
        "/fault/switch/": _fault_switch,
    }
    for prefix, handler in routes.items():
        site.route(prefix, handler)


def serve_files(site: Site, prefix: str, files: dict[str, bytes], content_type: str = "image/jpeg") -> None:
    """Serve `files` (name -> bytes) from memory under `prefix` (benchmarks: thousands of images)."""

    def handler(request: Request) -> Response:
        data = files.get(request.path[len(prefix) :])
        return Response.image(data, content_type) if data is not None else Response.text("not found", 404)

    site.route(prefix, handler)


# -- hostile: a page on an allowed host that tries to reach a loopback service (issue 16, item 1) ----------


class LoopbackTarget:
    """A hostile loopback service that counts whatever reaches it: TCP connections (any protocol, TLS and
    WebSocket included) and UDP datagrams (STUN, QUIC) on one port. `paths` holds each HTTP request's
    target (or "TLS" for a handshake); each TCP connection is answered with a 1x1 GIF and closed."""

    def __init__(self, host: str = "127.0.0.2", port: int = 0) -> None:
        self.tcp = socket.create_server((host, port), backlog=64)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, self.port))
        # Short timeouts, so the loops see `_stop` and end before the sockets close: a socket closed under a
        # blocked call stays bound, and the next test on the same port could not bind it.
        for sock in (self.tcp, self.udp):
            sock.settimeout(0.1)
        self._stop = threading.Event()
        self.host = host
        self.connections = 0
        self.datagrams = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=loop, daemon=True) for loop in (self._accept, self._receive)]

    @property
    def port(self) -> int:
        return int(self.tcp.getsockname()[1])

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def hits(self) -> int:
        with self._lock:
            return self.connections + self.datagrams

    def __enter__(self) -> LoopbackTarget:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        self.tcp.close()
        self.udp.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5.0)
            data = conn.recv(65536)
            words = data.split(b" ", 2)
            path = "TLS" if data[:1] == b"\x16" else words[1].decode("latin-1") if len(words) > 1 else "?"
            with self._lock:
                self.paths.append(path)
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: {len(GIF_PIXEL)}\r\n"
            conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + GIF_PIXEL)

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                self.udp.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.datagrams += 1


def add_escape_routes(site: Site, target: str, rebind_origin: str) -> None:
    """`/t/escape/page?run=N`: a page that tries every way out to `target` (an origin such as
    http://127.0.0.2:PORT): 302s from an img, an iframe, fetch() and a CSS background, WebSockets (ws and
    wss), a STUN request (WebRTC) and an img on `rebind_origin` (a name that a browser resolving it itself
    would send to the target). Its load event waits (`/t/escape/hold`) until the script's attempts have all
    settled and it has called `/t/escape/done`, so a renderer cannot close the page before they ran."""
    host_port = target.split("://", 1)[1]

    def event(request: Request) -> threading.Event:
        flag: threading.Event = request.site.flags.setdefault(f"escape:{request.arg('run', '0')}", threading.Event())
        return flag

    def page(request: Request) -> Response:
        run = request.arg("run", "0")
        hop = f"/fault/redirect?to={target}"
        script = f"""
const settle = (p) => Promise.race([p, new Promise((done) => setTimeout(done, 5000))]);
const socketTry = (url) => new Promise((done) => {{
  try {{ const ws = new WebSocket(url); ws.onopen = ws.onerror = ws.onclose = () => {{ done(); }}; }}
  catch (e) {{ done(); }}
}});
const stunTry = () => new Promise((done) => {{
  try {{
    const pc = new RTCPeerConnection({{iceServers: [{{urls: 'stun:{host_port}'}}]}});
    pc.createDataChannel('x');
    pc.onicecandidate = (e) => {{ if (!e.candidate) done(); }};
    pc.createOffer().then((offer) => pc.setLocalDescription(offer)).catch(done);
  }} catch (e) {{ done(); }}
}});
Promise.allSettled([
  fetch('{hop}/fetch', {{mode: 'no-cors'}}).catch(() => null),
  settle(socketTry('ws://{host_port}/ws')),
  settle(socketTry('wss://{host_port}/wss')),
  settle(stunTry()),
]).then(() => fetch('/t/escape/done?run={run}')).catch(() => fetch('/t/escape/done?run={run}'));
"""
        return Response.html(
            "<!doctype html><html><head><style>"
            f".bg {{ background-image: url('{hop}/css'); width: 20px; height: 20px; }}</style></head><body>"
            f"<div class='bg'></div><img src='{hop}/img'><iframe src='{hop}/frame'></iframe>"
            f"<img src='{rebind_origin}/t/escape/rebind'><img src='/t/escape/hold?run={run}'>"
            f"<script>{script}</script></body></html>"
        )

    def hold(request: Request) -> Response:
        event(request).wait(20.0)
        return Response.image(GIF_PIXEL, "image/gif")

    def done(request: Request) -> Response:
        event(request).set()
        return Response.text("ok")

    site.route("/t/escape/page", page)
    site.route("/t/escape/hold", hold)
    site.route("/t/escape/done", done)
    site.route("/t/escape/rebind", lambda _r: Response.image(GIF_PIXEL, "image/gif"))


# -- hostile: pages that open windows without end or never settle (issue 16, item 10) --------------------------


def add_unruly_routes(site: Site) -> None:
    """`/t/unruly/popups` opens 50 windows at once and one more every 20 ms (each loads `/t/unruly/child`);
    `/t/unruly/forever` spins in an inline script, so its load event never comes and its tab burns a core."""
    popups = (
        "<script>for (let i = 0; i < 50; i++) window.open('/t/unruly/child?n=' + i);"
        "setInterval(() => window.open('/t/unruly/child'), 20);</script>"
    )
    site.route("/t/unruly/popups", lambda _r: Response.html(f"<html><body><h1>pop</h1>{popups}</body></html>"))
    site.route("/t/unruly/child", lambda _r: Response.html("<html><body>child</body></html>"))
    site.route("/t/unruly/forever", lambda _r: Response.html("<html><body><script>for (;;) {}</script></body></html>"))


@contextlib.contextmanager
def serve(photos_dir: Path | None = None) -> Iterator[Site]:
    with Site(photos_dir) as site:
        yield site


def main() -> None:
    """`python -m tests.support.site DIR`: serve DIR's files under /files/ and print the base URL."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    files = {p.name: p.read_bytes() for p in sorted(args.folder.iterdir()) if p.is_file()}
    with Site() as site:
        serve_files(site, "/files/", files)
        print(site.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()


# -- hostile fetch routes (issue 16, item 6): answers that never finish arriving ------------------------------


def _trickle_headers(request: Request) -> Response:
    """A status line, then a header that never ends, a byte every `delay` seconds (0.2): no read times out."""
    delay = float(request.arg("delay", "0.2") or 0.2)

    def body() -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Trickle: "
        while True:
            time.sleep(delay)
            yield b"a"

    return Response(body=body(), raw=True)


def _endless_continue(request: Request) -> Response:
    """`100 Continue` interim answers for ever, one every `delay` seconds (0.05): the final status never comes."""
    delay = float(request.arg("delay", "0.05") or 0.05)

    def body() -> Iterator[bytes]:
        while True:
            yield b"HTTP/1.1 100 Continue\r\n\r\n"
            time.sleep(delay)

    return Response(body=body(), raw=True)


def hostile_fetch_routes(site: Site) -> None:
    """/hostile/trickle-headers?delay=S and /hostile/endless-continue?delay=S (see their docstrings)."""
    site.route("/hostile/trickle-headers", _trickle_headers)
    site.route("/hostile/endless-continue", _endless_continue)


# -- hostile pages (issue 16, item 9): markup that costs far more to parse than to send -----------------------


def _dense_page(request: Request) -> Response:
    """`mb` megabytes (20) of `<i></i>` between two photos (`first`, `last`: photo names, default the first
    two): BeautifulSoup held such a page at about 70 times its size."""
    size = int(float(request.arg("mb", "20") or 20) * 1024 * 1024)
    names = request.site.photo_names
    first, last = request.arg("first") or names[0], request.arg("last") or names[1]
    head = f"<!doctype html><html><head><title>dense</title></head><body><img src='/img/{first}'>".encode()
    tail = f"<img src='/img/{last}'></body></html>".encode()
    spam = b"<i></i>" * (64 * 1024 // 7)
    count, rest = divmod(max(0, size - len(head) - len(tail)), len(spam))

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(count):
            yield spam
        yield spam[: rest - rest % 7]
        yield tail

    length = len(head) + count * len(spam) + rest - rest % 7 + len(tail)
    return Response(200, body(), {"Content-Type": "text/html; charset=utf-8"}, length=length)


def hostile_page_routes(site: Site) -> None:
    """/hostile/dense?mb=N[&first=NAME&last=NAME] (see its docstring)."""
    site.route("/hostile/dense", _dense_page)
