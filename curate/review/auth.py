"""Access control for the review app: one-time URL tokens, each exchanged once for an HttpOnly session cookie,
a separate bearer token for scripts, and CSRF.

The app can change every label of a dataset, so even on 127.0.0.1 it must not trust other local processes or
web pages open in the same browser: the tokens keep out the first, SameSite=Strict cookies, CSRF tokens and
an Origin check keep out the second, and a Host allow-list defeats DNS rebinding.

A URL token is single-use: a link seen later (in a shell history, in `ps` of a browser started with it, in a
proxy log) opens nothing once its browser has exchanged it. The bearer token (`Authorization: Bearer ...`) is a
different secret, never put into a URL, and a URL token is never accepted as a bearer token or the reverse.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "AuthMiddleware",
    "Guard",
    "Session",
    "cookie_name",
    "csrf_ok",
    "loopback_hosts",
    "same_site_path",
    "session_of",
]

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
COOKIE_PREFIX = "gleaner_review"
MAX_SESSIONS = 256
MAX_LINKS = 64  # unused one-time URL tokens kept; the oldest go first
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}


@dataclass
class Session:
    """One browser (all its tabs share the cookie): its CSRF token and the undo stack of its actions."""

    id: str
    csrf: str
    bearer: bool = False  # API clients with the token in an Authorization header need no CSRF token
    undo: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Guard:
    """The access token and the sessions it opened (in memory: a restart prints a new token anyway)."""

    def __init__(self, token: str | None = None, *, allowed_hosts: set[str] | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)  # the bearer token, for scripts; never in a URL
        self.allowed_hosts = allowed_hosts  # None: any Host header (only for create_app without a server)
        self.sessions: dict[str, Session] = {}
        self._links: dict[str, None] = {}  # unused one-time URL tokens, oldest first
        self._lock = threading.Lock()
        self.bearer_session = Session(id="bearer", csrf=secrets.token_urlsafe(32), bearer=True)

    def token_ok(self, candidate: str) -> bool:
        """True for the bearer token (constant-time)."""
        return hmac.compare_digest(candidate.encode(), self.token.encode())

    def issue_link(self) -> str:
        """A fresh one-time URL token: `?token=` with it opens one session, once."""
        link = secrets.token_urlsafe(32)
        with self._lock:
            while len(self._links) >= MAX_LINKS:
                self._links.pop(next(iter(self._links)))
            self._links[link] = None
        return link

    def redeem_link(self, candidate: str) -> bool:
        """Spend a one-time URL token: True the first time for a token that `issue_link` made, then never."""
        with self._lock:
            for link in self._links:
                if hmac.compare_digest(candidate.encode(), link.encode()):
                    del self._links[link]
                    return True
        return False

    def open_session(self) -> Session:
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32))
        with self._lock:
            while len(self.sessions) >= MAX_SESSIONS:  # the oldest go first
                self.sessions.pop(next(iter(self.sessions)))
            self.sessions[session.id] = session
        return session

    def session(self, session_id: str) -> Session | None:
        with self._lock:
            return self.sessions.get(session_id)


def cookie_name(scope: Scope) -> str:
    """Cookies ignore ports, so two review servers on one host (two workspaces) need different names."""
    server = scope.get("server")
    return f"{COOKIE_PREFIX}_{server[1]}" if server and server[1] else COOKIE_PREFIX


def session_of(request: Request) -> Session:
    return request.scope["state"]["session"]


def csrf_ok(request: Request, submitted: str | None = None) -> bool:
    """True when a state-changing request carries its session's CSRF token (header or form field)."""
    session = session_of(request)
    if session.bearer:
        return True
    candidate = request.headers.get(CSRF_HEADER) or submitted or ""
    return hmac.compare_digest(candidate.encode(), session.csrf.encode())


def _denied(status: int, message: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=status, headers={"cache-control": "no-store"})


class AuthMiddleware:
    """Every request needs the token (query or Bearer header) or a session cookie; nothing is public."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        request = Request(scope)
        outcome = self._admit(request)
        if isinstance(outcome, Response):
            await outcome(scope, receive, send_with_headers)
            return
        scope.setdefault("state", {})["session"] = outcome
        await self.app(scope, receive, send_with_headers)

    def _admit(self, request: Request) -> Session | Response:
        guard = self.guard
        host = (request.url.hostname or "").lower()
        if guard.allowed_hosts is not None and host not in guard.allowed_hosts:
            return _denied(400, "unexpected Host header")
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("origin")
            expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin is not None and origin != expected:
                return _denied(403, "cross-origin request refused")
        token = request.query_params.get("token")
        if token is not None:
            if request.method not in SAFE_METHODS:
                return _denied(403, "the token is exchanged on GET only")
            if guard.redeem_link(token):
                return self._exchange(request, guard.open_session())
            known = guard.session(request.cookies.get(cookie_name(request.scope)) or "")
            if known is not None:  # a reload of a spent link in the browser that spent it: just drop the token
                return self._exchange(request, None)
            return _denied(
                403, "invalid or already used link: each printed URL opens one browser once; restart `curate review`"
            )
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            if guard.token_ok(authorization[7:].strip()):
                return guard.bearer_session
            return _denied(403, "invalid token")
        session_id = request.cookies.get(cookie_name(request.scope))
        if session_id is not None:
            session = guard.session(session_id)
            return session if session is not None else _denied(403, "session expired: open the printed URL again")
        return _denied(401, "authentication required: open the URL that `curate review` printed (with ?token=...)")

    def _exchange(self, request: Request, session: Session | None) -> Response:
        """Token → cookie, then a redirect to the same URL without the token (it leaves the address bar)."""
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = same_site_path(request.url.path) + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})
        if session is None:
            return response
        response.set_cookie(
            cookie_name(request.scope),
            session.id,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response


def same_site_path(path: str) -> str:
    """`path` as a redirect target that stays on this site: `//evil.example/` (or `/\\evil.example`) would be
    read by a browser as another host, so leading slashes and backslashes collapse into one `/`."""
    return "/" + path.lstrip("/\\")


def loopback_hosts() -> set[str]:
    return set(LOOPBACK_HOSTS)
