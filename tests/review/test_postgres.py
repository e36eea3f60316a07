"""The review app's queries and actions on a PostgreSQL catalog (keyset tuples, window counts, unions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from curate.review import create_app
from storage.catalog import get_image
from tests.review.conftest import build_catalogue, build_pairs

pytestmark = pytest.mark.postgres
TOKEN = "pg-token"


def test_views_paging_and_actions_on_postgresql(pg_url: str, tmp_path: Path, photo_files: list[Path]) -> None:
    catalogue = build_catalogue(tmp_path / "ws", photo_files, catalog_url=pg_url)
    shas = catalogue.shas
    ws = catalogue.open()
    headers = {"authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(ws, token=TOKEN), headers=headers) as client:

        def listed(query: str) -> list[str]:
            response = client.get(f"/api/images?{query}")
            assert response.status_code == 200, response.text
            return [item["sha256"] for item in response.json()["images"]]

        assert sorted(listed("label=cat")) == sorted(catalogue.cats)
        assert sorted(listed("view=conflicts")) == sorted([shas[2], shas[4]])
        assert sorted(listed("view=duplicates")) == sorted([shas[0], shas[1], shas[2], shas[4]])
        assert listed("view=misclassified") == [shas[3], shas[6]]
        assert listed("view=flagged&flag=blurry") == [shas[7]]
        walked, cursor = [], None
        while True:
            page = client.get("/api/images?n=4" + (f"&after={cursor}" if cursor else "")).json()
            walked += [item["sha256"] for item in page["images"]]
            if not (cursor := page["next"]):
                break
        assert walked == sorted(shas)
        assert client.get("/?view=duplicates").status_code == 200
        assert client.get(f"/image/{shas[3]}?view=misclassified").status_code == 200
        answer = client.post("/api/action", json={"action": "label", "label": "dog", "shas": [shas[7]]}).json()
        assert {e["name"]: e["count"] for e in answer["legend"]} == {"cat": 3, "dog": 3}
        bulk = {"action": "accept", "scope": "view", "filter": {"label": "cat"}}
        assert client.post("/api/action", json=bulk).json()["changed"] == 4
        assert client.post("/api/undo", json={}).json()["changed"] == 4
        assert client.post("/api/undo", json={}).json()["images"][shas[7]]["label"] is None
    ws.close()


def test_candidates_and_decisions_on_postgresql(pg_url: str, tmp_path: Path, photo_files: list[Path]) -> None:
    (tmp_path / "copies").mkdir()
    pairs = build_pairs(tmp_path / "ws", photo_files, tmp_path / "copies", catalog_url=pg_url)
    ws = pairs.open()
    headers = {"authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(ws, token=TOKEN), headers=headers) as client:
        walked, cursor = [], None
        while True:
            page = client.get("/api/candidates?n=2" + (f"&after={cursor}" if cursor else "")).json()
            walked += [(item["a"], item["b"]) for item in page["candidates"]]
            if not (cursor := page["next"]):
                break
        assert sorted(walked) == sorted(zip(pairs.originals, pairs.copies, strict=True))
        assert client.get("/?view=candidates").text.count('<section class="pair"') == 3
        a, b = walked[0]
        body = {"action": "duplicate", "a": a, "b": b}
        assert client.post("/api/dedupe", json=body).json()["regroup"]
        with ws.catalog.read() as conn:
            row = get_image(conn, b)
        assert row is not None and row["duplicate_of"] == a
        assert client.get("/api/candidates").json()["total"] == 2
        assert "Near-duplicate decisions" in client.get(f"/image/{a}").text
        client.post("/api/undo", json={})
        assert client.get("/api/candidates").json()["total"] == 3
    ws.close()
