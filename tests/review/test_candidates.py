"""Near-duplicates in the review app over HTTP, against the real server on 127.0.0.1: the Candidates view and
`GET /api/candidates` (keyset-paged pairs), `POST /api/dedupe` decisions with their history and undo, splitting a
group and choosing its keeper in the Duplicates view, and the detail view's candidates and decisions.

The candidates are real: photos and edited copies of them (another photo pasted over the middle third) that
ingest found by their hashes and could not verify on the pixels."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from curate.review.server import running
from storage.catalog import get_image
from storage.catalog.duplicates import candidates, decision_history, load_decisions
from storage.workspace import Workspace
from tests.review.conftest import Catalogue, Pairs


class Client:
    """requests against the server's base address."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers.update(headers or {})

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=30, **kwargs)

    def raw_post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, timeout=30, **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()


class Browser(Client):
    """A client that opened the printed URL: it holds the session cookie and sends the CSRF token."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url.split("?")[0].rstrip("/"))
        self.token = token  # the bearer token: the URL's own token opens one session, once
        assert self.session.get(url, timeout=30).status_code == 200
        found = re.search(r'"csrf": "([^"]+)"', self.get("/").text)
        assert found
        self.csrf = found.group(1)

    def post(self, path: str, body: dict[str, Any], *, status: int = 200) -> Any:
        response = self.raw_post(path, json=body, headers={"x-csrf-token": self.csrf})
        assert response.status_code == status, response.text
        return response.json()

    def script(self) -> Client:
        """A script's client: the token in an Authorization header, no cookie."""
        return Client(self.base, {"authorization": f"Bearer {self.token}"})


@pytest.fixture
def pair_ws(pairs: Pairs) -> Iterator[Workspace]:
    workspace = pairs.open()
    yield workspace
    workspace.close()


@pytest.fixture
def on_pairs(pair_ws: Workspace) -> Iterator[Browser]:
    with running(pair_ws, port=0) as server:
        browser = Browser(server.url, server.token)
        yield browser
        browser.session.close()


def duplicate_of(ws: Workspace, sha: str) -> str | None:
    with ws.catalog.read() as conn:
        row = get_image(conn, sha)
    assert row is not None
    return row["duplicate_of"]


def waiting(ws: Workspace) -> set[frozenset[str]]:
    with ws.catalog.read() as conn:
        return {frozenset((c.sha256, c.other)) for c in candidates(conn)}


def test_candidates_api_pages_pairs_closest_first(on_pairs: Browser, pairs: Pairs) -> None:
    with on_pairs.script() as script:
        assert requests.get(on_pairs.base + "/api/candidates", timeout=30).status_code == 401
        answer = script.get("/api/candidates").json()
        assert answer["total"] == 3
        distances = [pair["distance"] for pair in answer["candidates"]]
        assert distances == sorted(distances)
        expected = {frozenset(p) for p in zip(pairs.originals, pairs.copies, strict=True)}
        assert {frozenset((p["a"], p["b"])) for p in answer["candidates"]} == expected
        for pair in answer["candidates"]:
            assert pair["newer"] in pairs.copies
            assert pair["matched"] and pair["reason"] and 0 <= pair["score"] < 1
            assert set(pair["images"]) == {pair["a"], pair["b"]}
            if pair["b"] in pairs.copies[:2]:  # a labelled photo is the better keeper of its unlabelled copy
                assert pair["images"][pair["a"]]["label"] in ("cat", "dog")

        # Keyset paging: one pair a page, forwards then back, each pair once.
        seen, cursor, pages = [], None, []
        while True:
            page = script.get("/api/candidates", params={"n": 1, **({"after": cursor} if cursor else {})}).json()
            seen += [(p["a"], p["b"]) for p in page["candidates"]]
            pages.append(page)
            cursor = page["next"]
            if not cursor:
                break
        assert seen == [(p["a"], p["b"]) for p in answer["candidates"]]
        back = script.get("/api/candidates", params={"n": 1, "before": pages[-1]["prev"]}).json()
        assert [(p["a"], p["b"]) for p in back["candidates"]] == [seen[-2]]
        assert script.get("/api/candidates", params={"after": "not-a-cursor"}).status_code == 400

        # Filters apply to either image of a pair.
        cats = script.get("/api/candidates", params={"label": "cat"}).json()
        assert [p["a"] for p in cats["candidates"]] == [pairs.originals[0]]


