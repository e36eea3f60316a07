"""Running the review app with uvicorn on a socket we bind ourselves, so the printed URL has the real port.

Listening beyond loopback takes `allow_remote` (`--allow-remote`), and even then only the Host names of this
machine (and those passed in `allowed_hosts`) are served, so DNS rebinding stays defeated. The browser is opened
on a private (0600) redirect file with its own one-time link, so no link appears in the browser's command line.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import os
import socket
import tempfile
import threading
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from curate.review.app import create_app
from curate.review.auth import loopback_hosts
from storage.errors import GleanerError
from storage.workspace import Workspace

__all__ = [
    "DEFAULT_PORT",
    "ReviewServer",
    "allowed_hosts_for",
    "bind",
    "is_loopback",
    "open_in_browser",
    "prepare",
    "review_url",
    "running",
    "serve",
]

DEFAULT_PORT = 8765
WILDCARDS = frozenset({"0.0.0.0", "::", "[::]", ""})
REDIRECT_FILE_SECONDS = 120.0  # how long the browser's private redirect file lives
log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _names_of_this_machine() -> set[str]:
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names.update(str(info[4][0]) for info in socket.getaddrinfo(name, None))
        except OSError:
            continue
    return {name.lower() for name in names if name}


def allowed_hosts_for(host: str, extra: tuple[str, ...] | list[str] = ()) -> set[str]:
    """The Host header values served when listening on `host`: the loopback names, the bound address itself
    (unless it is a wildcard), and for a non-loopback address this machine's names and addresses plus `extra`."""
    allowed = loopback_hosts() | {name.strip("[]").lower() for name in extra}
    if host not in WILDCARDS:
        allowed.add(host.strip("[]").lower())
    if not is_loopback(host):
        allowed |= _names_of_this_machine()
    return allowed


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
    url: str  # a one-time link: it opens one session, once
    host: str = "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def token(self) -> str:
        """The bearer token for scripts (`Authorization: Bearer ...`); it never opens a session from a URL."""
        return str(self.app.state.review.guard.token)

    def new_link(self) -> str:
        """Another one-time link (for a second browser)."""
        return review_url(self.sock, self.app.state.review.guard.issue_link(), self.host)

    def run(self) -> None:
        self.server.run(sockets=[self.sock])


def prepare(
    workspace: Workspace,
    host: str = "127.0.0.1",
    port: int | None = None,
    on_started: Callable[[], None] | None = None,
    *,
    allow_remote: bool = False,
    allowed_hosts: tuple[str, ...] | list[str] = (),
) -> ReviewServer:
    """Bind and build, without serving yet; `on_started` runs once the server listens. A host that is not
    loopback needs `allow_remote`; `allowed_hosts` adds Host names to serve (a DNS name of this machine)."""
    if not is_loopback(host) and not allow_remote:
        raise GleanerError(
            f"--host {host} would serve the review app (which changes labels, without TLS) beyond this machine: "
            "pass --allow-remote to mean it, or prefer an SSH tunnel to 127.0.0.1"
        )
    app = create_app(workspace, allowed_hosts=allowed_hosts_for(host, allowed_hosts))
    sock = bind(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = _Server(config, on_started)
    return ReviewServer(app, sock, server, review_url(sock, app.state.review.guard.issue_link(), host), host)


@contextmanager
def running(
    workspace: Workspace,
    host: str = "127.0.0.1",
    port: int | None = 0,
    *,
    allow_remote: bool = False,
    allowed_hosts: tuple[str, ...] | list[str] = (),
) -> Iterator[ReviewServer]:
    """Serve in a background thread for the duration of a block (tests, notebooks)."""
    review = prepare(workspace, host, port, allow_remote=allow_remote, allowed_hosts=allowed_hosts)
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
    allow_remote: bool = False,
    allowed_hosts: tuple[str, ...] | list[str] = (),
    announce_token: Callable[[str], None] | None = None,
) -> None:
    """Serve until Ctrl-C; announce a one-time URL once the server listens and handles Ctrl-C. The browser gets
    its own one-time link through a private redirect file, so the announced one stays unused for the user."""
    if not is_loopback(host) and allow_remote:
        warn(
            f"serving on {host}, not on 127.0.0.1: anyone who can reach this machine and sees the URL can change "
            "labels, and traffic is not encrypted; prefer an SSH tunnel"
        )
    opened: list[Path] = []

    def started() -> None:
        announce(review.url)
        if announce_token is not None:
            announce_token(review.token)
        if open_browser:
            opened.append(open_in_browser(review.new_link()))

    review = prepare(workspace, host, port, on_started=started, allow_remote=allow_remote, allowed_hosts=allowed_hosts)
    try:
        review.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown: that is a normal stop
        pass
    finally:
        review.sock.close()
        for path in opened:
            _remove(path)


def _remove(path: Path) -> None:
    try:
        path.unlink()
        path.parent.rmdir()
    except OSError:
        pass


def open_in_browser(link: str, *, opener: Callable[[str], object] = webbrowser.open) -> Path:
    """Open `link` in the browser without putting it on the browser's command line (where `ps` shows it to
    every local user): the browser is given a redirect file only its owner can read, removed after
    REDIRECT_FILE_SECONDS. The path of that file is returned."""
    folder = Path(tempfile.mkdtemp(prefix="gleaner-review-"))  # 0700
    path = folder / "open.html"
    target = html.escape(link, quote=True)
    page = (
        f'<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={target}">'
        f'<title>Gleaner review</title><p><a href="{target}">Open the review app</a></p>\n'
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(page)
    threading.Thread(target=opener, args=(path.as_uri(),), daemon=True).start()
    timer = threading.Timer(REDIRECT_FILE_SECONDS, _remove, args=(path,))
    timer.daemon = True
    timer.start()
    return path
