"""The review app's Starlette factory and its HTML and image routes (JSON API in `api.py`).

Images are addressed by sha256 only: a request names a digest, the catalog row gives the object key, so no part
of a request ever becomes a filesystem path or an arbitrary store key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from curate.review import api
from curate.review.auth import AuthMiddleware, Guard, session_of
from curate.review.cache import VersionCache, cached_legend
from curate.review.detail import image_detail
from curate.review.thumbs import Thumbnails, browser_image
from storage.catalog import default_actor, get_image
from storage.catalog.audits import latest_audit
from storage.catalog.review import (
    DEFAULT_PAGE,
    SHA_RE,
    VIEWS,
    Filter,
    catalog_version,
    count_view,
    cursor_before,
    flag_counts,
    grid_page,
    latest_run,
    neighbours,
)
from storage.catalog.review_pairs import candidate_page, count_candidates, image_near_duplicates
from storage.catalog.runs import run_folder
from storage.errors import GleanerError
from storage.workspace import Workspace

__all__ = ["ReviewState", "create_app"]

HERE = Path(__file__).resolve().parent
IMMUTABLE = "private, max-age=31536000, immutable"  # content-addressed: the bytes of a sha never change


@dataclass
class ReviewState:
    """What every request handler needs: the workspace, who acts, access control and the thumbnail cache."""

    workspace: Workspace
    guard: Guard
    thumbs: Thumbnails
    actor: str
    templates: Jinja2Templates
    cache: VersionCache


def state_of(request: Request) -> ReviewState:
    return request.app.state.review


def require_sha(value: str) -> str:
    """A full lowercase sha256 or a 400: the only form in which a request may name an image."""
    if not SHA_RE.fullmatch(value):
        raise HTTPException(400, "an image is named by its full sha256 (64 lowercase hex digits)")
    return value


def parse_filter(request: Request) -> Filter:
    try:
        return Filter.from_params(request.query_params)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def page_size(request: Request) -> int:
    try:
        return int(request.query_params.get("n") or DEFAULT_PAGE)
    except ValueError:
        raise HTTPException(400, "n must be a number") from None


def grid(request: Request) -> Response:
    """The grid: one server-rendered page of cards; thumbnails load lazily as they scroll into view."""
    state = state_of(request)
    flt = parse_filter(request)
    after, before = request.query_params.get("after"), request.query_params.get("before")
    at = request.query_params.get("at")  # the page that starts with this image (back from its detail view)
    if at is not None:
        require_sha(at)
    pairs = flt.view == "candidates"
    with state.workspace.catalog.read() as conn:
        version = catalog_version(conn)
        if at is not None and not pairs and after is None and before is None:
            after = cursor_before(conn, flt, at)
        try:
            if pairs:
                page: Any = candidate_page(conn, flt, after=after, before=before, limit=page_size(request))
            else:
                page = grid_page(conn, flt, after=after, before=before, limit=page_size(request))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        if not pairs and page.total is not None:
            state.cache.put(version, ("count", flt), page.total)
        context: dict[str, Any] = {
            "flt": flt,
            "page": page,
            "legend": cached_legend(state.cache, conn, version),
            "flags": state.cache.get(version, "flags", lambda: flag_counts(conn)),
            "run_id": latest_run(conn) if pairs or page.run_id is None else page.run_id,
            "run_names": _run_names(conn, page, pairs),
            "audit_id": latest_audit(conn),
            # candidates are written by ingest, which the version does not follow: counted on every page
            "total": count_candidates(conn, flt)
            if pairs
            else state.cache.get(version, ("count", flt), lambda: count_view(conn, flt)),
            "version": version,
        }
    context.update(views=VIEWS, page_size=page_size(request))
    context["boot"] = _boot(request, context, page="grid", total=context["total"], at=at)
    return state.templates.TemplateResponse(request, "grid.html", context, headers={"cache-control": "no-store"})


def _run_names(conn: Any, page: Any, pairs: bool) -> dict[int, str]:
    """The runs the page names, by their folder (never "run 5")."""
    ids = {latest_run(conn)} | ({page.run_id} if not pairs else set())
    return {run_id: run_folder(conn, run_id) for run_id in ids if run_id is not None}


def _boot(request: Request, context: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What the page script starts from (embedded as JSON data, never as inline script: CSP forbids those)."""
    return {
        "csrf": session_of(request).csrf,
        "version": context["version"],
        "legend": [entry.__dict__ for entry in context["legend"]],
        "filter": context["flt"].to_params(),
        **extra,
    }


