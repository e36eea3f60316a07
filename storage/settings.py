"""One typed settings object. Precedence: defaults < gleaner.toml < environment < command line."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from storage.errors import GleanerError
from storage.hashes.compare import DEFAULT_THRESHOLD

__all__ = ["CONFIG_NAME", "IngestSettings", "Settings", "StoreSettings", "load_settings"]

CONFIG_NAME = "gleaner.toml"


@dataclass(frozen=True)
class StoreSettings:
    url: str = "store"
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "auto"
    max_pool_connections: int = 32

    def backend_options(self) -> dict[str, Any]:
        """Options passed to the store factory (only S3 uses them)."""
        if not self.url.startswith("s3://"):
            return {}
        options: dict[str, Any] = {
            "addressing_style": self.addressing_style,
            "max_pool_connections": self.max_pool_connections,
        }
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.region:
            options["region"] = self.region
        return options


@dataclass(frozen=True)
class IngestSettings:
    min_side: int = 8
    max_pixels: int = 178_956_970  # Pillow's own bomb limit (2x MAX_IMAGE_PIXELS)
    max_bytes: int = 256 * 1024 * 1024
    workers: int = 0  # 0: one process per core
    near_duplicates: bool = True  # flag near-duplicates of catalogued images at ingest
    near_duplicate_threshold: int = DEFAULT_THRESHOLD  # pHash + dHash bits


@dataclass(frozen=True)
class Settings:
    root: Path
    store: StoreSettings = field(default_factory=StoreSettings)
    catalog_url: str = "sqlite:///catalog.db"
    ingest: IngestSettings = field(default_factory=IngestSettings)

    @property
    def store_url(self) -> str:
        """The store URL with a relative local path resolved against the workspace."""
        url = self.store.url
        if "://" in url or Path(url).is_absolute():
            return url
        return str(self.root / url)

    @property
    def resolved_catalog_url(self) -> str:
        """The catalog URL with a relative SQLite path resolved against the workspace."""
        prefix = "sqlite:///"
        url = self.catalog_url
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
            return prefix + str(self.root / url[len(prefix) :])
        return url


_SECTIONS = ("store", "catalog", "ingest")
_ENV = {
    "GLEANER_STORE": ("store", "url"),
    "GLEANER_CATALOG": ("catalog", "url"),
    "AWS_ENDPOINT_URL_S3": ("store", "endpoint_url"),
    "GLEANER_S3_ADDRESSING_STYLE": ("store", "addressing_style"),
    "GLEANER_MIN_SIDE": ("ingest", "min_side"),
    "GLEANER_WORKERS": ("ingest", "workers"),
}


_READ_ELSEWHERE = ("jobs",)  # [[jobs]]: collection jobs, read by harvest.jobs.config


def load_settings(root: Path, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """Read `root/gleaner.toml`, apply environment variables, then explicit overrides."""
    path = root / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GleanerError(f"{path}: invalid TOML: {exc}") from exc
    unknown = set(data) - set(_SECTIONS) - set(_READ_ELSEWHERE)
    if unknown:
        raise GleanerError(f"{path}: unknown section(s): {', '.join(sorted(unknown))} (known: {', '.join(_SECTIONS)})")
    layers: dict[str, dict[str, Any]] = {}
    for name in _SECTIONS:
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise GleanerError(f"{path}: [{name}] must be a table of settings, not {section!r}")
        layers[name] = dict(section)
    stray = set(layers["catalog"]) - {"url"}
    if stray:
        raise GleanerError(f"{path}: unknown key(s) in [catalog]: {', '.join(sorted(stray))} (known: url)")
    for var, (section, key) in _ENV.items():
        value = os.environ.get(var)
        if value:
            layers[section][key] = value
    for section, values in (overrides or {}).items():
        layers.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    store = _build(StoreSettings, layers["store"], "store", path)
    ingest = _build(IngestSettings, layers["ingest"], "ingest", path)
    catalog_url = str(layers["catalog"].get("url", Settings.catalog_url))
    return Settings(root=root, store=store, catalog_url=catalog_url, ingest=ingest)


def _build(cls: type, values: dict[str, Any], section: str, path: Path) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise GleanerError(f"{path}: unknown key(s) in [{section}]: {', '.join(sorted(unknown))}")
    result = cls()
    for name, value in values.items():
        default = getattr(result, name)
        if isinstance(default, int) and not isinstance(default, bool):
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise GleanerError(f"{path}: [{section}] {name} must be a whole number, not {value!r}") from None
        result = replace(result, **{name: value})
    return result
