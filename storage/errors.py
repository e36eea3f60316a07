"""Exceptions that carry a message meant for the user (the CLI prints it as one line)."""

from __future__ import annotations

__all__ = ["GleanerError", "StoreError", "WorkspaceNotFound"]


class GleanerError(Exception):
    """An error caused by input or environment; the CLI shows its message without a traceback."""


class WorkspaceNotFound(GleanerError):
    """No `gleaner.toml` was found through --workspace, GLEANER_WORKSPACE or the folder tree."""


class StoreError(GleanerError):
    """The object store refused or failed an operation."""
