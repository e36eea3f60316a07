"""Option values no run can use are refused with one line, before anything is written (issue 15, items 6 and 7)."""

from __future__ import annotations

from pathlib import Path

from tests.harvest.test_exit_codes import one_error_line
from tests.harvest.test_import import harvest


def test_init_refuses_a_catalog_gleaner_does_not_run_on(tmp_path: Path) -> None:
    result = harvest("init", tmp_path / "ws", "--catalog", "mysql://x", cwd=tmp_path)
    assert result.code != 0
    one_error_line(result.stderr, "SQLite")
    assert not (tmp_path / "ws" / "gleaner.toml").exists()  # nothing left half made


def test_init_refuses_an_unknown_addressing_style(tmp_path: Path) -> None:
    result = harvest("init", tmp_path / "ws", "--store", "s3://b", "--addressing-style", "weird", cwd=tmp_path)
    assert result.code != 0
    one_error_line(result.stderr, "auto, path, virtual")
    assert not (tmp_path / "ws" / "gleaner.toml").exists()


def test_import_refuses_a_negative_worker_count(tmp_path: Path, ws: Path) -> None:
    (tmp_path / "pics").mkdir()
    result = harvest("import", tmp_path / "pics", "--workers", "-2", "-w", ws, cwd=ws.parent)
    assert result.code == 2
    assert "--workers" in result.stderr and "Traceback" not in result.stderr
