"""The review app's queries and actions on a PostgreSQL catalog (keyset tuples, window counts, unions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from curate.review import create_app
from tests.review.conftest import build_catalogue

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
