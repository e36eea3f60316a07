"""The catalog's tables at the newest schema version (SQLAlchemy Core).

Fresh catalogs are created from these definitions and stamped with SCHEMA_VERSION; older catalogs
are brought forward by the steps in `migrations.py`. Change both together.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "SCHEMA_VERSION",
    "audit_predictions",
    "audit_suspects",
    "audits",
    "duplicate_candidates",
    "duplicate_decisions",
    "frontier",
    "hosts",
    "image_quality",
    "images",
    "jobs",
    "label_events",
    "labels",
    "meta",
    "metadata",
    "predictions",
    "quality_flags",
    "review_events",
    "robots_answers",
    "run_budgets",
    "run_workers",
    "runs",
    "snapshots",
    "sources",
    "targets",
]

SCHEMA_VERSION = 12

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

images = Table(
    "images",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("object_key", String(200), nullable=False),
    Column("ext", String(8), nullable=False),
    Column("format", String(16), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("phash", BigInteger, nullable=False),  # 64-bit pHash stored as a signed int64
    # v2: transform-aware hashes (NULL until computed at ingest or backfilled by `curate dedupe`)
    Column("dhash", BigInteger, nullable=True),
    Column("phash_trim", BigInteger, nullable=True),  # pHash after trimming uniform borders and bars
    Column("hash_variants", LargeBinary, nullable=True),  # storage.hashes.compute.ImageHashes.to_blob(): uint64 LE
    Column("hash_version", Integer, nullable=True),
    Column("content_pixels", BigInteger, nullable=True),  # v6: pixels inside borders and frames (NULL: unknown)
    Column("label_id", Integer, ForeignKey("labels.id"), nullable=True),  # the current label
    Column("status", String(16), nullable=False, default="ok"),  # ok | missing | corrupt
    Column("review", String(16), nullable=False, default="unreviewed"),  # unreviewed | accepted | rejected
    Column("duplicate_of", String(64), nullable=True),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_images_label_sha", "label_id", "sha256"),  # v4: grid pages of one label, keyset-paged
    Index("ix_images_duplicate_of", "duplicate_of", "sha256"),
    Index("ix_images_phash", "phash"),
)

sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False),
    Column("kind", String(16), nullable=False),  # file | url | scrape | watch
    Column("uri", Text, nullable=False),  # the path or URL the bytes came from
    Column("page_url", Text, nullable=True),
    Column("alt_text", Text, nullable=True),
    Column("label", String(200), nullable=True),  # the label this source suggested
    Column("http_status", Integer, nullable=True),
    Column("run_id", Integer, nullable=True),
    Column("extra", JSON, nullable=True),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("sha256", "kind", "uri", name="uq_sources_sha_kind_uri"),
    Index("ix_sources_sha256", "sha256"),
    Index("ix_sources_sha_label", "sha256", "label"),  # v4: label conflicts between sources
)

label_events = Table(
    "label_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=True),  # null for events on a whole label (rename, merge, add)
    Column("action", String(16), nullable=False),  # set | clear | add | rename | merge
    Column("before", String(200), nullable=True),
    Column("after", String(200), nullable=True),
    Column("origin", String(16), nullable=False),  # folder | scrape | human | model | cli
    Column("actor", String(100), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_label_events_sha256", "sha256"),
)

targets = Table(
    "targets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(200), nullable=False),
    Column("want", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False, default="open"),  # open | met | closed | dropped
    Column("priority", Integer, nullable=False, default=0),
    Column("run_id", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),  # when it opened: collected counts from here
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("origin", Text, nullable=True),  # v8: the run's folder, or "manual"
    Column("sources", JSON, nullable=True),  # v8: URLs to collect from (`harvest targets set --source`)
    Column("closed_at", DateTime(timezone=True), nullable=True),  # v8: when it stopped counting
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("manifest_key", String(300), nullable=False),
    Column("image_count", Integer, nullable=False),
    Column("meta", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # import | scrape | urls | watch | job | train
    Column("status", String(16), nullable=False),  # running | done | failed | interrupted
    Column("config", JSON, nullable=True),
    Column("summary", JSON, nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

frontier = Table(
    "frontier",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(200), nullable=False, default=""),
    Column("url", Text, nullable=False),
    Column("kind", String(8), nullable=False),  # page | image
    Column("state", String(16), nullable=False, default="pending"),  # pending | done | failed | skipped
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("depth", Integer, nullable=False, default=0),
    Column("referrer", Text, nullable=True),
    Column("label", String(200), nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("extra", JSON, nullable=True),  # what the page said of an image (alt text, how it was found)
    Column("error_kind", String(32), nullable=True),  # robots, ssrf, timeout, http_4xx, rejected... (v7)
    Column("lease_owner", String(200), nullable=True),  # host:pid:run of the worker that claimed the row (v7)
    Column("lease_until", DateTime(timezone=True), nullable=True),  # the claim lapses after this time (v7)
    UniqueConstraint("job", "kind", "url", name="uq_frontier_job_kind_url"),
    Index("ix_frontier_state", "job", "state"),
)

image_quality = Table(
    "image_quality",
    metadata,
    Column("sha256", String(64), ForeignKey("images.sha256"), primary_key=True),
    Column("metrics", JSON, nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
)

quality_flags = Table(
    "quality_flags",
    metadata,
    Column("sha256", String(64), ForeignKey("images.sha256"), primary_key=True),
    Column("flag", String(32), primary_key=True),
    Column("value", Float, nullable=True),
    Index("ix_quality_flags_flag_sha", "flag", "sha256"),
)

# v3: model feedback and review history
predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("sha256", String(64), ForeignKey("images.sha256"), nullable=False),
    Column("split", String(8), nullable=True),
    Column("true_label", String(200), nullable=True),
    Column("predicted_label", String(200), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("loss", Float, nullable=True),
    Column("needs_review", Boolean, nullable=False, default=False),  # misclassified or low confidence
    UniqueConstraint("run_id", "sha256", name="uq_predictions_run_sha"),
    Index("ix_predictions_review", "run_id", "needs_review"),
)

review_events = Table(
    "review_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("before", String(16), nullable=True),
    Column("after", String(16), nullable=False),  # unreviewed | accepted | rejected
    Column("actor", String(100), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_review_events_sha256", "sha256"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("schedule", String(100), nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("last_run_id", Integer, nullable=True),
    Column("last_run_at", DateTime(timezone=True), nullable=True),
    Column("next_run_at", DateTime(timezone=True), nullable=True),
)

# v6: near-duplicates that need a person, and the corrections people made
duplicate_candidates = Table(
    "duplicate_candidates",
    metadata,
    Column("sha256", String(64), ForeignKey("images.sha256"), primary_key=True),  # the newer image
    Column("other", String(64), ForeignKey("images.sha256"), primary_key=True),  # the catalogued one it matched
    Column("distance", Integer, nullable=False),  # transform-aware hash distance
    Column("matched", String(64), nullable=False),  # which transform and views matched ("mirror, trim/trim")
    Column("score", Float, nullable=False),  # pixel verification score (storage.hashes.verify)
    Column("reason", Text, nullable=False),  # why it was not set aside automatically
    Column("found_at", DateTime(timezone=True), nullable=False),
    Index("ix_duplicate_candidates_other", "other"),
)

duplicate_decisions = Table(
    "duplicate_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # not_duplicate (a, b) | duplicate (a, b) | keeper (a)
    Column("sha_a", String(64), nullable=False),
    Column("sha_b", String(64), nullable=True),
    Column("actor", String(100), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),  # history is kept: revoking only stamps
    Index("ix_duplicate_decisions_a", "sha_a"),
)

# v9: politeness shared by workers on several machines (storage/catalog/hosts.py). Times are seconds since the
# epoch on the database's clock, so workers whose clocks disagree still space their requests correctly.
hosts = Table(
    "hosts",
    metadata,
    Column("host", String(300), primary_key=True),  # host[:port], as the fetch layer keys its limits
    Column("next_at", Float, nullable=False),  # GCRA's theoretical arrival time of the next request
    Column("hold_until", Float, nullable=False),  # no request before this (Retry-After)
    Column("updated_at", Float, nullable=False),
)

robots_answers = Table(
    "robots_answers",
    metadata,
    Column("scope", String(200), primary_key=True),  # the run (or job) whose workers share the answer
    Column("origin", String(300), primary_key=True),  # scheme://host[:port]
    Column("state", String(16), nullable=False),  # fetching | done
    Column("owner", String(200), nullable=False),  # the worker fetching it (host:pid:run)
    Column("claimed_until", Float, nullable=False),  # another worker takes over a fetch that lapsed
    Column("status", Integer, nullable=True),  # HTTP status, NULL when unreachable
    Column("body", LargeBinary, nullable=True),  # NULL unless a 2xx body was read whole
    Column("expires_at", Float, nullable=True),  # NULL: kept for the whole scope
)

# v10: the processes serving a job run (harvest jobs run NAME started while a run is in progress joins it). A row
# per worker: a stale one (its pid gone on this host, or its heartbeat lapsed) no longer holds the run open.
run_workers = Table(
    "run_workers",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("owner", String(200), primary_key=True),  # host:pid
    Column("joined_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("left_at", DateTime(timezone=True), nullable=True),  # NULL while it works
    Column("status", String(16), nullable=True),  # done | interrupted | failed, when it left
    Column("summary", JSON, nullable=True),  # its share of the run's counts, when it left
)

# v11: what a job run has admitted, by label key, across all its workers: `max_images` and `max_per_label` are
# per run, so the workers reserve their admissions here (storage.catalog.budgets) under a per-run lock.
run_budgets = Table(
    "run_budgets",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("label_key", String(300), primary_key=True),  # storage.catalog.labels.label_key; "" for unlabelled
    Column("admitted", Integer, nullable=False),
)

# v12: label audits (`train audit`, storage.catalog.audits): out-of-fold class probabilities of every image of a
# snapshot, and the suspected label errors found in them. An audit is a run (runs.kind "audit").
audits = Table(
    "audits",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("snapshot", String(200), nullable=False),
    Column("labels", JSON, nullable=False),  # the class order of every probability vector of the audit
    Column("folds", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # running | done
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

audit_predictions = Table(
    "audit_predictions",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), primary_key=True),
    Column("label", String(200), nullable=False),  # the label the image had in the audited snapshot
    Column("group_key", String(64), nullable=False),  # its near-duplicate group in the snapshot
    Column("fold", Integer, nullable=False),  # 1-based: the fold whose model never saw the image
    Column("probs", JSON, nullable=False),  # out-of-fold probabilities, in audits.labels order
)

audit_suspects = Table(
    "audit_suspects",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("sha256", String(64), ForeignKey("images.sha256"), primary_key=True),
    Column("label", String(200), nullable=False),  # the label at the audit
    Column("suggested", String(200), nullable=False),  # the label it probably is
    Column("score", Float, nullable=False),  # 0-1, higher: more likely wrong
    Column("sources", JSON, nullable=False),  # ["confident_learning", "near_duplicate_conflict"]
    Index("ix_audit_suspects_score", "run_id", "score"),
)
