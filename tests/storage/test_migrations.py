"""A version-1 catalog (as the first release created it) is brought to the newest schema with its data."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.catalog import Catalog, get_image, label_counts
from storage.catalog.migrations import current_version
from storage.catalog.schema import SCHEMA_VERSION
from storage.catalog.sql import signed64

V2_COLUMNS = ("dhash", "phash_trim", "hash_variants", "hash_version")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'c.db'}"
    return request.getfixturevalue("pg_url")


def _downgrade_to_v1(catalog: Catalog) -> None:
    """Turn a fresh catalog into exactly what schema version 1 looked like."""
    with catalog.write() as conn:
        for index in ("ix_images_label_sha", "ix_images_duplicate_of", "ix_sources_sha_label"):
            conn.execute(sa.text(f"DROP INDEX {index}"))
        conn.execute(sa.text("CREATE INDEX ix_images_label ON images (label_id)"))
        conn.execute(sa.text("DROP TABLE predictions"))
        conn.execute(sa.text("DROP TABLE review_events"))
        conn.execute(sa.text("DROP TABLE quality_flags"))  # with its indexes
        conn.execute(sa.text("DROP TABLE image_quality"))
        for column in V2_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE images DROP COLUMN {column}"))
        conn.execute(sa.text("ALTER TABLE frontier DROP COLUMN extra"))  # added by version 5
        conn.execute(sa.text("DROP TABLE duplicate_candidates"))  # added by version 6
        conn.execute(sa.text("DROP TABLE duplicate_decisions"))
        conn.execute(sa.text("ALTER TABLE images DROP COLUMN content_pixels"))
        for column in ("error_kind", "lease_owner", "lease_until"):  # added by version 7
            conn.execute(sa.text(f"ALTER TABLE frontier DROP COLUMN {column}"))
        for column in ("origin", "sources", "closed_at"):  # added by version 8
            conn.execute(sa.text(f"ALTER TABLE targets DROP COLUMN {column}"))
        conn.execute(sa.text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))


def test_v1_catalog_is_migrated_and_keeps_its_rows(url: str) -> None:
    old = Catalog(url)
    _downgrade_to_v1(old)
    sha, phash = "ab" * 32, (1 << 63) + 5
    with old.write() as conn:  # rows as version 1 wrote them (no v2 columns)
        conn.execute(sa.text("INSERT INTO labels (name, created_at) VALUES ('cat', CURRENT_TIMESTAMP)"))
        conn.execute(
            sa.text(
                "INSERT INTO images (sha256, object_key, ext, format, size_bytes, width, height, mode, phash, label_id,"
                " status, review, added_at, updated_at) VALUES (:sha, 'images/ab/x.jpg', 'jpg', 'JPEG', 10, 64, 48,"
                " 'RGB', :phash, (SELECT id FROM labels WHERE name = 'cat'), 'ok', 'unreviewed', CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP)"
            ),
            {"sha": sha, "phash": signed64(phash)},
        )
        for url_, state, error in (("http://a/1", "skipped", "robots: disallowed"), ("http://a/2", "done", None)):
            conn.execute(
                sa.text(
                    "INSERT INTO frontier (job, url, kind, state, attempts, depth, last_error, updated_at)"
                    " VALUES ('j', :url, 'image', :state, 1, 0, :error, CURRENT_TIMESTAMP)"
                ),
                {"url": url_, "state": state, "error": error},
            )
    old.close()

    migrated = Catalog(url)
    with migrated.read() as conn:
        assert current_version(conn) == SCHEMA_VERSION
        columns = {c["name"] for c in sa.inspect(conn).get_columns("images")}
        assert set(V2_COLUMNS) <= columns
        assert "extra" in {c["name"] for c in sa.inspect(conn).get_columns("frontier")}
        assert all(sa.inspect(conn).has_table(t) for t in ("quality_flags", "predictions", "review_events"))
        index_names = {i["name"] for i in sa.inspect(conn).get_indexes("images")}
        assert {"ix_images_label_sha", "ix_images_duplicate_of"} <= index_names
        assert "ix_images_label" not in index_names
        image = get_image(conn, sha)
        assert image is not None and image["phash"] == phash and image["dhash"] is None
        assert label_counts(conn) == {"cat": 1}
        kinds = conn.execute(sa.text("SELECT url, error_kind FROM frontier ORDER BY url")).all()
        assert [tuple(row) for row in kinds] == [("http://a/1", "robots"), ("http://a/2", None)]  # from the v1 prefix
    migrated.close()


def test_v11_catalog_gets_the_audit_tables_and_keeps_its_rows(url: str) -> None:
    """Schema 12 adds the label-audit tables (out-of-fold probabilities, suspects); a v11 catalog gains them and
    keeps its images, and the suspects query works on the migrated catalog."""
    from storage.catalog.audits import (
        AuditPrediction,
        Suspect,
        audit_probabilities,
        finish_audit,
        replace_suspects,
        start_audit,
        suspects,
        write_audit_predictions,
    )
    from storage.catalog.runs import start_run

    old = Catalog(url)
    sha = "cd" * 32
    with old.write() as conn:
        for table in ("audit_suspects", "audit_predictions", "audits"):
            conn.execute(sa.text(f"DROP TABLE {table}"))
        conn.execute(sa.text("UPDATE meta SET value = '11' WHERE key = 'schema_version'"))
        conn.execute(sa.text("INSERT INTO labels (name, created_at) VALUES ('cat', CURRENT_TIMESTAMP)"))
        conn.execute(
            sa.text(
                "INSERT INTO images (sha256, object_key, ext, format, size_bytes, width, height, mode, phash, label_id,"
                " status, review, added_at, updated_at) VALUES (:sha, 'images/cd/x.png', 'png', 'PNG', 10, 8, 8,"
                " 'L', 5, (SELECT id FROM labels WHERE name = 'cat'), 'ok', 'unreviewed', CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP)"
            ),
            {"sha": sha},
        )
    with old.read() as conn:
        assert not sa.inspect(conn).has_table("audits")
    old.close()

    migrated = Catalog(url)
    with migrated.write() as conn:
        assert current_version(conn) == SCHEMA_VERSION == 12
        assert all(sa.inspect(conn).has_table(t) for t in ("audits", "audit_predictions", "audit_suspects"))
        assert label_counts(conn) == {"cat": 1}
        run_id = start_run(conn, "audit", {})
        start_audit(conn, run_id, "snap", ["cat", "dog"], 5)
        write_audit_predictions(conn, run_id, [AuditPrediction(sha, "cat", sha, 2, [0.1, 0.9])])
        replace_suspects(conn, run_id, [Suspect(sha, "cat", "dog", 0.9, ["confident_learning"])])
        assert suspects(conn) == []  # the audit has not finished
        finish_audit(conn, run_id)
    with migrated.read() as conn:
        assert audit_probabilities(conn, run_id) == [AuditPrediction(sha, "cat", sha, 2, [0.1, 0.9])]
        (found,) = suspects(conn)
        assert (found.suggested, found.current, found.resolved) == ("dog", "cat", False)
    migrated.close()
