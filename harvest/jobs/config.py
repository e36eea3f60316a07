"""Collection jobs as the workspace's `gleaner.toml` declares them (`[[jobs]]` with `[[jobs.sources]]`).

The format is a contract users' scripts depend on: a source table has exactly one of `scrape = [URL, ...]`,
`urls = "FILE"`, `folder = "DIR"` or `watch = "DIR"`, plus the options of that collector's CLI named like its
flags with `-` written `_`. Relative paths are relative to the workspace. Everything is checked when the file is
read, so a typo is one clear error before any run starts, never a half-run job.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storage.errors import GleanerError
from storage.settings import CONFIG_NAME

__all__ = [
    "JOB_KEYS",
    "SOURCE_KINDS",
    "SOURCE_OPTIONS",
    "Job",
    "JobSource",
    "find_job",
    "load_jobs",
    "parse_jobs",
]

SOURCE_KINDS: Final = ("scrape", "urls", "folder", "watch")

_WEB: Final[dict[str, type | tuple[type, ...]]] = {
    "concurrency": int,
    "allow_private": bool,
    "ignore_robots": bool,
    "per_host_rate": (int, float),
    "per_host_concurrency": int,
    "item_timeout": (int, float),
    "user_agent": str,
    "retry_failed": bool,
}

# Each collector's options, named like its CLI flags with "-" written "_", and the TOML type each takes.
SOURCE_OPTIONS: Final[dict[str, dict[str, type | tuple[type, ...]]]] = {
    "scrape": {
        "label": str,
        "label_from": str,
        "select": str,
        "follow": str,
        "depth": int,
        "render": bool,
        "scroll": int,
        "max_images": int,
        "max_pages": int,
        **_WEB,
    },
    "urls": {"label": str, "url_col": str, "label_col": str, "format": str, **_WEB},
    "folder": {"label": str, "labels_from_folders": bool},
    "watch": {
        "label": str,
        "labels_from_folders": bool,
        "poll": bool,
        "move_to": str,
        "delete": bool,
        "settle": (int, float),
        "rescan_every": (int, float),
        "stuck_after": (int, float),
    },
}

_PATH_OPTIONS: Final = frozenset({"move_to"})  # options that name a path (relative to the workspace)

JOB_KEYS: Final[dict[str, type | tuple[type, ...]]] = {
    "name": str,
    "schedule": str,
    "timezone": str,
    "targets": bool,
    "max_images": int,
    "max_per_label": int,
    "sources": list,
}


@dataclass(frozen=True)
class JobSource:
    """One `[[jobs.sources]]` table: the collector (`kind`), where it collects from, and its options.

    `where` is the seed URLs for `scrape`, and an absolute path (resolved against the workspace) otherwise."""

    kind: str
    where: tuple[str, ...] | Path
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def seeds(self) -> tuple[str, ...]:
        """The seed URLs of a scrape source (empty for the others)."""
        return self.where if isinstance(self.where, tuple) else ()

    @property
    def path(self) -> Path | None:
        """The file or folder of a urls, folder or watch source (None for scrape)."""
        return self.where if isinstance(self.where, Path) else None

    def to_json(self) -> dict[str, Any]:
        where: Any = list(self.where) if isinstance(self.where, tuple) else str(self.where)
        return {self.kind: where, **dict(self.options)}


@dataclass(frozen=True)
class Job:
    """One `[[jobs]]` table. `schedule` is a cron expression (croniter) read in `timezone` (UTC by default)."""

    name: str
    schedule: str | None
    sources: tuple[JobSource, ...]
    timezone: str = "UTC"
    targets: bool = False
    max_images: int | None = None
    max_per_label: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "targets": self.targets,
            "max_images": self.max_images,
            "max_per_label": self.max_per_label,
            "sources": [source.to_json() for source in self.sources],
        }


def load_jobs(root: Path) -> list[Job]:
    """The jobs of the workspace at `root` (none when its gleaner.toml declares none)."""
    path = root / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GleanerError(f"{path}: invalid TOML: {exc}") from exc
    return parse_jobs(data.get("jobs", []), root=root, where=str(path))


def find_job(jobs: Sequence[Job], name: str) -> Job:
    """The job called `name`; the error lists the jobs there are."""
    for job in jobs:
        if job.name == name:
            return job
    known = ", ".join(job.name for job in jobs) or "none: add a [[jobs]] table to gleaner.toml"
    raise GleanerError(f"no job named {name!r} (jobs: {known})")


def parse_jobs(tables: Any, *, root: Path, where: str = CONFIG_NAME) -> list[Job]:
    """Check and convert the `jobs` array of tables; every error names the job and the key."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise GleanerError(f"{where}: `jobs` must be an array of tables ([[jobs]])")
    jobs: list[Job] = []
    for index, table in enumerate(tables, start=1):
        job = _parse_job(table, root, f"{where}: [[jobs]] #{index}")
        if any(other.name == job.name for other in jobs):
            raise GleanerError(f"{where}: two jobs are named {job.name!r}; job names must be unique")
        jobs.append(job)
    return jobs


