"""A job's `[[jobs.sources]]` tables made into the engine's sources, with the options the CLI flags would give.

Every check a collector makes of its flags (selectors, label rules, seed URLs, paths) runs here, before a run
is recorded, so a bad job is one clear error and never a half-run. A target's `--source` URLs become one more
scrape source per label (`target_sources`), with the web manners of the job's first web source.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harvest.engine import FetchOptions, Source
from harvest.jobs.config import JobSource
from harvest.labels import fallback_label
from harvest.scrape.crawler import ScrapeOptions, ScrapeSource, scrape_job
from harvest.scrape.extract import compile_selector
from harvest.scrape.labels import parse_label_rule
from harvest.urls import UrlListSource
from harvest.watch import WatchOptions, WatchSource
from storage.catalog.frontier import job_key
from storage.errors import GleanerError

__all__ = ["FETCH_FLAGS", "WEB_OPTIONS", "PlannedSource", "fetch_options", "plan_source", "target_source"]

FETCH_FLAGS = ("user_agent", "per_host_rate", "per_host_concurrency", "allow_private", "ignore_robots", "item_timeout")
WEB_OPTIONS = ("concurrency", *FETCH_FLAGS)


def fetch_options(options: Mapping[str, Any]) -> FetchOptions:
    """The fetch manners every web collector shares, from its flags (`--user-agent`, `--per-host-rate`, ...)."""
    if (timeout := options.get("item_timeout")) is not None and timeout < 1:
        raise GleanerError(f"`item_timeout` must be at least 1 (seconds), not {timeout}")
    return FetchOptions.from_flags(**{key: options[key] for key in FETCH_FLAGS if key in options})


@dataclass
class PlannedSource:
    """One source of a job, ready to run: the source, its fetch manners, and its frontier job (web sources)."""

    kind: str  # scrape | urls | folder | watch
    name: str  # for people: "scrape https://...", "folder /data/in"
    source: Source
    fetch: FetchOptions | None = None
    frontier: str | None = None  # the frontier job key (scrape, urls): what a resumed run continues
    local: bool = False  # folder and watch: files on the machine of the worker that started the run

    def again(self) -> Source:
        """The source for a later pass, or a joined worker: a URL list is not read again (its rows are queued),
        and the URLs earlier runs did are not counted again as duplicates."""
        if isinstance(self.source, UrlListSource):
            return replace(self.source, retry_failed=True, result=None)
        return self.source


def plan_source(spec: JobSource, *, label: str | None = None) -> PlannedSource:
    """The engine's source for one `[[jobs.sources]]` table; `label` overrides the table's (target sources)."""
    options = dict(spec.options)
    if label is not None:
        options = {key: value for key, value in options.items() if key not in ("label_from", "label_col")}
        options["label"] = label
    if spec.kind == "scrape":
        return _scrape(spec.seeds, options)
    path = spec.path
    assert path is not None
    if spec.kind == "urls":
        return _urls(path, options)
    if spec.kind == "folder":
        return _folder(path, options)
    return _watch(path, options)


def target_source(label: str, urls: list[str], manners: Mapping[str, Any]) -> PlannedSource:
    """A scrape of a target's `--source` URLs, every image labelled with the target's label."""
    options = {key: manners[key] for key in WEB_OPTIONS if key in manners}
    return _scrape(tuple(urls), {**options, "label": label})


def _scrape(seeds: tuple[str, ...], options: dict[str, Any]) -> PlannedSource:
    fetch = fetch_options(options)
    scrape_options = ScrapeOptions(
        seeds=seeds,
        label=options.get("label"),
        label_from=options.get("label_from"),
        select=options.get("select"),
        follow=options.get("follow"),
        depth=options.get("depth"),
        render=bool(options.get("render", False)),
        scroll=int(options.get("scroll", 10)),
        max_images=options.get("max_images"),
        max_pages=options.get("max_pages"),
        concurrency=int(options.get("concurrency", 16)),
        allow_private=fetch.allow_private,
        ignore_robots=not fetch.obey_robots,
        retry_failed=bool(options.get("retry_failed", False)),
        fetch=fetch,
    )
    if (pages := options.get("max_pages")) is not None and pages < 1:
        raise GleanerError(f"`max_pages` must be at least 1, not {pages}")
    for key in ("depth", "max_images"):
        if (value := options.get(key)) is not None and value < 0:
            raise GleanerError(f"`{key}` must be zero or more, not {value}")
    if scrape_options.concurrency < 1:
        raise GleanerError("`concurrency` must be at least 1")
    compile_selector(scrape_options.select, "`select`")
    compile_selector(scrape_options.follow, "`follow`")
    parse_label_rule(scrape_options.label_from, fallback_label(scrape_options.label, "`label`"))
    frontier = scrape_job(scrape_options)  # also checks the seeds are http(s) URLs
    name = "scrape " + " ".join(seeds)
    return PlannedSource("scrape", name, ScrapeSource(scrape_options), fetch=fetch, frontier=frontier)


def _urls(path: Path, options: dict[str, Any]) -> PlannedSource:
    if not path.is_file():
        raise GleanerError(f"{path}: no such file (a `urls` source names a URL list)")
    source = UrlListSource(
        path,
        url_col=options.get("url_col", "url"),
        label_col=options.get("label_col"),
        label=fallback_label(options.get("label"), "`label`"),
        fmt=options.get("format"),
        concurrency=int(options.get("concurrency", 32)),
        retry_failed=bool(options.get("retry_failed", False)),
    )
    frontier = job_key("urls", str(path.resolve()))
    return PlannedSource("urls", f"urls {path}", source, fetch=fetch_options(options), frontier=frontier)


def _folder(path: Path, options: dict[str, Any]) -> PlannedSource:
    from harvest.importer import FolderSource

    if not os.path.lexists(path):
        raise GleanerError(f"{path}: no such file or folder (a `folder` source)")
    source = FolderSource(
        [path],
        label=fallback_label(options.get("label"), "`label`"),
        labels_from_folders=bool(options.get("labels_from_folders", False)),
        skip_catalogued=True,  # run after run, a budgeted job moves on through the folder
    )
    return PlannedSource("folder", f"folder {path}", source, local=True)


def _watch(path: Path, options: dict[str, Any]) -> PlannedSource:
    move_to = options.get("move_to")
    watch = WatchOptions(
        path,
        label=fallback_label(options.get("label"), "`label`"),
        labels_from_folders=bool(options.get("labels_from_folders", False)),
        once=True,  # a job takes what is there and ends; `harvest watch` is the one that keeps watching
        poll=bool(options.get("poll", False)),
        move_to=Path(move_to) if move_to else None,
        delete=bool(options.get("delete", False)),
        settle=float(options.get("settle", 2.0)),
        rescan=float(options.get("rescan_every", 30.0)),
        stuck_after=float(options.get("stuck_after", 600.0)),
    )
    return PlannedSource("watch", f"watch {path}", WatchSource(watch), local=True)
