"""Quality metrics and flags (`curate check`): metrics are kept per image so a rerun decodes only new images;
flags are replaced as a whole because the dataset-level ones depend on every image."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, select

from storage.catalog.schema import image_quality, quality_flags
from storage.catalog.sql import insert_ignore, now

__all__ = ["flag_counts", "image_flags", "image_metrics", "replace_flags", "save_metrics", "stored_metrics"]


def stored_metrics(conn: Connection) -> dict[str, dict[str, Any]]:
    """sha256 -> the metrics measured earlier (as QualityMetrics.to_json() wrote them)."""
    return {
        str(sha): dict(metrics)
        for sha, metrics in conn.execute(select(image_quality.c.sha256, image_quality.c.metrics))
    }


def save_metrics(conn: Connection, metrics: Mapping[str, Mapping[str, Any]]) -> None:
    """Store freshly measured metrics, replacing earlier ones of the same images."""
    stamp = now()
    for sha, values in metrics.items():
        conn.execute(delete(image_quality).where(image_quality.c.sha256 == sha))
        conn.execute(image_quality.insert().values(sha256=sha, metrics=dict(values), checked_at=stamp))


def replace_flags(conn: Connection, flags: Mapping[str, Mapping[str, float]]) -> None:
    """Make the flags exactly `flags` (sha256 -> flag -> value)."""
    conn.execute(delete(quality_flags))
    for sha, named in flags.items():
        for flag, value in named.items():
            insert_ignore(conn, quality_flags, {"sha256": sha, "flag": flag, "value": float(value)}, ["sha256", "flag"])


def image_flags(conn: Connection, sha256: str) -> dict[str, float]:
    query = select(quality_flags.c.flag, quality_flags.c.value).where(quality_flags.c.sha256 == sha256)
    return {str(flag): float(value) for flag, value in conn.execute(query)}


def image_metrics(conn: Connection, sha256: str) -> dict[str, Any]:
    """The image's measured metrics ({} when never measured)."""
    found = conn.execute(select(image_quality.c.metrics).where(image_quality.c.sha256 == sha256)).scalar()
    return dict(found) if found else {}


def flag_counts(conn: Connection) -> dict[str, int]:
    """How many images carry each flag."""
    query = select(quality_flags.c.flag, func.count()).group_by(quality_flags.c.flag).order_by(quality_flags.c.flag)
    return {str(flag): int(count) for flag, count in conn.execute(query)}
