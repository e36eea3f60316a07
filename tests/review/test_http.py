"""Every route of the review app over HTTP (Starlette's TestClient): auth, CSRF, path safety, filters, paging,
thumbnails, actions with history, undo and bulk actions."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select
from starlette.testclient import TestClient

from curate.review import create_app, thumbs
from curate.review.auth import loopback_hosts
from curate.review.thumbs import thumb_key
from storage.catalog import get_image, label_history, set_label
from storage.catalog.review import encode_cursor
from storage.catalog.schema import review_events
from storage.ingest import IngestItem, Ingestor, source_for_path
from storage.workspace import Workspace
from tests.review.conftest import Catalogue

TOKEN = "test-token-1234"
UNKNOWN = "0" * 64


@pytest.fixture
def ws(catalogue: Catalogue) -> Iterator[Workspace]:
    workspace = catalogue.open()
    yield workspace
    workspace.close()


@pytest.fixture
def anonymous(ws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(ws, token=TOKEN, actor="tester")) as client:
        yield client


def link(client: TestClient) -> str:
    """A fresh one-time URL token, as `curate review` prints one."""
    app: Any = client.app
    return str(app.state.review.guard.issue_link())


@pytest.fixture
def client(anonymous: TestClient) -> TestClient:
    """A browser-like client: it opened the printed URL, so it holds the session cookie."""
    response = anonymous.get(f"/?token={link(anonymous)}", follow_redirects=False)
    assert response.status_code == 303
    return anonymous


def csrf_of(client: TestClient) -> str:
    page = client.get("/")
    found = re.search(r'"csrf": "([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def post(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    response = client.post(path, json=body, headers={"x-csrf-token": csrf_of(client)})
    assert response.status_code == 200, response.text
    return response.json()


def listed(client: TestClient, query: str = "") -> list[str]:
    response = client.get(f"/api/images?{query}")
    assert response.status_code == 200, response.text
    return [item["sha256"] for item in response.json()["images"]]


def label_of(ws: Workspace, sha: str) -> str | None:
    with ws.catalog.read() as conn:
        row = get_image(conn, sha)
    assert row is not None
    return row["label"]


def review_of(ws: Workspace, sha: str) -> str:
    with ws.catalog.read() as conn:
        row = get_image(conn, sha)
    assert row is not None
    return row["review"]


# --- auth -----------------------------------------------------------------------------------------------------

GETS = ["/", "/image/{sha}", "/thumb/{sha}", "/img/{sha}", "/api/version", "/api/images", "/static/review.js"]
POSTS = ["/api/action", "/api/undo", "/api/labels", "/api/state"]


def test_every_route_needs_credentials(anonymous: TestClient, catalogue: Catalogue) -> None:
    sha = catalogue.shas[0]
    for path in GETS:
        response = anonymous.get(path.format(sha=sha), follow_redirects=False)
        assert response.status_code == 401, path
        assert "curate review" in response.text
    for path in POSTS:
        assert anonymous.post(path, json={}).status_code == 401, path


def test_wrong_token_or_cookie_is_forbidden(anonymous: TestClient, catalogue: Catalogue) -> None:
    assert anonymous.get("/?token=nope", follow_redirects=False).status_code == 403
    assert anonymous.get("/api/version", headers={"authorization": "Bearer nope"}).status_code == 403
    anonymous.cookies.set("gleaner_review_80", "forged-session")
    assert anonymous.get("/", follow_redirects=False).status_code == 403
    assert anonymous.get(f"/thumb/{catalogue.shas[0]}").status_code == 403


def test_token_is_exchanged_for_an_httponly_strict_cookie(anonymous: TestClient) -> None:
    response = anonymous.get(f"/?view=unlabelled&token={link(anonymous)}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/?view=unlabelled"  # the token leaves the address bar
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("gleaner_review_80=")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    assert TOKEN not in cookie
    page = anonymous.get("/?view=unlabelled")
    assert page.status_code == 200
    assert page.text.count('class="card ') == 3
    assert anonymous.post(f"/api/undo?token={link(anonymous)}", json={}).status_code == 403  # exchanged on GET only


def test_url_token_opens_one_session_once(ws: Workspace) -> None:
    """Issue 16, item 11: the printed link could be exchanged any number of times (by anyone who saw it in `ps`
    or a history), and it was the bearer token too."""
    app = create_app(ws, token=TOKEN)
    once = app.state.review.guard.issue_link()
    with TestClient(app) as first, TestClient(app) as later:
        assert first.get(f"/?token={once}", follow_redirects=False).status_code == 303
        assert first.get(f"/?token={once}", follow_redirects=False).status_code == 303  # its own reload: no harm
        spent = later.get(f"/?token={once}", follow_redirects=False)
        assert spent.status_code == 403 and "already used" in spent.text
        assert "set-cookie" not in spent.headers
        assert later.get("/", follow_redirects=False).status_code == 401
        # The bearer token is a different secret: it opens no session from a URL, a link is no bearer token.
        assert later.get(f"/?token={TOKEN}", follow_redirects=False).status_code == 403
        fresh = app.state.review.guard.issue_link()
        assert later.get("/api/version", headers={"authorization": f"Bearer {fresh}"}).status_code == 403
        assert later.get(f"/?token={fresh}").status_code == 200


@pytest.mark.parametrize("path", ["//evil.example/", "///evil.example/x", "//evil.example"])
def test_token_redirect_stays_on_this_site(anonymous: TestClient, path: str) -> None:
    """Issue 16, item 14: `GET //evil.example/?token=T` answered `303 Location: //evil.example/`."""
    response = anonymous.get(f"http://testserver{path}?token={link(anonymous)}&view=all", follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert location.split("?")[0] == "/" + path.lstrip("/\\").split("?")[0]


def test_bearer_token_serves_scripts_without_csrf(anonymous: TestClient, ws: Workspace, catalogue: Catalogue) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    assert anonymous.get("/api/version", headers=headers).status_code == 200
    response = anonymous.post("/api/action", json={"action": "accept", "shas": [catalogue.dogs[0]]}, headers=headers)
    assert response.status_code == 200
    assert review_of(ws, catalogue.dogs[0]) == "accepted"


def test_host_header_is_checked_on_loopback(ws: Workspace) -> None:
    app = create_app(ws, token=TOKEN, allowed_hosts=loopback_hosts())
    with TestClient(app, base_url="http://127.0.0.1:8765") as local:
        assert local.get(f"/?token={link(local)}").status_code == 200
    with TestClient(app, base_url="http://rebound.example:8765") as rebound:  # DNS rebinding
        assert rebound.get(f"/?token={link(rebound)}", follow_redirects=False).status_code == 400


def test_security_headers(client: TestClient) -> None:
    response = client.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "<script>" not in response.text  # no inline scripts: the CSP would block them


# --- CSRF -----------------------------------------------------------------------------------------------------


def test_mutations_need_the_csrf_token(client: TestClient, ws: Workspace, catalogue: Catalogue) -> None:
    sha = catalogue.cats[0]
    body = {"action": "reject", "shas": [sha]}
    assert client.post("/api/action", json=body).status_code == 403
    assert client.post("/api/action", json=body, headers={"x-csrf-token": "wrong"}).status_code == 403
    assert client.post("/api/labels", json={"name": "x"}).status_code == 403
    assert client.post("/api/undo", json={}).status_code == 403
    assert review_of(ws, sha) == "unreviewed"
    token = csrf_of(client)
    cross = client.post("/api/action", json=body, headers={"x-csrf-token": token, "origin": "http://evil.example"})
    assert cross.status_code == 403
    assert review_of(ws, sha) == "unreviewed"
    form = client.post("/api/labels", data={"name": "from-a-form", "csrf": token})  # plain HTML form posts
    assert form.status_code == 200 and form.json()["created"] is True
    same = client.post("/api/action", json=body, headers={"x-csrf-token": token, "origin": "http://testserver"})
    assert same.status_code == 200
    assert review_of(ws, sha) == "rejected"


def test_reads_are_get_and_writes_are_post(client: TestClient) -> None:
    assert client.get("/api/action").status_code == 405
    assert client.post("/", json={}).status_code == 405


# --- path safety ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/thumb/", "/img/", "/image/"])
def test_images_are_named_by_sha256_only(client: TestClient, route: str) -> None:
    assert client.get(route + "not-a-digest").status_code == 400
    assert client.get(route + "A" * 64).status_code == 400  # upper case is not the catalog's form
    assert client.get(route + "0" * 63).status_code == 400
    assert client.get(route + UNKNOWN).status_code == 404
    for raw in ("..%2F..%2Fetc%2Fpasswd", "..%2Fcatalog.db", "%2Fetc%2Fpasswd"):
        assert client.get(route + raw).status_code in (400, 404), raw
    assert "root:" not in client.get(route + "..%2F..%2F..%2F..%2Fetc%2Fpasswd").text


def test_static_files_do_not_escape_their_folder(client: TestClient) -> None:
    assert client.get("/static/review.css").status_code == 200
    for raw in ("..%2Fapp.py", "..%2F..%2Freview%2Fapp.py", "%2E%2E/app.py"):
        assert client.get("/static/" + raw).status_code == 404, raw


def test_actions_refuse_anything_but_digests(client: TestClient) -> None:
    token = {"x-csrf-token": csrf_of(client)}
    for shas in (["../../etc/passwd"], ["A" * 64], [], "x" * 64, [1]):
        response = client.post("/api/action", json={"action": "accept", "shas": shas}, headers=token)
        assert response.status_code == 400, shas
    response = client.post("/api/action", json={"action": "delete", "shas": [UNKNOWN]}, headers=token)
    assert response.status_code == 400
    response = client.post("/api/action", json={"action": "accept", "shas": [UNKNOWN]}, headers=token)
    assert response.json()["missing"] == [UNKNOWN]


# --- views and paging -----------------------------------------------------------------------------------------


def test_filters(client: TestClient, catalogue: Catalogue) -> None:
    shas = catalogue.shas
    assert sorted(listed(client)) == sorted(shas)
    assert sorted(listed(client, "label=cat")) == sorted(catalogue.cats)
    assert sorted(listed(client, "view=unlabelled")) == sorted(catalogue.unlabelled)
    assert sorted(listed(client, "view=unreviewed")) == sorted(shas)
    assert listed(client, "review=accepted") == []
    assert listed(client, "label=no-such-label") == []
    assert sorted(listed(client, "view=duplicates")) == sorted([shas[0], shas[1], shas[2], shas[4]])
    assert sorted(listed(client, "view=conflicts")) == sorted([shas[2], shas[4]])  # a cat and a dog as copies
    assert sorted(listed(client, "view=flagged")) == sorted([shas[5], shas[7]])
    assert listed(client, "view=flagged&flag=blurry") == [shas[7]]
    assert listed(client, "view=misclassified") == [shas[3], shas[6]]  # by loss, highest first
    assert listed(client, "view=lowconf") == [shas[0]]
    assert sorted(listed(client, "label=dog&view=duplicates")) == [shas[4]]
    duplicates = listed(client, "view=duplicates")
    assert duplicates.index(shas[2]) + 1 == duplicates.index(shas[4])  # a group's keeper, then its members
    for bad in ("view=nope", "review=maybe", "after=not-a-cursor", "n=lots"):
        assert client.get(f"/api/images?{bad}").status_code == 400, bad
        assert client.get(f"/?{bad}").status_code == 400, bad


def test_grid_page_html(client: TestClient, catalogue: Catalogue) -> None:
    page = client.get("/?view=misclassified").text
    assert re.findall(r'data-sha="([0-9a-f]{64})"', page) == [catalogue.shas[3], catalogue.shas[6]]
    assert "→ dog 90%" in page
    assert 'loading="lazy"' in page and f'src="/thumb/{catalogue.shas[3]}"' in page
    home = client.get("/").text
    assert "<kbd>1</kbd>" in home and "cat" in home and '<b id="total">10</b>' in home
    assert "blurry" in home and "Misclassified" in home


def test_keyset_paging_walks_every_image_once(client: TestClient, catalogue: Catalogue) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "n=3" + (f"&after={cursor}" if cursor else "")
        document = client.get(f"/api/images?{query}").json()
        assert document["total"] == 10
        seen += [item["sha256"] for item in document["images"]]
        pages += 1
        cursor = document["next"]
        if cursor is None:
            break
        html = client.get(f"/?{query}").text
        assert 'id="next-page"' in html
    assert pages == 4 and seen == sorted(catalogue.shas)
    back = client.get(f"/api/images?n=3&before={document['prev']}").json()
    assert [item["sha256"] for item in back["images"]] == seen[6:9]
    assert client.get("/api/images?n=100000").json()["images"]  # clamped, not refused


def test_hostile_cursors_are_a_400_not_a_500(client: TestClient) -> None:
    """Issue 16, item 13: a cursor holding a huge integer overflowed the database driver (500)."""
    first = client.get("/api/images?n=3").json()["next"]
    width = len(json.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4))))
    for value in (10**30, -(10**30), 2**63, float("inf"), "a\x00b"):
        cursor = encode_cursor([value] * width)
        for path in ("/api/images", "/", "/api/candidates"):
            for side in ("after", "before"):
                response = client.get(f"{path}?{side}={cursor}")
                assert response.status_code == 400, (path, side, value, response.text[:200])
    assert client.get(f"/api/images?after={encode_cursor([2**63 - 1] * width)}").status_code == 200


def test_detail_page(client: TestClient, catalogue: Catalogue, photo_files: list) -> None:
    sha = catalogue.shas[4]  # a dog marked as a copy of a cat
    page = client.get(f"/image/{sha}?view=duplicates")
    assert page.status_code == 200
    text = page.text
    assert str(photo_files[4].name) in text  # provenance: the file it came from
    assert f"/image/{catalogue.shas[2]}" in text  # the group's keeper
    assert "Near-duplicate group (2)" in text
    assert "phash" in text and "Label history" in text and "fixture" in text
    assert "dark" in client.get(f"/image/{catalogue.shas[5]}").text  # its quality flag
    assert f'src="/img/{sha}"' in text
    assert 'id="back" href="/?view=duplicates"' in text
    misclassified = client.get(f"/image/{catalogue.shas[3]}?view=misclassified").text
    assert f'id="next-image" href="/image/{catalogue.shas[6]}?view=misclassified"' in misclassified
    assert 'id="prev-image"' not in misclassified


# --- images ---------------------------------------------------------------------------------------------------


def test_thumbnails_are_made_once_and_kept_in_the_store(
    any_workspace: Workspace, photo_files: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = Ingestor.for_workspace(any_workspace).ingest(
        IngestItem(source=source_for_path(photo_files[0]), path=str(photo_files[0]))
    )
    sha = outcome.sha256
    assert sha
    headers = {"authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(any_workspace, token=TOKEN)) as client:
        response = client.get(f"/thumb/{sha}", headers=headers)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        assert "immutable" in response.headers["cache-control"]
        assert max(Image.open(io.BytesIO(response.content)).size) <= thumbs.THUMB_SIDE
        assert any_workspace.store.get(thumb_key(sha)) == response.content
        original = client.get(f"/img/{sha}", headers=headers)
        assert original.status_code == 200
        assert original.content == photo_files[0].read_bytes()

    def refuse(*_args: Any, **_kwargs: Any) -> bytes:
        raise AssertionError("the stored thumbnail should have been used")

    monkeypatch.setattr(thumbs, "make_thumbnail", refuse)
    with TestClient(create_app(any_workspace, token=TOKEN)) as fresh:  # empty memory cache
        assert fresh.get(f"/thumb/{sha}", headers=headers).content == response.content


def test_missing_object_is_a_404_not_a_crash(client: TestClient, ws: Workspace, catalogue: Catalogue) -> None:
    sha = catalogue.shas[9]
    with ws.catalog.read() as conn:
        key = get_image(conn, sha)["object_key"]  # type: ignore[index]
    ws.store.delete(key)
    assert client.get(f"/thumb/{sha}").status_code == 404
    assert client.get(f"/img/{sha}").status_code == 404


# --- actions --------------------------------------------------------------------------------------------------


def test_label_accept_reject_with_history_and_undo(client: TestClient, ws: Workspace, catalogue: Catalogue) -> None:
    sha = catalogue.unlabelled[0]
    version = client.get("/api/version").json()["version"]
    answer = post(client, "/api/action", {"action": "label", "label": "dog", "shas": [sha]})
    assert answer["changed"] == 1 and answer["images"][sha] == {"label": "dog", "review": "unreviewed"}
    assert {entry["name"]: entry["count"] for entry in answer["legend"]} == {"cat": 3, "dog": 3}
    assert answer["version"] != version
    assert client.get("/api/version").json()["version"] == answer["version"]
    with ws.catalog.read() as conn:
        event = label_history(conn, sha)[0]
    assert (event["before"], event["after"], event["origin"], event["actor"]) == (None, "dog", "human", "tester")

    post(client, "/api/action", {"action": "accept", "shas": [sha]})
    post(client, "/api/action", {"action": "reject", "shas": [sha]})
    with ws.catalog.read() as conn:
        events = conn.execute(select(review_events).where(review_events.c.sha256 == sha)).all()
    assert [(e.before, e.after, e.actor) for e in events] == [
        ("unreviewed", "accepted", "tester"),
        ("accepted", "rejected", "tester"),
    ]
    again = post(client, "/api/action", {"action": "reject", "shas": [sha]})
    assert again["changed"] == 0  # nothing to change, nothing recorded

    assert post(client, "/api/undo", {})["images"][sha]["review"] == "accepted"
    assert post(client, "/api/undo", {})["images"][sha]["review"] == "unreviewed"
    assert post(client, "/api/undo", {})["images"][sha]["label"] is None
    assert label_of(ws, sha) is None
    nothing = post(client, "/api/undo", {})
    assert nothing["action"] is None and nothing["changed"] == 0
    with ws.catalog.read() as conn:
        assert [e["action"] for e in label_history(conn, sha)[:2]] == ["clear", "set"]  # undo is history too


def test_clear_and_new_labels(client: TestClient, ws: Workspace, catalogue: Catalogue) -> None:
    sha = catalogue.cats[0]
    post(client, "/api/action", {"action": "clear", "shas": [sha]})
    assert label_of(ws, sha) is None
    created = post(client, "/api/labels", {"name": "  bird "})
    assert created["created"] is True and created["name"] == "bird"
    assert [(e["name"], e["key"]) for e in created["legend"]] == [("cat", 1), ("dog", 2), ("bird", 3)]  # creation order
    assert post(client, "/api/labels", {"name": "bird"})["created"] is False
    bad = client.post("/api/labels", json={"name": "a/b"}, headers={"x-csrf-token": csrf_of(client)})
    assert bad.status_code == 400 and "invalid label name" in bad.json()["error"]
    # Issue 16, item 15: NUL, `..` and case variants through the review API
    for name in ("a\x00b", "..", "\u200b"):
        bad = client.post("/api/labels", json={"name": name}, headers={"x-csrf-token": csrf_of(client)})
        assert bad.status_code == 400 and "invalid label name" in bad.json()["error"], name
        bad = client.post(
            "/api/action",
            json={"action": "label", "label": name, "shas": [sha]},
            headers={"x-csrf-token": csrf_of(client)},
        )
        assert bad.status_code == 400, name
    again = post(client, "/api/labels", {"name": "BIRD\u200b"})
    assert again["created"] is False and again["name"] == "bird"
    post(client, "/api/action", {"action": "label", "label": "bird", "shas": [sha]})
    assert label_of(ws, sha) == "bird"


def test_undo_leaves_later_changes_by_others_alone(client: TestClient, ws: Workspace, catalogue: Catalogue) -> None:
    first, second = catalogue.dogs[:2]
    post(client, "/api/action", {"action": "label", "label": "cat", "shas": [first, second]})
    with ws.catalog.write() as conn:  # someone else, in another tab or on the command line
        set_label(conn, [second], "fox", actor="other")
    answer = post(client, "/api/undo", {})
    assert answer["changed"] == 1 and answer["skipped"] == 1
    assert label_of(ws, first) == "dog" and label_of(ws, second) == "fox"


def test_bulk_actions_on_a_whole_view(client: TestClient, ws: Workspace, catalogue: Catalogue) -> None:
    answer = post(client, "/api/action", {"action": "accept", "scope": "view", "filter": {"label": "cat"}})
    assert answer["changed"] == 4
    assert all(review_of(ws, sha) == "accepted" for sha in catalogue.cats)
    assert all(review_of(ws, sha) == "unreviewed" for sha in catalogue.dogs + catalogue.unlabelled)
    relabel = {"action": "label", "label": "pet", "scope": "view", "filter": {"view": "misclassified"}}
    assert post(client, "/api/action", relabel)["changed"] == 2
    assert label_of(ws, catalogue.shas[3]) == "pet" and label_of(ws, catalogue.shas[6]) == "pet"
    post(client, "/api/undo", {})
    post(client, "/api/undo", {})
    assert all(review_of(ws, sha) == "unreviewed" for sha in catalogue.cats)
    assert label_of(ws, catalogue.shas[3]) == "cat" and label_of(ws, catalogue.shas[6]) == "dog"
    bad = {"action": "accept", "scope": "view", "filter": {"view": "everything"}}
    assert client.post("/api/action", json=bad, headers={"x-csrf-token": csrf_of(client)}).status_code == 400


def test_state_endpoint_refreshes_open_pages(client: TestClient, ws: Workspace, catalogue: Catalogue) -> None:
    sha = catalogue.dogs[0]
    with ws.catalog.write() as conn:
        set_label(conn, [sha], "wolf", actor="cli")
    state = post(client, "/api/state", {"shas": [sha, UNKNOWN]})
    assert state["images"] == {sha: {"label": "wolf", "review": "unreviewed"}}
    assert "wolf" in [entry["name"] for entry in state["legend"]]
    assert post(client, "/api/state", {})["images"] == {}


def test_sessions_have_their_own_undo(ws: Workspace, catalogue: Catalogue) -> None:
    app = create_app(ws, token=TOKEN)
    with TestClient(app) as alice, TestClient(app) as bob:
        for person in (alice, bob):
            person.get(f"/?token={link(person)}")
        post(alice, "/api/action", {"action": "reject", "shas": [catalogue.cats[1]]})
        assert post(bob, "/api/undo", {})["action"] is None
        assert review_of(ws, catalogue.cats[1]) == "rejected"
        post(alice, "/api/undo", {})
        assert review_of(ws, catalogue.cats[1]) == "unreviewed"


def test_impact_counts_what_a_whole_view_action_would_change(
    client: TestClient, ws: Workspace, catalogue: Catalogue
) -> None:
    cats = {"label": "cat"}
    total = len(listed(client, "label=cat"))
    assert post(client, "/api/impact", {"action": "label", "label": "cat", "filter": cats}) == {
        "total": total,
        "changes": 0,
    }
    assert post(client, "/api/impact", {"action": "label", "label": "new", "filter": cats})["changes"] == total
    post(client, "/api/action", {"action": "accept", "shas": [catalogue.cats[0]]})
    assert post(client, "/api/impact", {"action": "accept", "filter": cats})["changes"] == total - 1
    assert post(client, "/api/impact", {"action": "clear", "filter": {"view": "unlabelled"}})["changes"] == 0
    post(client, "/api/action", {"action": "label", "label": "dog", "scope": "view", "filter": cats})
    assert all(label_of(ws, sha) == "dog" for sha in catalogue.cats)  # as counted: every one changed
    bad = client.post("/api/impact", json={"action": "burn"}, headers={"x-csrf-token": csrf_of(client)})
    assert bad.status_code == 400


def test_grid_at_an_image_starts_the_page_with_it(client: TestClient) -> None:
    order = listed(client)
    page = client.get(f"/?n=3&at={order[4]}")
    assert page.status_code == 200
    shown = re.findall(r'<figure class="card[^"]*"\s+data-sha="([0-9a-f]{64})"', page.text)
    assert shown == order[4:7]
    assert 'id="prev-page"' in page.text
    first = client.get(f"/?n=3&at={order[0]}")
    assert re.findall(r'<figure class="card[^"]*"\s+data-sha="([0-9a-f]{64})"', first.text) == order[:3]
    assert client.get("/?at=nope").status_code == 400


def test_undo_names_the_images_it_undid(client: TestClient, catalogue: Catalogue) -> None:
    shas = [catalogue.dogs[1], catalogue.cats[2]]
    post(client, "/api/action", {"action": "reject", "shas": shas})
    assert post(client, "/api/undo", {})["undone"] == shas
