"""Decoding stored image bytes the one way every consumer sees them (storage.images.open)."""

from storage.images.open import ORIENTATION_TAG, flatten_alpha, open_image, orientation, upright, upright_size

__all__ = ["ORIENTATION_TAG", "flatten_alpha", "open_image", "orientation", "upright", "upright_size"]
