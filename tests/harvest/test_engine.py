"""The collection engine: the sources registry, the run record whatever happens, the shared fetch options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harvest.engine import SOURCES, Engine, FetchOptions, Run, Source, frontier_state, source_factory
from harvest.fetch.policy import DEFAULT_USER_AGENT
from storage.catalog.runs import get_run
from storage.workspace import Workspace, init_workspace, open_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Any:
    init_workspace(tmp_path / "ws")[0].close()
    with open_workspace(tmp_path / "ws") as opened:
        yield opened


def _run_row(workspace: Workspace, run_id: int) -> dict[str, Any]:
    with workspace.catalog.read() as conn:
        row = get_run(conn, run_id)
    assert row is not None
    return row


def test_every_registered_source_is_a_source(tmp_path: Path) -> None:
    assert set(SOURCES) == {"folder", "urls", "scrape", "watch"}
    from harvest.scrape.crawler import ScrapeOptions
    from harvest.watch import WatchOptions

    made = {
        "folder": source_factory("folder")([tmp_path]),
        "urls": source_factory("urls")(tmp_path / "list.csv"),
        "scrape": source_factory("scrape")(ScrapeOptions(seeds=("http://example.org/",))),
        "watch": source_factory("watch")(WatchOptions(tmp_path)),
    }
    for name, source in made.items():
        assert isinstance(source, Source), name
        assert isinstance(source.config(), dict)
    assert {s.kind for s in made.values()} == {"import", "urls", "scrape", "watch"}
    with pytest.raises(KeyError, match="known: folder, scrape, urls, watch"):
        source_factory("ftp")


class _Boom:
    kind = "import"

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def config(self) -> dict[str, Any]:
        return {"what": "test"}

    def collect(self, engine: Engine, run: Run) -> None:
        run.summary.added += 2
        run.report["extra"] = 1
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize(
    ("error", "status"), [(None, "done"), (RuntimeError("bug"), "failed"), (KeyboardInterrupt(), "interrupted")]
)
def test_the_run_record_is_finished_whatever_happens(workspace: Workspace, error: Any, status: str) -> None:
    engine = Engine(workspace)
    runs: list[Run] = []

    class Recording(_Boom):
        def collect(self, engine: Engine, run: Run) -> None:
            runs.append(run)
            super().collect(engine, run)

    if error is None:
        engine.run(Recording(None))
    else:
        with pytest.raises(type(error)):
            engine.run(Recording(error))
    row = _run_row(workspace, runs[0].id)
    assert (row["kind"], row["status"], row["config"]) == ("import", status, {"what": "test"})
    assert row["summary"]["added"] == 2 and row["summary"]["extra"] == 1
    assert row["finished_at"] is not None


def test_fetch_options_make_the_policy_and_error_kinds_their_state() -> None:
    policy = FetchOptions(user_agent="Me/1", per_host_rate=2.5, per_host_concurrency=3, allow_private=True).policy()
    assert (policy.user_agent, policy.per_host_rate, policy.per_host_concurrency) == ("Me/1", 2.5, 3)
    assert policy.allow_private and policy.obey_robots
    assert FetchOptions(obey_robots=False).policy().user_agent == DEFAULT_USER_AGENT
    assert [frontier_state(k) for k in ("timeout", "http_5xx", "crash", "robots", "http_4xx", None)] == [
        "failed", "failed", "failed", "skipped", "skipped", "skipped"
    ]  # fmt: skip
