"""The catalog: SQLite by default, PostgreSQL by URL; provenance, labels, history, targets, runs, frontier."""

from storage.catalog.core import Catalog
from storage.catalog.frontier import (
    FrontierEntry,
    FrontierUpdate,
    add_urls,
    frontier_counts,
    job_key,
    mark_batch,
    mark_done,
    mark_failed,
    mark_skipped,
    pending,
    requeue_failed,
)
from storage.catalog.images import (
    Sighting,
    count_images,
    get_image,
    image_sources,
    iter_images,
    mark_duplicate,
    mark_status,
    record_image,
    record_images,
)
from storage.catalog.labels import (
    add_label,
    delete_label,
    ensure_label,
    label_counts,
    label_history,
    merge_labels,
    rename_label,
    set_label,
    unlabelled_count,
)
from storage.catalog.lookup import resolve_sha
from storage.catalog.records import ImageFacts, SourceInfo, default_actor
from storage.catalog.runs import finish_run, start_run
from storage.catalog.schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "Catalog",
    "FrontierEntry",
    "FrontierUpdate",
    "ImageFacts",
    "Sighting",
    "SourceInfo",
    "add_label",
    "add_urls",
    "count_images",
    "default_actor",
    "delete_label",
    "ensure_label",
    "finish_run",
    "frontier_counts",
    "get_image",
    "image_sources",
    "iter_images",
    "job_key",
    "label_counts",
    "label_history",
    "mark_batch",
    "mark_done",
    "mark_duplicate",
    "mark_failed",
    "mark_skipped",
    "mark_status",
    "merge_labels",
    "pending",
    "record_image",
    "record_images",
    "rename_label",
    "requeue_failed",
    "resolve_sha",
    "set_label",
    "start_run",
    "unlabelled_count",
]
