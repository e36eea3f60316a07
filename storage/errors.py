"""Exceptions that carry a message meant for the user (the CLI prints it as one line)."""

from __future__ import annotations

__all__ = ["GleanerError", "StoreError", "StoreFull", "WorkspaceNotFound"]


class GleanerError(Exception):
    """An error caused by input or environment; the CLI shows its message without a traceback."""


class WorkspaceNotFound(GleanerError):
    """No `gleaner.toml` was found through --workspace, GLEANER_WORKSPACE or the folder tree."""


class StoreError(GleanerError):
    """The object store refused or failed an operation."""


class StoreFull(StoreError):
    """The store's disk (or quota) is full. Every later write would fail the same way, so a collector stops at
    the first such failure, after recording what it had stored, instead of failing each remaining item (and
    exiting 0). Raised from an `OSError(ENOSPC)`, so that the CLI prints its one full-disk line."""
