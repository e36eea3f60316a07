"""The review app's JSON API: actions, undo, new labels, and the cheap state endpoints open tabs poll.

Every mutation is a POST that carries the session's CSRF token; the catalog is written before the answer goes
out, and the answer holds the confirmed state, so the page can settle its optimistic update.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from curate.review.actions import ACTIONS, Action, apply_action, undo_action
from curate.review.auth import CSRF_FIELD, Session, csrf_ok, session_of
from curate.review.cache import cached_legend
from curate.review.duplicates import DEDUPE_ACTIONS, DedupeAction, dedupe_action, undo_dedupe
from storage.catalog import add_label, stored_label
from storage.catalog.review import (
    SHA_RE,
    Filter,
    catalog_version,
    count_changes,
    count_view,
    grid_page,
    image_states,
    view_shas,
)
from storage.catalog.review_pairs import candidate_page, count_candidates

if TYPE_CHECKING:
    from curate.review.app import ReviewState

__all__ = ["routes"]

UNDO_DEPTH = 200
UNDO_CHANGES = 1_000_000  # changes remembered per session, across its undo stack
MAX_SHAS = 100_000  # a selection larger than this is a view: use scope "view"
_KEY_COLUMN = re.compile(r"k\d+")  # the sort keys grid_page adds to its rows
STATE_LIMIT = 2_000  # answers list at most this many changed images; pages with more reload their cards


def _state(request: Request) -> ReviewState:
    return request.app.state.review


async def _body(request: Request) -> dict[str, Any]:
    """A JSON object (the page's fetch calls) or a form (plain HTML forms); CSRF-checked either way."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            body = await request.json()
        else:
            body = dict(await request.form())
    except Exception:
        raise HTTPException(400, "the request body is not valid JSON or form data") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    if not csrf_ok(request, body.get(CSRF_FIELD) if isinstance(body.get(CSRF_FIELD), str) else None):
        raise HTTPException(403, "missing or wrong CSRF token")
    return body


def _shas(body: dict[str, Any]) -> list[str]:
    shas = body.get("shas")
    if not isinstance(shas, list) or not shas or len(shas) > MAX_SHAS:
        raise HTTPException(400, f"shas must be a list of 1 to {MAX_SHAS} sha256 digests")
    if not all(isinstance(sha, str) and SHA_RE.fullmatch(sha) for sha in shas):
        raise HTTPException(400, "every sha must be a full lowercase sha256")
    return shas


def _filter(body: dict[str, Any]) -> Filter:
    params = body.get("filter") or {}
    if not isinstance(params, dict) or not all(isinstance(v, str | None) for v in params.values()):
        raise HTTPException(400, "filter must be an object of strings")
    try:
        return Filter.from_params({k: v for k, v in params.items() if v is not None})
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _answer(state: ReviewState, session: Session, action: Action | None, shas: list[str]) -> dict[str, Any]:
    """The confirmed state after a change: the touched images, the legend, the catalog version."""
    with state.workspace.catalog.read() as conn:
        version = catalog_version(conn)
        answer: dict[str, Any] = {
            "version": version,
            "legend": [entry.__dict__ for entry in cached_legend(state.cache, conn, version)],
            "undo": len(session.undo),
        }
        if len(shas) <= STATE_LIMIT:
            answer["images"] = image_states(conn, shas)
        else:
            answer["reload"] = True
    if action is not None:
        answer.update(action=action.kind, changed=len(action.changes), missing=action.missing)
    return answer


def _act(state: ReviewState, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("action")
    if kind not in ACTIONS:
        raise HTTPException(400, f"action must be one of {', '.join(ACTIONS)}")
    label = body.get("label")
    if label is not None and not isinstance(label, str):
        raise HTTPException(400, "label must be a string")
    if body.get("scope") == "view":
        flt = _filter(body)
        with state.workspace.catalog.read() as conn:
            shas = list(view_shas(conn, flt))
    else:
        shas = _shas(body)
    with session.lock:  # one action at a time per session keeps the undo stack in order
        action = apply_action(state.workspace.catalog, kind, shas, actor=state.actor, label=label)
        _remember(session, action)
    return _answer(state, session, action, shas)


def _remember(session: Session, action: Action) -> None:
    """Push an action on the session's undo stack (call with session.lock held)."""
    if action.changes:
        session.undo.append(action)
        del session.undo[:-UNDO_DEPTH]
        while len(session.undo) > 1 and sum(len(a.changes) for a in session.undo) > UNDO_CHANGES:
            session.undo.pop(0)  # bounded memory: the oldest bulk actions stop being undoable first


async def action_endpoint(request: Request) -> Response:
    body = await _body(request)
    answer = await run_in_threadpool(_act, _state(request), session_of(request), body)
    return JSONResponse(answer)


def _undo(state: ReviewState, session: Session) -> dict[str, Any]:
    with session.lock:
        if not session.undo:
            answer = _answer(state, session, None, [])
            answer.update(action=None, changed=0, missing=[])
            return answer
        last = session.undo.pop()
        if isinstance(last, DedupeAction):
            undone: Action = undo_dedupe(state.workspace, last, actor=state.actor)
        else:
            undone = undo_action(state.workspace.catalog, last, actor=state.actor)
    answer = _answer(state, session, undone, last.shas)
    answer["skipped"] = len(last.changes) - len(undone.changes)
    answer["undone"] = last.shas[:STATE_LIMIT]  # in the order they were changed: the page focuses the first
    if isinstance(last, DedupeAction):
        answer["regroup"] = True  # the page's pairs and groups changed: pages that show them reload
    return answer


async def undo_endpoint(request: Request) -> Response:
    await _body(request)
    return JSONResponse(await run_in_threadpool(_undo, _state(request), session_of(request)))


def _add_label(state: ReviewState, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = body.get("name")
    if not isinstance(name, str):
        raise HTTPException(400, "name must be a string")
    with state.workspace.catalog.write() as conn:
        created = add_label(conn, name, actor=state.actor, origin="human")
        stored = stored_label(conn, name)
    answer = _answer(state, session, None, [])
    answer.update(created=created, name=stored)
    return answer


def _impact(state: ReviewState, body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("action")
    if kind not in ACTIONS:
        raise HTTPException(400, f"action must be one of {', '.join(ACTIONS)}")
    label = body.get("label")
    if label is not None and not isinstance(label, str):
        raise HTTPException(400, "label must be a string")
    flt = _filter(body)
    with state.workspace.catalog.read() as conn:
        return {"total": count_view(conn, flt), "changes": count_changes(conn, flt, kind, label)}


async def impact_endpoint(request: Request) -> Response:
    """What an action on the whole view would do, before it is applied: {"action", "label", "filter"} ->
    {"total": images in the view, "changes": images whose label or review state would change}."""
    body = await _body(request)
    return JSONResponse(await run_in_threadpool(_impact, _state(request), body))


async def labels_endpoint(request: Request) -> Response:
    body = await _body(request)
    return JSONResponse(await run_in_threadpool(_add_label, _state(request), session_of(request), body))


async def state_endpoint(request: Request) -> Response:
    """Current state of the images an open page shows (polled after the version changes)."""
    body = await _body(request)
    shas = _shas(body) if body.get("shas") else []
    return JSONResponse(await run_in_threadpool(_answer, _state(request), session_of(request), None, shas))


def version_endpoint(request: Request) -> Response:
    with _state(request).workspace.catalog.read() as conn:
        version = catalog_version(conn)
    return JSONResponse({"version": version}, headers={"cache-control": "no-store"})


def images_endpoint(request: Request) -> Response:
    """The grid as JSON (scripts, tests): the same filters and cursors as the HTML page."""
    params = request.query_params
    try:
        flt = Filter.from_params(params)
        limit = int(params.get("n") or 200)
        with _state(request).workspace.catalog.read() as conn:
            page = grid_page(conn, flt, after=params.get("after"), before=params.get("before"), limit=limit)
            total = page.total if page.total is not None else count_view(conn, flt)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    items = [
        {k: v for k, v in row.items() if not _KEY_COLUMN.fullmatch(k) and k != "label_id"}
        | {"flags": page.flags.get(row["sha256"], [])}
        for row in page.items
    ]
    return JSONResponse(
        {
            "filter": flt.to_params(),
            "total": total,
            "images": items,
            "next": page.next_cursor,
            "prev": page.prev_cursor,
            "run_id": page.run_id,
        },
        headers={"cache-control": "no-store"},
    )


def _sha_field(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not SHA_RE.fullmatch(value):
        raise HTTPException(400, f"{name} must be a full lowercase sha256 (64 hex digits)")
    return value


def _dedupe(state: ReviewState, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("action")
    if kind not in DEDUPE_ACTIONS:
        raise HTTPException(400, f"action must be one of {', '.join(DEDUPE_ACTIONS)}")
    a = _sha_field(body, "a", required=True)
    b = _sha_field(body, "b", required=kind != "keeper")
    assert a is not None
    with session.lock:
        action = dedupe_action(state.workspace, kind, a, b, actor=state.actor)
        _remember(session, action)
    answer = _answer(state, session, action, [sha for sha in (a, b) if sha])
    answer.update(regroup=True, a=a, b=b)
    return answer


async def dedupe_endpoint(request: Request) -> Response:
    """A near-duplicate decision: {"action": "not_duplicate" | "duplicate" | "keeper", "a": sha, "b": sha}
    ("duplicate": b is a copy of a; "keeper": a keeps its group, and with b, b is set aside as a's copy)."""
    body = await _body(request)
    return JSONResponse(await run_in_threadpool(_dedupe, _state(request), session_of(request), body))


def candidates_endpoint(request: Request) -> Response:
    """The Candidates view as JSON: near-duplicate pairs waiting for a decision, closest first."""
    params = request.query_params
    try:
        flt = Filter.from_params({**params, "view": "candidates"})
        limit = int(params.get("n") or 200)
        with _state(request).workspace.catalog.read() as conn:
            page = candidate_page(conn, flt, after=params.get("after"), before=params.get("before"), limit=limit)
            total = count_candidates(conn, flt)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    shown = ("sha256", "width", "height", "format", "label", "review", "duplicate_of", "chosen_keeper", "source")
    return JSONResponse(
        {
            "total": total,
            "candidates": [
                item | {"images": {sha: {k: page.images[sha][k] for k in shown} for sha in (item["a"], item["b"])}}
                for item in page.items
            ],
            "next": page.next_cursor,
            "prev": page.prev_cursor,
        },
        headers={"cache-control": "no-store"},
    )


def routes() -> list[Route]:
    return [
        Route("/api/version", version_endpoint),
        Route("/api/images", images_endpoint),
        Route("/api/state", state_endpoint, methods=["POST"]),
        Route("/api/action", action_endpoint, methods=["POST"]),
        Route("/api/undo", undo_endpoint, methods=["POST"]),
        Route("/api/impact", impact_endpoint, methods=["POST"]),
        Route("/api/labels", labels_endpoint, methods=["POST"]),
        Route("/api/candidates", candidates_endpoint),
        Route("/api/dedupe", dedupe_endpoint, methods=["POST"]),
    ]
