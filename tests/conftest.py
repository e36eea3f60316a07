"""Shared fixtures: real SeaweedFS and PostgreSQL servers, real photos, fresh workspaces."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.workspace import Workspace, init_workspace
from tests.support.servers import PostgresServer, S3Server, postgres_server, seaweedfs_server

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
PHOTOS = SHARED_DATA / "photos"
NEAR_DUPLICATES = SHARED_DATA / "near-duplicates"


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    if not PHOTOS.is_dir():
        pytest.skip(f"real photos not found at {PHOTOS} (../shared/data beside the checkout)")
    return PHOTOS


@pytest.fixture(scope="session")
def photo_files(photos_dir: Path) -> list[Path]:
    return sorted(photos_dir.glob("*.jpg"))


@pytest.fixture(scope="session")
def near_duplicates_dir() -> Path:
    if not NEAR_DUPLICATES.is_dir():
        pytest.skip(f"near-duplicate test images not found at {NEAR_DUPLICATES}")
    return NEAR_DUPLICATES


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One SeaweedFS server for the whole session (starts in about a second)."""
    with seaweedfs_server() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Point the standard AWS credential chain and endpoint variable at the test server."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server; skipped with the reason only where it cannot be installed."""
    try:
        with postgres_server() as server:
            yield server
    except RuntimeError as exc:
        if os.environ.get("GLEANER_REQUIRE_POSTGRES"):
            raise
        pytest.skip(f"PostgreSQL unavailable: {exc}")


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["local", "s3"])
def any_workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Workspace:
    """A fresh workspace on the local store and, in a second run, on SeaweedFS."""
    if request.param == "local":
        workspace, _ = init_workspace(tmp_path / "ws")
        return workspace
    server: S3Server = request.getfixturevalue("s3_env")
    bucket = f"ws-{uuid.uuid4().hex[:12]}"
    workspace, _ = init_workspace(
        tmp_path / "ws", store_url=f"s3://{bucket}/data", endpoint_url=server.endpoint_url, addressing_style="path"
    )
    return workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws, _ = init_workspace(tmp_path / "ws")
    return ws
