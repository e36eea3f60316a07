"""Running the review app with uvicorn on a socket we bind ourselves, so the printed URL has the real port."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from curate.review.app import create_app
from curate.review.auth import loopback_hosts
from storage.errors import GleanerError
from storage.workspace import Workspace

__all__ = ["DEFAULT_PORT", "ReviewServer", "bind", "is_loopback", "prepare", "review_url", "running", "serve"]

DEFAULT_PORT = 8765
log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket; port None tries DEFAULT_PORT, then any free port; 0 is any free port."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise GleanerError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, *_rest, address = infos[0]
    candidates = [DEFAULT_PORT, 0] if port is None else [port]
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address[0], candidate, *address[2:]))
        except OSError as exc:
            sock.close()
            if candidate == candidates[-1]:
                raise GleanerError(f"cannot listen on {host}:{candidate}: {exc.strerror}; try --port 0") from None
            continue
        sock.listen(128)
        return sock
    raise AssertionError("unreachable")


def review_url(sock: socket.socket, token: str, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


class _Server(uvicorn.Server):
    """uvicorn's server that calls `on_started` once it listens with its signal handlers in place, so a
    Ctrl-C that follows the announced URL always meets a graceful shutdown."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started()


@dataclass
class ReviewServer:
    """A bound socket, the app and the uvicorn server that will run it."""

    app: Starlette
    sock: socket.socket
    server: uvicorn.Server
    url: str

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def run(self) -> None:
        self.server.run(sockets=[self.sock])


def prepare(
    workspace: Workspace,
    host: str = "127.0.0.1",
    port: int | None = None,
    on_started: Callable[[], None] | None = None,
) -> ReviewServer:
    """Bind and build, without serving yet; `on_started` runs once the server listens."""
    allowed = loopback_hosts() if is_loopback(host) else None
    app = create_app(workspace, allowed_hosts=allowed)
    sock = bind(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = _Server(config, on_started)
    return ReviewServer(app, sock, server, review_url(sock, app.state.review.guard.token, host))


@contextmanager
def running(workspace: Workspace, host: str = "127.0.0.1", port: int | None = 0) -> Iterator[ReviewServer]:
    """Serve in a background thread for the duration of a block (tests, notebooks)."""
    review = prepare(workspace, host, port)
    thread = threading.Thread(target=review.run, name="curate-review", daemon=True)
    thread.start()
    try:
        while not review.server.started and thread.is_alive():
            threading.Event().wait(0.01)
        yield review
    finally:
        review.server.should_exit = True
        thread.join(timeout=10)
        review.sock.close()


def serve(
    workspace: Workspace,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    open_browser: bool = True,
    announce: Callable[[str], None] = print,
    warn: Callable[[str], None] = log.warning,
) -> None:
    """Serve until Ctrl-C; announce the URL with its token once the server listens and handles Ctrl-C."""
    if not is_loopback(host):
        warn(
            f"serving on {host}, not on 127.0.0.1: anyone who can reach this machine and sees the URL can change "
            "labels, and traffic is not encrypted; prefer an SSH tunnel"
        )

    def started() -> None:
        announce(review.url)
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(review.url,), daemon=True).start()

    review = prepare(workspace, host, port, on_started=started)
    try:
        review.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: that is a normal stop
        pass
    finally:
        review.sock.close()
