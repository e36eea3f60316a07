"""`[[jobs]]` in gleaner.toml: a bad job is one clear line (exit 1, no traceback, no run recorded), and
`harvest jobs list --json` is the contract's shape."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from harvest.jobs.config import load_jobs, parse_jobs
from storage.catalog import Catalog
from storage.catalog.runs import get_run
from storage.errors import GleanerError
from tests.harvest.test_import import harvest
from tests.support.jobs import job_config

FOLDER_JOB = """
[[jobs]]
name = "inbox"
schedule = "0 3 * * *"
timezone = "Europe/Paris"

[[jobs.sources]]
folder = "../inbox"
labels_from_folders = true
"""


def one_error_line(stderr: str, needle: str) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert needle in errors[0], stderr


def no_run_recorded(ws: Path) -> bool:
    with Catalog(f"sqlite:///{ws / 'catalog.db'}") as catalog, catalog.read() as conn:  # gleaner.toml may be broken
        return get_run(conn, 1) is None


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        (
            '[[jobs]]\nname = "a"\n[[jobs.sources]]\nfolder = "x"\nlable = "cat"\n',
            "unknown key(s) for a folder source: lable",
        ),
        ('[[jobs]]\nname = "a"\n[[jobs.sources]]\nfolder = "x"\nscrape = ["http://x/"]\n', "exactly one of"),
        ('[[jobs]]\nname = "a"\nschedule = "every day"\n[[jobs.sources]]\nfolder = "x"\n', "not a cron expression"),
        (
            '[[jobs]]\nname = "a"\nmax_images = true\n[[jobs.sources]]\nfolder = "x"\n',
            "`max_images` must be an integer",
        ),
        ('[[jobs]]\nname = "a"\n', "at least one source"),
        ('[[jobs]]\nname = "a"\ntimezone = "Mars/Olympus"\n[[jobs.sources]]\nfolder = "x"\n', "unknown timezone"),
        ("[[jobs]\nname = 1\n", "invalid TOML"),
    ],
)
def test_a_bad_job_table_is_one_line_for_list_and_run(ws: Path, toml: str, needle: str) -> None:
    job_config(ws, toml)
    result = harvest("jobs", "run", "a", "-w", ws, cwd=ws.parent)
    assert result.code == 1, result.stdout
    one_error_line(result.stderr, needle)
    as_json = harvest("jobs", "list", "--json", "-w", ws, cwd=ws.parent)
    assert as_json.code == 1 and needle in json.loads(as_json.stdout)["error"], as_json.stdout
    assert "Traceback" not in as_json.stderr
    assert no_run_recorded(ws)


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ('scrape = ["http://127.0.0.1:9/"]\nselect = "img[["', "invalid CSS selector"),
        ('scrape = ["http://127.0.0.1:9/"]\nlabel_from = "xpath://h1"', "label"),
        ('scrape = ["ftp://127.0.0.1/"]', "not an http(s) URL"),
        ('urls = "missing.csv"', "no such file"),
        ('folder = "missing"', "no such file or folder"),
        ('watch = "missing"', "not a folder"),
        ('folder = "."\nlabel = "   "', "the label is empty"),
        ('scrape = ["http://127.0.0.1:9/"]\nitem_timeout = 0', "`item_timeout` must be at least 1"),
    ],
)
def test_a_source_the_collector_would_refuse_is_refused_before_any_run(ws: Path, source: str, needle: str) -> None:
    job_config(ws, f'[[jobs]]\nname = "bad"\n[[jobs.sources]]\n{source}\n')
    result = harvest("jobs", "run", "bad", "-w", ws, cwd=ws.parent)
    assert result.code == 1, result.stdout
    one_error_line(result.stderr, needle)
    assert no_run_recorded(ws)


def test_an_unknown_job_name_lists_the_jobs_there_are(ws: Path, tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    job_config(ws, FOLDER_JOB)
    result = harvest("jobs", "run", "inbx", "-w", ws, cwd=ws.parent)
    assert result.code == 1
    one_error_line(result.stderr, "no job named 'inbx' (jobs: inbox)")
    assert no_run_recorded(ws)


def test_jobs_list_json_has_the_contract_shape_and_next_run_in_the_jobs_timezone(ws: Path, tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    job_config(ws, FOLDER_JOB)
    result = harvest("jobs", "list", "--json", "-w", ws, cwd=ws.parent)
    assert result.code == 0, result.stderr
    (entry,) = json.loads(result.stdout)["jobs"]
    assert set(entry) >= {"name", "schedule", "targets", "sources", "next_run", "last_run"}
    assert entry["name"] == "inbox" and entry["schedule"] == "0 3 * * *" and entry["targets"] is False
    assert entry["sources"] == [{"folder": str((tmp_path / "inbox").resolve()), "labels_from_folders": True}]
    assert entry["last_run"] is None
    never_run = datetime.fromisoformat(entry["next_run"])  # due now: the scheduler runs it at once
    assert never_run.utcoffset() is not None
    assert abs((datetime.now(ZoneInfo("UTC")) - never_run).total_seconds()) < 60
    # the job's slot in its timezone, once it has run: tests/harvest/test_jobs_list_next_run.py
    table = harvest("jobs", "list", "-w", ws, cwd=ws.parent)
    assert table.code == 0 and "inbox" in table.stdout and "never" in table.stdout


def test_no_jobs_is_an_empty_list_not_an_error(ws: Path) -> None:
    result = harvest("jobs", "list", "--json", "-w", ws, cwd=ws.parent)
    assert result.code == 0 and json.loads(result.stdout) == {"jobs": []}


def test_relative_paths_are_the_workspaces_and_options_keep_their_flag_names(tmp_path: Path) -> None:
    (tmp_path / "gleaner.toml").write_text(
        '[[jobs]]\nname = "w"\n[[jobs.sources]]\nwatch = "drop"\nmove_to = "done"\nsettle = 0.5\n'
        '[[jobs.sources]]\nurls = "lists/a.csv"\nlabel_col = "class"\nper_host_rate = 2\n',
        encoding="utf-8",
    )
    (job,) = load_jobs(tmp_path)
    watch, urls = job.sources
    assert watch.path == (tmp_path / "drop").resolve() and watch.options["move_to"] == str(
        (tmp_path / "done").resolve()
    )
    assert urls.path == (tmp_path / "lists" / "a.csv").resolve() and urls.options == {
        "label_col": "class",
        "per_host_rate": 2,
    }


def test_two_places_for_labels_and_duplicate_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(GleanerError, match="`label` and `label_from` both say"):
        parse_jobs(
            [{"name": "a", "sources": [{"scrape": ["http://x/"], "label": "a", "label_from": "alt"}]}], root=tmp_path
        )
    table = {"name": "a", "sources": [{"folder": "x"}]}
    with pytest.raises(GleanerError, match="two jobs are named 'a'"):
        parse_jobs([table, table], root=tmp_path)
