"""Schema versions. A fresh catalog is created at the newest version; an older one is migrated step by step.

Each step is `(version, description, function(conn))` and runs inside the same write transaction that
updates `meta.schema_version`, so a crash mid-migration leaves the previous version intact (SQLite and
PostgreSQL both have transactional DDL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, inspect, select

from storage.catalog import schema
from storage.errors import GleanerError

__all__ = ["MIGRATIONS", "current_version", "upgrade"]

Migration = tuple[int, str, Callable[[Connection], None]]


def _v2_hashes_and_quality(conn: Connection) -> None:
    """Transform-aware hash columns (filled by ingest, backfilled by `curate dedupe`) and quality tables."""
    columns: dict[str, sa.types.TypeEngine[Any]] = {
        "dhash": sa.BigInteger(),
        "phash_trim": sa.BigInteger(),
        "hash_variants": sa.LargeBinary(),
        "hash_version": sa.Integer(),
    }
    preparer = conn.dialect.identifier_preparer
    for name, column_type in columns.items():
        type_sql = column_type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE images ADD COLUMN {preparer.quote(name)} {type_sql}"))
    schema.image_quality.create(conn)
    schema.quality_flags.create(conn)


def _v3_predictions_and_review(conn: Connection) -> None:
    """Per-image predictions of training runs (what the review UI filters on) and the review history."""
    schema.predictions.create(conn)
    schema.review_events.create(conn)


def _v4_review_indexes(conn: Connection) -> None:
    """Indexes that keep the review grid under 300 ms at 100,000 images (bench/review.py).

    IF [NOT] EXISTS: step 2 creates its tables from today's definitions, which already carry these indexes."""
    for statement in (
        "CREATE INDEX IF NOT EXISTS ix_images_label_sha ON images (label_id, sha256)",
        "CREATE INDEX IF NOT EXISTS ix_images_duplicate_of ON images (duplicate_of, sha256)",
        "CREATE INDEX IF NOT EXISTS ix_quality_flags_flag_sha ON quality_flags (flag, sha256)",
        "CREATE INDEX IF NOT EXISTS ix_sources_sha_label ON sources (sha256, label)",
        "DROP INDEX IF EXISTS ix_images_label",  # covered by ix_images_label_sha
        "DROP INDEX IF EXISTS ix_quality_flags_flag",  # covered by ix_quality_flags_flag_sha
    ):
        conn.execute(sa.text(statement))


def _v5_frontier_extra(conn: Connection) -> None:
    """What the page said of a queued image (alt text, how it was found), kept for a run that resumes."""
    type_sql = sa.JSON().compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE frontier ADD COLUMN extra {type_sql}"))


def _v6_duplicate_review(conn: Connection) -> None:
    """Near-duplicate candidates waiting for a person, and people's corrections (not duplicates, keepers)."""
    schema.duplicate_candidates.create(conn)
    schema.duplicate_decisions.create(conn)
    type_sql = sa.BigInteger().compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE images ADD COLUMN content_pixels {type_sql}"))


def _v7_frontier_error_kind_and_leases(conn: Connection) -> None:
    """The kind of a frontier row's error in its own column (was a `kind:` prefix of `last_error`), and claims
    with leases so that several workers can share one job. Existing rows get their kind from the prefix."""
    preparer = conn.dialect.identifier_preparer
    columns: dict[str, sa.types.TypeEngine[Any]] = {
        "error_kind": sa.String(32),
        "lease_owner": sa.String(200),
        "lease_until": sa.DateTime(timezone=True),
    }
    for name, column_type in columns.items():
        type_sql = column_type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE frontier ADD COLUMN {preparer.quote(name)} {type_sql}"))
    table = schema.frontier
    rows = conn.execute(
        select(table.c.id, table.c.last_error).where(
            table.c.state.in_(("failed", "skipped")) & table.c.last_error.isnot(None)
        )
    ).all()
    updates = []
    for row_id, error in rows:
        kind, sep, _rest = str(error).partition(":")
        if sep and kind and len(kind) <= 32 and kind.replace("_", "").isalnum():
            updates.append({"b_id": row_id, "b_kind": kind})
    if updates:
        conn.execute(
            table.update().where(table.c.id == sa.bindparam("b_id")).values(error_kind=sa.bindparam("b_kind")), updates
        )