def detail(request: Request) -> Response:
    state = state_of(request)
    sha = require_sha(request.path_params["sha"])
    flt = parse_filter(request)
    with state.workspace.catalog.read() as conn:
        found = image_detail(conn, sha)
        if found is None:
            raise HTTPException(404, "no such image")
        prev, nxt = neighbours(conn, flt, sha)
        version = catalog_version(conn)
        context = {**found, "flt": flt, "prev": prev, "next": nxt, "version": version}
        context["near"] = image_near_duplicates(conn, sha)
        context["legend"] = cached_legend(state.cache, conn, version)
    context["boot"] = _boot(request, context, page="detail", prev=prev, next=nxt)
    return state.templates.TemplateResponse(request, "detail.html", context, headers={"cache-control": "no-store"})


def _image_row(state: ReviewState, sha: str) -> dict[str, Any]:
    with state.workspace.catalog.read() as conn:
        row = get_image(conn, sha)
    if row is None:
        raise HTTPException(404, "no such image")
    return row


def thumbnail(request: Request) -> Response:
    state = state_of(request)
    sha = require_sha(request.path_params["sha"])
    row = _image_row(state, sha)
    try:
        data = state.thumbs.get(sha, row["ext"])
    except KeyError:
        raise HTTPException(404, "the image's object is missing from the store (see `curate fsck`)") from None
    except (OSError, ValueError):
        raise HTTPException(415, "the stored image cannot be decoded") from None
    return Response(data, media_type="image/jpeg", headers={"cache-control": IMMUTABLE, "etag": f'"t-{sha}"'})


def original(request: Request) -> Response:
    state = state_of(request)
    sha = require_sha(request.path_params["sha"])
    row = _image_row(state, sha)
    try:
        data, media_type = state.thumbs.decode(
            browser_image, state.workspace.store.get(row["object_key"]), row["ext"], state.thumbs.max_pixels
        )
    except KeyError:
        raise HTTPException(404, "the image's object is missing from the store (see `curate fsck`)") from None
    except (OSError, ValueError):
        raise HTTPException(415, "the stored image cannot be decoded") from None
    return Response(data, media_type=media_type, headers={"cache-control": IMMUTABLE, "etag": f'"o-{sha}"'})


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return PlainTextResponse(f"{exc.status_code}: {exc.detail}\n", status_code=exc.status_code)


async def user_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


def create_app(
    workspace: Workspace,
    *,
    token: str | None = None,
    allowed_hosts: set[str] | None = None,
    actor: str | None = None,
) -> Starlette:
    """The review app for one workspace. `token` defaults to a fresh random one (`app.state.review.guard.token`);
    `allowed_hosts` limits the Host header (the server passes the loopback names when bound to loopback)."""
    guard = Guard(token, allowed_hosts=allowed_hosts)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["short"] = lambda sha: (sha or "")[:12]
    routes = [
        Route("/", grid),
        Route("/image/{sha}", detail),
        Route("/thumb/{sha}", thumbnail),
        Route("/img/{sha}", original),
        *api.routes(),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AuthMiddleware, guard=guard)],
        exception_handlers={HTTPException: http_error, GleanerError: user_error},
    )
    app.state.review = ReviewState(
        workspace=workspace,
        guard=guard,
        thumbs=Thumbnails(workspace.store, max_pixels=workspace.settings.ingest.max_pixels),
        actor=actor or default_actor(),
        templates=templates,
        cache=VersionCache(),
    )
    return app
