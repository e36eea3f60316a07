"""Decoding stored image bytes the one way every consumer sees them (storage.images.open)."""

from storage.images.open import (
    DEFAULT_MAX_PIXELS,
    ORIENTATION_TAG,
    DecodeBudgetExceeded,
    check_budget,
    flatten_alpha,
    open_image,
    orientation,
    upright,
    upright_size,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ORIENTATION_TAG",
    "DecodeBudgetExceeded",
    "check_budget",
    "flatten_alpha",
    "open_image",
    "orientation",
    "upright",
    "upright_size",
]
