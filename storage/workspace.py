"""The workspace: a folder with `gleaner.toml` that names the store and the catalog."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from storage.catalog import Catalog
from storage.config_template import config_text
from storage.errors import GleanerError, WorkspaceNotFound
from storage.settings import CONFIG_NAME, Settings, load_settings
from storage.stores import ObjectStore, open_store

__all__ = ["Workspace", "find_workspace", "init_workspace", "open_workspace"]

ENV_WORKSPACE = "GLEANER_WORKSPACE"


class Workspace:
    """Settings plus lazily opened store and catalog; one per process (each worker opens its own)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def root(self) -> Path:
        return self.settings.root

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings.store_url, self.settings.store.backend_options())

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.settings.resolved_catalog_url)

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def find_workspace(explicit: str | Path | None = None) -> Path:
    """--workspace, then $GLEANER_WORKSPACE, then the current folder and its parents."""
    for given, origin in ((explicit, "--workspace"), (os.environ.get(ENV_WORKSPACE), ENV_WORKSPACE)):
        if given:
            root = Path(given).expanduser().resolve()
            if not (root / CONFIG_NAME).is_file():
                raise WorkspaceNotFound(
                    f"{origin} points to {root}, which has no {CONFIG_NAME} (run `harvest init {root}`)"
                )
            return root
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise WorkspaceNotFound(
        f"no Gleaner workspace here: no {CONFIG_NAME} in {here} or its parents. "
        f"Run `harvest init DIR`, or pass --workspace DIR, or set {ENV_WORKSPACE}."
    )


def open_workspace(
    explicit: str | Path | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Workspace:
    return Workspace(load_settings(find_workspace(explicit), overrides))


CATALOG_SCHEMES = ("sqlite", "postgresql", "postgres")  # the catalogs Gleaner runs on (SQLAlchemy URL schemes)
ADDRESSING_STYLES = ("auto", "path", "virtual")  # botocore's S3 addressing styles


def _check_new_settings(catalog_url: str | None, addressing_style: str | None) -> None:
    """Refuse settings no workspace can open, before anything is written: one line that says what would work."""
    if catalog_url:
        scheme = catalog_url.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme not in CATALOG_SCHEMES:
            raise GleanerError(
                f"unsupported catalog {catalog_url!r}: Gleaner's catalog is SQLite (sqlite:///PATH) "
                "or PostgreSQL (postgresql://USER@HOST/DB)"
            )
    if addressing_style and addressing_style not in ADDRESSING_STYLES:
        raise GleanerError(f"unknown --addressing-style {addressing_style!r}: use {', '.join(ADDRESSING_STYLES)}")


def init_workspace(
    directory: str | Path,
    *,
    store_url: str | None = None,
    catalog_url: str | None = None,
    endpoint_url: str | None = None,
    addressing_style: str | None = None,
) -> tuple[Workspace, bool]:
    """Create `directory/gleaner.toml` (and the store and catalog); returns (workspace, created).

    An existing workspace is opened, not overwritten, so `init` is safe to repeat in scripts.
    """
    _check_new_settings(catalog_url, addressing_style)
    root = Path(directory).expanduser().resolve()
    config_path = root / CONFIG_NAME
    created = not config_path.exists()
    if created:
        root.mkdir(parents=True, exist_ok=True)
        text = config_text(
            store_url or "store", catalog_url or "sqlite:///catalog.db", endpoint_url=endpoint_url,
            addressing_style=addressing_style,
        )  # fmt: skip
        config_path.write_text(text, encoding="utf-8")
    elif store_url or catalog_url:
        current = load_settings(root)
        if (store_url and store_url != current.store.url) or (catalog_url and catalog_url != current.catalog_url):
            raise GleanerError(f"{config_path} already exists with other settings; edit it or choose another folder")
    workspace = Workspace(load_settings(root))
    _prepare_backends(workspace)
    return workspace, created


def _prepare_backends(workspace: Workspace) -> None:
    """Create the bucket and the catalog tables now, so that mistakes show up at init time."""
    from storage.stores.s3 import S3Store, ensure_bucket

    store = workspace.store
    if isinstance(store, S3Store):
        ensure_bucket(store)
    workspace.catalog  # noqa: B018 - opening migrates the schema
