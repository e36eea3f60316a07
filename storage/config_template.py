"""The `gleaner.toml` that `harvest init` writes: the chosen settings, and every other option commented out with
its default, so that a new user can see what there is to change without reading the code (the README's
Configuration block is this text; tests/storage/test_config_template.py keeps the two equal)."""

from __future__ import annotations

from typing import Any

import tomli_w

from storage.settings import IngestSettings, StoreSettings

__all__ = ["config_text"]

HEADER = "# Gleaner workspace: relative paths are relative to this folder.\n"
COMMENT_AT = 30  # the column where trailing comments start


def _line(key: str, value: Any, comment: str | None = None, *, commented: bool = False) -> str:
    text = ("# " if commented else "") + tomli_w.dumps({key: value}).strip()
    if comment:
        text = text.ljust(COMMENT_AT - 1) + " # " + comment if len(text) < COMMENT_AT - 1 else f"{text}   # {comment}"
    return text + "\n"


def config_text(
    store_url: str, catalog_url: str, *, endpoint_url: str | None = None, addressing_style: str | None = None
) -> str:
    """The file's text for these settings; options left at their defaults are shown as comments."""
    store, ingest = StoreSettings(), IngestSettings()
    endpoint = "S3-compatible server (else AWS_ENDPOINT_URL_S3, else AWS)"
    lines = ["[store]\n", _line("url", store_url, 'or "s3://bucket/prefix"')]
    lines.append(_line("endpoint_url", endpoint_url or "http://127.0.0.1:8333", endpoint, commented=not endpoint_url))
    lines.append(
        _line("addressing_style", addressing_style or "path", "auto | path | virtual", commented=not addressing_style)
    )
    lines += [
        _line("region", "us-east-1", commented=True),
        _line("max_pool_connections", store.max_pool_connections, commented=True),
        "\n[catalog]\n",
        _line("url", catalog_url, 'or "postgresql://user@host/db"'),
        "\n[ingest]\n",
        _line("min_side", ingest.min_side, "px"),
        _line("max_pixels", ingest.max_pixels, commented=True),
        _line("max_bytes", ingest.max_bytes, commented=True),
        _line("workers", ingest.workers, "0: one process per core", commented=True),
        _line(
            "near_duplicates",
            ingest.near_duplicates,
            "set aside verified near-duplicates of catalogued images at ingest",
            commented=True,
        ),
        _line("near_duplicate_threshold", ingest.near_duplicate_threshold, commented=True),
    ]
    return HEADER + "\n" + "".join(lines)
