"""A version-1 catalog (as the first release created it) is brought to the newest schema with its data."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.catalog import Catalog, SourceInfo, get_image, label_counts, record_image
from storage.catalog.migrations import current_version
from storage.catalog.records import ImageFacts
from storage.catalog.schema import SCHEMA_VERSION

V2_COLUMNS = ("dhash", "phash_trim", "hash_variants", "hash_version")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'c.db'}"
    return request.getfixturevalue("pg_url")


def _downgrade_to_v1(catalog: Catalog) -> None:
    """Turn a fresh catalog into exactly what schema version 1 looked like."""
    with catalog.write() as conn:
        conn.execute(sa.text("DROP TABLE quality_flags"))
        conn.execute(sa.text("DROP TABLE image_quality"))
        for column in V2_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE images DROP COLUMN {column}"))
        conn.execute(sa.text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))


def test_v1_catalog_is_migrated_and_keeps_its_rows(url: str) -> None:
    old = Catalog(url)
    _downgrade_to_v1(old)
    facts = ImageFacts("ab" * 32, "JPEG", "jpg", 10, 64, 48, "RGB", (1 << 63) + 5)
    with old.write() as conn:
        record_image(
            conn, facts, "images/ab/x.jpg", SourceInfo("file", "/x.jpg"), label="cat", origin="folder", actor="t"
        )
    old.close()

    migrated = Catalog(url)
    with migrated.read() as conn:
        assert current_version(conn) == SCHEMA_VERSION
        columns = {c["name"] for c in sa.inspect(conn).get_columns("images")}
        assert set(V2_COLUMNS) <= columns
        assert sa.inspect(conn).has_table("quality_flags")
        image = get_image(conn, facts.sha256)
        assert image is not None and image["phash"] == facts.phash and image["dhash"] is None
        assert label_counts(conn) == {"cat": 1}
    migrated.close()