def _parse_job(table: dict[str, Any], root: Path, where: str) -> Job:
    name = table.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{where} ({name!r})"
    _check_keys(table, JOB_KEYS, where, "job")
    if not isinstance(name, str) or not name.strip():
        raise GleanerError(f"{where}: every job needs a `name`")
    if name != name.strip() or any(c.isspace() or c == "/" for c in name):
        raise GleanerError(f"{where}: a job name has no spaces or slashes (it names runs, files and pods)")
    schedule = table.get("schedule")
    if schedule is not None:
        _check_schedule(schedule, where)
    timezone = table.get("timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise GleanerError(f"{where}: unknown timezone {timezone!r} (an IANA name such as 'Europe/Paris')") from None
    for key in ("max_images", "max_per_label"):
        value = table.get(key)
        if value is not None and value < 1:
            raise GleanerError(f"{where}: `{key}` must be at least 1, not {value}")
    raw_sources = table.get("sources", [])
    if not raw_sources:
        raise GleanerError(f"{where}: a job needs at least one source ([[jobs.sources]])")
    if not all(isinstance(s, dict) for s in raw_sources):
        raise GleanerError(f"{where}: `sources` must be an array of tables ([[jobs.sources]])")
    sources = tuple(
        _parse_source(source, root, f"{where}, source #{number}") for number, source in enumerate(raw_sources, 1)
    )
    return Job(
        name=name,
        schedule=schedule,
        sources=sources,
        timezone=timezone,
        targets=bool(table.get("targets", False)),
        max_images=table.get("max_images"),
        max_per_label=table.get("max_per_label"),
    )


def _parse_source(table: dict[str, Any], root: Path, where: str) -> JobSource:
    kinds = [kind for kind in SOURCE_KINDS if kind in table]
    if len(kinds) != 1:
        found = f"it has {', '.join(kinds)}" if kinds else "it has none"
        raise GleanerError(f"{where}: a source has exactly one of {', '.join(SOURCE_KINDS)} ({found})")
    kind = kinds[0]
    options = {key: value for key, value in table.items() if key != kind}
    _check_keys(options, SOURCE_OPTIONS[kind], where, f"{kind} source")
    value = table[kind]
    where_from: tuple[str, ...] | Path
    if kind == "scrape":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise GleanerError(f'{where}: `scrape` is a list of seed URLs, e.g. scrape = ["https://..."]')
        where_from = tuple(v.strip() for v in value)
    else:
        if not isinstance(value, str) or not value.strip():
            raise GleanerError(f'{where}: `{kind}` is a path (relative to the workspace), e.g. {kind} = "inbox"')
        where_from = _resolve(root, value)
    for key in _PATH_OPTIONS & set(options):
        options[key] = str(_resolve(root, options[key]))
    if "label" in options and ("label_from" in options or "label_col" in options or "labels_from_folders" in options):
        other = next(k for k in ("label_from", "label_col", "labels_from_folders") if k in options)
        raise GleanerError(f"{where}: `label` and `{other}` both say where labels come from; keep one")
    return JobSource(kind=kind, where=where_from, options=options)


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root / path).resolve()


def _check_keys(table: Mapping[str, Any], known: Mapping[str, type | tuple[type, ...]], where: str, what: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise GleanerError(f"{where}: unknown key(s) for a {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    for key, value in table.items():
        expected = known[key]
        types = expected if isinstance(expected, tuple) else (expected,)
        wrong_bool = isinstance(value, bool) and bool not in types  # TOML true is not an int here
        if wrong_bool or not isinstance(value, types):
            names = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise GleanerError(f"{where}: `{key}` must be {names}, not {value!r}")


_TYPE_NAMES: Final = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list"}


def _check_schedule(schedule: Any, where: str) -> None:
    from croniter import croniter

    if not isinstance(schedule, str) or not croniter.is_valid(schedule):
        raise GleanerError(f'{where}: `schedule` {schedule!r} is not a cron expression (e.g. "0 3 * * *")')