def test_candidates_view_shows_pairs_side_by_side(on_pairs: Browser, pairs: Pairs) -> None:
    page = on_pairs.get("/?view=candidates")
    assert page.status_code == 200
    assert 'data-view="candidates"' in on_pairs.get("/").text  # in the bar of every view
    html = page.text
    assert html.count('<section class="pair"') == 3
    assert html.count('class="card ') == 6
    assert "near-duplicate pairs waiting for a decision" in html
    for original, copy in zip(pairs.originals, pairs.copies, strict=True):
        assert f'data-a="{original}" data-b="{copy}"' in html  # the better keeper on the left
    assert "one region differs" in html and "identity, whole/whole" in html
    assert 'data-dedupe="duplicate"' in html and 'data-dedupe="not_duplicate"' in html and 'data-dedupe="keep"' in html
    second = on_pairs.get("/?view=candidates&n=1")
    assert second.text.count('<section class="pair"') == 1 and 'id="next-page"' in second.text


def test_decisions_with_history_and_undo(on_pairs: Browser, pair_ws: Workspace, pairs: Pairs) -> None:
    (cat, dog, plain), (cat_copy, dog_copy, plain_copy) = pairs.originals, pairs.copies
    version = on_pairs.get("/api/version").json()["version"]

    # duplicate: b is a copy of a, set aside; the pair leaves the candidates; the decision is in the history.
    answer = on_pairs.post("/api/dedupe", {"action": "duplicate", "a": cat, "b": cat_copy})
    assert answer["regroup"] and answer["undo"] == 1 and answer["version"] != version
    assert duplicate_of(pair_ws, cat_copy) == cat
    assert frozenset((cat, cat_copy)) not in waiting(pair_ws)
    assert on_pairs.get("/api/version").json()["version"] == answer["version"]  # open tabs notice
    with pair_ws.catalog.read() as conn:
        history = decision_history(conn, cat_copy)
    assert [(d["kind"], d["actor"], d["revoked_at"]) for d in history] == [("duplicate", history[0]["actor"], None)]
    assert on_pairs.get("/?view=candidates").text.count('<section class="pair"') == 2

    # undo: the copy is back in the dataset, the pair waits again, the decision is revoked (kept in the history).
    undone = on_pairs.post("/api/undo", {})
    assert undone["action"] == "undo-dedupe-duplicate" and undone["regroup"]
    assert duplicate_of(pair_ws, cat_copy) is None
    assert frozenset((cat, cat_copy)) in waiting(pair_ws)
    with pair_ws.catalog.read() as conn:
        assert decision_history(conn, cat_copy)[0]["revoked_at"] is not None
        assert not load_decisions(conn).confirmed

    # not duplicates: never grouped again, neither set aside.
    on_pairs.post("/api/dedupe", {"action": "not_duplicate", "a": dog, "b": dog_copy})
    with pair_ws.catalog.read() as conn:
        assert load_decisions(conn).separated(dog, dog_copy)
    assert frozenset((dog, dog_copy)) not in waiting(pair_ws)
    assert duplicate_of(pair_ws, dog) is None and duplicate_of(pair_ws, dog_copy) is None

    # keep this one (the copy, on the right): the photo is set aside as its copy, and the copy is a chosen keeper.
    on_pairs.post("/api/dedupe", {"action": "keeper", "a": plain_copy, "b": plain})
    assert duplicate_of(pair_ws, plain) == plain_copy and duplicate_of(pair_ws, plain_copy) is None
    with pair_ws.catalog.read() as conn:
        decisions = load_decisions(conn)
        assert plain_copy in decisions.keepers and decisions.confirmed_pair(plain, plain_copy)
    with on_pairs.script() as script:
        assert script.get("/api/candidates").json()["total"] == 1

    # Undo takes back the last decision first, then the one before.
    on_pairs.post("/api/undo", {})
    assert duplicate_of(pair_ws, plain) is None
    with pair_ws.catalog.read() as conn:
        assert plain_copy not in load_decisions(conn).keepers
    on_pairs.post("/api/undo", {})
    with pair_ws.catalog.read() as conn:
        assert not load_decisions(conn).separated(dog, dog_copy)
    assert waiting(pair_ws) == {frozenset(p) for p in zip(pairs.originals, pairs.copies, strict=True)}


