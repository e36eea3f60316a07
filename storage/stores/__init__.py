"""Object stores chosen by URL scheme through a registry (like scrapy's STORE_SCHEMES)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from storage.errors import GleanerError
from storage.stores.base import ObjectStore

__all__ = ["ObjectStore", "open_store", "register_store", "store_schemes"]

StoreFactory = Callable[[str, dict[str, Any]], ObjectStore]
_REGISTRY: dict[str, StoreFactory] = {}


def register_store(*schemes: str) -> Callable[[StoreFactory], StoreFactory]:
    """Register a factory `(url, options) -> ObjectStore` for one or more URL schemes."""

    def decorate(factory: StoreFactory) -> StoreFactory:
        for scheme in schemes:
            _REGISTRY[scheme] = factory
        return factory

    return decorate


def store_schemes() -> list[str]:
    return sorted(_REGISTRY)


def open_store(url: str, options: dict[str, Any] | None = None) -> ObjectStore:
    """Open the store a URL names: a plain path or file:// is a local folder, s3:// is S3."""
    _load_builtin_backends()
    scheme = urlparse(url).scheme.lower()
    if len(scheme) <= 1 or Path(url).is_absolute():  # plain paths (and Windows drive letters)
        scheme = "file"
    factory = _REGISTRY.get(scheme)
    if factory is None:
        raise GleanerError(f"unknown store URL scheme {scheme!r} in {url!r}; known: {', '.join(store_schemes())}")
    return factory(url, dict(options or {}))


def _load_builtin_backends() -> None:
    # Imported lazily so that `boto3` is only loaded when an S3 store is used.
    from storage.stores import local, s3  # noqa: F401
