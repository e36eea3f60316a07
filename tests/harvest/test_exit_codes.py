"""A run that could do nothing it was asked exits non-zero with one line saying why (issue 15 item 5)."""

from __future__ import annotations

import json
from pathlib import Path

from storage.catalog.runs import get_run
from storage.workspace import open_workspace
from tests.harvest.test_import import harvest
from tests.support.site import Site


def no_run_recorded(ws: Path) -> bool:
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        return get_run(conn, 1) is None


def one_error_line(stderr: str, needle: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len([line for line in lines if line.startswith("error:")]) == 1, stderr
    assert needle in stderr, stderr


def test_import_of_a_missing_path_exits_non_zero_and_records_no_run(tmp_path: Path, ws: Path) -> None:
    missing = tmp_path / "nonexistent" / "photos"
    result = harvest("import", missing, "-w", ws, cwd=ws.parent)
    assert result.code != 0
    one_error_line(result.stderr, "no such file or folder")
    as_json = harvest("import", missing, "--json", "-w", ws, cwd=ws.parent)
    assert as_json.code != 0 and "no such file or folder" in json.loads(as_json.stdout)["error"]
    assert no_run_recorded(ws)


def test_import_of_an_empty_folder_says_no_images_found(tmp_path: Path, ws: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / ".hidden.jpg").write_bytes(b"x")
    result = harvest("import", empty, "-w", ws, cwd=ws.parent)
    assert result.code != 0
    one_error_line(result.stderr, "no images found")
    assert no_run_recorded(ws)


def test_scrape_whose_only_seed_is_refused_or_unreachable_exits_non_zero(site: Site, tmp_path: Path, ws: Path) -> None:
    refused = harvest("scrape", site.url("/img/x"), "-w", ws, cwd=ws.parent)  # loopback without --allow-private
    assert refused.code != 0, refused.stdout
    one_error_line(refused.stderr, "ssrf")
    assert "images/s" not in refused.stdout
    rerun = harvest("scrape", site.url("/img/x"), "--json", "-w", ws, cwd=ws.parent)  # the seed is skipped now
    assert rerun.code != 0 and "nothing collected" in json.loads(rerun.stdout)["error"], rerun.stdout
    fresh = tmp_path / "fresh"
    assert harvest("init", fresh, cwd=tmp_path).code == 0
    as_json = harvest("scrape", site.url("/img/x"), "--json", "-w", fresh, cwd=tmp_path)
    document = json.loads(as_json.stdout)
    assert as_json.code != 0 and "ssrf" in document["error"] and document["failed"] == 1, document
    unreachable = harvest("scrape", "http://127.0.0.1:9/", "--allow-private", "-w", ws, cwd=ws.parent)
    assert unreachable.code != 0
    one_error_line(unreachable.stderr, "127.0.0.1:9")


def test_version_and_usage_errors_as_json(tmp_path: Path, ws: Path) -> None:
    """`harvest --version`; a value click refuses is a user error too: with --json, `{"error"}` on stdout."""
    version = harvest("--version", cwd=tmp_path)
    assert version.code == 0 and version.stdout.startswith("harvest ") and version.stdout.split()[1][0].isdigit()
    bad = harvest("import", tmp_path, "--workers", "many", "--json", "-w", ws, cwd=tmp_path)
    assert bad.code == 2, bad
    assert "--workers" in json.loads(bad.stdout)["error"]
    assert "Traceback" not in bad.stderr and bad.stderr.startswith("error:"), bad.stderr
    missing = harvest("scrape", "--json", "-w", ws, cwd=tmp_path)  # no URL
    assert missing.code == 2 and "error" in json.loads(missing.stdout), missing
    plain = harvest("import", tmp_path, "--workers", "many", "-w", ws, cwd=tmp_path)
    assert plain.code == 2 and plain.stdout == "" and "--workers" in plain.stderr  # click's usage text as before