def _v9_shared_politeness(conn: Connection) -> None:
    """Per-host request times and robots.txt answers in the catalog, shared by workers on several machines.

    checkfirst: a catalog downgraded by hand (tests) may still have them."""
    schema.hosts.create(conn, checkfirst=True)
    schema.robots_answers.create(conn, checkfirst=True)


def _v8_targets_that_move(conn: Connection) -> None:
    """Targets name their run's folder, keep their --source URLs and when they closed (collected counts while
    open); `done` becomes `closed`. A run target's folder comes from the run's recorded `run_dir`."""
    preparer = conn.dialect.identifier_preparer
    columns: dict[str, sa.types.TypeEngine[Any]] = {
        "origin": sa.Text(),
        "sources": sa.JSON(),
        "closed_at": sa.DateTime(timezone=True),
    }
    for name, column_type in columns.items():
        type_sql = column_type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE targets ADD COLUMN {preparer.quote(name)} {type_sql}"))
    table = schema.targets
    conn.execute(table.update().where(table.c.status == "done").values(status="closed"))
    conn.execute(table.update().where(table.c.status != "open").values(closed_at=table.c.updated_at))
    conn.execute(table.update().where(table.c.run_id.is_(None)).values(origin="manual"))
    folders = {
        int(run_id): str(config["run_dir"])
        for run_id, config in conn.execute(select(schema.runs.c.id, schema.runs.c.config))
        if isinstance(config, dict) and config.get("run_dir")
    }
    run_ids = {int(r) for r in conn.execute(select(table.c.run_id).where(table.c.run_id.is_not(None))).scalars()}
    for run_id in run_ids:
        origin = folders.get(run_id, f"run {run_id}")
        conn.execute(table.update().where(table.c.run_id == run_id).values(origin=origin))


def _v10_run_workers(conn: Connection) -> None:
    """The workers serving each job run, with heartbeats: several `harvest jobs run NAME` share one run."""
    schema.run_workers.create(conn, checkfirst=True)


def _v11_run_budgets(conn: Connection) -> None:
    """What each job run admitted by label, across its workers (max_images and max_per_label are per run)."""
    schema.run_budgets.create(conn, checkfirst=True)


def _v12_label_audits(conn: Connection) -> None:
    """Label audits: out-of-fold probabilities per image and the suspected label errors (`train audit`)."""
    for table in (schema.audits, schema.audit_predictions, schema.audit_suspects):
        table.create(conn, checkfirst=True)


# Steps from version N-1 to N. Version 1 is the initial schema and has no step.
MIGRATIONS: list[Migration] = [
    (2, "transform-aware hashes, quality metrics and flags", _v2_hashes_and_quality),
    (3, "training predictions and review history", _v3_predictions_and_review),
    (4, "indexes for the review grid", _v4_review_indexes),
    (5, "image details in the frontier", _v5_frontier_extra),
    (6, "near-duplicate candidates and decisions", _v6_duplicate_review),
    (7, "frontier error kinds and claim leases", _v7_frontier_error_kind_and_leases),
    (8, "targets: run folder, sources, closing time", _v8_targets_that_move),
    (9, "per-host politeness and robots.txt answers shared by workers", _v9_shared_politeness),
    (10, "workers of job runs", _v10_run_workers),
    (11, "run-wide admission budgets of job runs", _v11_run_budgets),
    (12, "label audits: out-of-fold probabilities and suspected label errors", _v12_label_audits),
]


def current_version(conn: Connection) -> int | None:
    """The stored schema version, or None for an empty database."""
    if not inspect(conn).has_table("meta"):
        return None
    row = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).first()
    return int(row[0]) if row else None


def upgrade(conn: Connection) -> int:
    """Bring the catalog to SCHEMA_VERSION; returns the version it had before (0 when new)."""
    version = current_version(conn)
    if version is None:
        schema.metadata.create_all(conn)
        _stamp(conn, schema.SCHEMA_VERSION, insert=True)
        return 0
    if version > schema.SCHEMA_VERSION:
        raise GleanerError(
            f"the catalog has schema version {version}, newer than this Gleaner's {schema.SCHEMA_VERSION}: "
            "upgrade Gleaner"
        )
    for step_version, _description, step in MIGRATIONS:
        if step_version > version:
            step(conn)
            _stamp(conn, step_version, insert=False)
    return version


def _stamp(conn: Connection, version: int, *, insert: bool) -> None:
    table = schema.meta
    if insert:
        conn.execute(table.insert().values(key="schema_version", value=str(version)))
    else:
        conn.execute(table.update().where(table.c.key == "schema_version").values(value=str(version)))
