"""Gleaner's base layer: object stores, the catalog, the workspace and the ingest pipeline."""

from storage.catalog import Catalog, ImageFacts, SourceInfo
from storage.errors import GleanerError, StoreError, WorkspaceNotFound
from storage.ingest import IngestItem, Ingestor, IngestSummary, Outcome
from storage.keys import image_key
from storage.stores import ObjectStore, open_store, register_store
from storage.workspace import Workspace, find_workspace, init_workspace, open_workspace

__all__ = [
    "Catalog",
    "GleanerError",
    "ImageFacts",
    "IngestItem",
    "IngestSummary",
    "Ingestor",
    "ObjectStore",
    "Outcome",
    "SourceInfo",
    "StoreError",
    "Workspace",
    "WorkspaceNotFound",
    "find_workspace",
    "image_key",
    "init_workspace",
    "open_store",
    "open_workspace",
    "register_store",
]