def test_dedupe_requests_are_checked(on_pairs: Browser, pairs: Pairs) -> None:
    a, b = pairs.originals[0], pairs.copies[0]
    body = {"action": "duplicate", "a": a, "b": b}
    assert requests.post(on_pairs.base + "/api/dedupe", json=body, timeout=30).status_code == 401
    no_csrf = on_pairs.raw_post("/api/dedupe", json=body)
    assert no_csrf.status_code == 403
    for body in (
        {"action": "merge", "a": a, "b": b},
        {"action": "duplicate", "a": a.upper(), "b": b},
        {"action": "duplicate", "a": a[:12], "b": b},  # prefixes are for the CLI: the app names full digests
        {"action": "duplicate", "a": a, "b": "../../etc/passwd"},
        {"action": "not_duplicate", "a": a},
        {"action": "duplicate", "a": a, "b": a},
        {"action": "duplicate", "a": a, "b": "0" * 64},  # unknown image
    ):
        on_pairs.post("/api/dedupe", body, status=400)
    assert on_pairs.post("/api/undo", {})["action"] is None  # nothing was recorded
    with on_pairs.script() as script:  # scripts: the Bearer token, no CSRF token
        response = script.raw_post("/api/dedupe", json={"action": "not_duplicate", "a": a, "b": b})
        assert response.status_code == 200
        assert script.get("/api/candidates").json()["total"] == 2


def test_detail_view_shows_candidates_and_decisions(on_pairs: Browser, pairs: Pairs) -> None:
    cat, cat_copy = pairs.originals[0], pairs.copies[0]
    page = on_pairs.get(f"/image/{cat}").text
    assert "Near-duplicate candidates (1)" in page and f"/image/{cat_copy}" in page
    assert "Near-duplicate decisions" not in page
    on_pairs.post("/api/dedupe", {"action": "duplicate", "a": cat, "b": cat_copy})
    on_pairs.post("/api/undo", {})
    on_pairs.post("/api/dedupe", {"action": "not_duplicate", "a": cat, "b": cat_copy})
    page = on_pairs.get(f"/image/{cat_copy}").text
    assert "Near-duplicate candidates" not in page  # decided
    history = page.split('id="dedupe-history"')[1].split("</table>")[0]
    assert history.count("<tr") == 3  # header, the revoked "duplicates", the "not duplicates" in force
    assert "no, revoked" in history and "not duplicates" in history and f"/image/{cat}" in history


# --- the Duplicates view: split a member out, choose another keeper ----------------------------------------


@pytest.fixture
def on_groups(catalogue: Catalogue) -> Iterator[tuple[Browser, Workspace]]:
    workspace = catalogue.open()
    with running(workspace, port=0) as server:
        browser = Browser(server.url, server.token)
        yield browser, workspace
        browser.session.close()
    workspace.close()


def test_duplicates_view_splits_and_chooses_keepers(on_groups: tuple[Browser, Workspace], catalogue: Catalogue) -> None:
    browser, ws = on_groups
    shas = catalogue.shas  # groups: shas[1] a copy of shas[0], shas[4] a copy of shas[2]
    html = browser.get("/?view=duplicates").text
    assert html.count('data-dedupe="split"') == 2 and html.count('data-dedupe="keeper"') == 2
    assert f'data-keeper="{shas[0]}"' in html

    browser.post("/api/dedupe", {"action": "not_duplicate", "a": shas[0], "b": shas[1]})  # split shas[1] out
    assert duplicate_of(ws, shas[1]) is None
    with ws.catalog.read() as conn:
        assert load_decisions(conn).separated(shas[0], shas[1])
    assert shas[1] not in browser.get("/?view=duplicates").text

    browser.post("/api/dedupe", {"action": "keeper", "a": shas[4]})  # the copy becomes the keeper
    assert duplicate_of(ws, shas[4]) is None and duplicate_of(ws, shas[2]) == shas[4]
    html = browser.get("/?view=duplicates").text
    assert html.index(f'data-sha="{shas[4]}"') < html.index(f'data-sha="{shas[2]}"')  # keeper first

    browser.post("/api/undo", {})
    assert duplicate_of(ws, shas[4]) == shas[2] and duplicate_of(ws, shas[2]) is None
    browser.post("/api/undo", {})
    assert duplicate_of(ws, shas[1]) == shas[0]
    with ws.catalog.read() as conn:
        assert not load_decisions(conn).separated(shas[0], shas[1])
