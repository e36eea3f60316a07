"""What a training run writes to the catalog: its status, per-image predictions, and the collection targets.

The feedback to collection goes through the catalog's `targets` table (harvest reads it; no imports across
packages), written only through storage.catalog.targets. A run replaces the open targets that earlier runs made for
the labels it measured; targets a person set by hand stay. The catalog owns the queries; this module names what
training uses of them.
"""

from __future__ import annotations

from storage.catalog.images import image_modes, image_sides
from storage.catalog.predictions import LOW_CONFIDENCE, write_predictions
from storage.catalog.runs import get_run, mark_run
from storage.catalog.targets import replace_run_targets

__all__ = [
    "LOW_CONFIDENCE",
    "get_run",
    "image_modes",
    "image_sides",
    "mark_run",
    "replace_run_targets",
    "write_predictions",
]
