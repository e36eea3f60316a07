"""The README's reliability table is the suite's own output, and it promises what the suite checks."""

from __future__ import annotations

from tests.reliability.table import README, readme_rows, render


def test_readme_table_shows_no_item_lost() -> None:
    rows = readme_rows(README.read_text(encoding="utf-8"))
    assert rows, "README.md has no reliability table between the markers (python -m tests.reliability.table)"
    areas = {row[0] for row in rows}
    assert {"kill", "servers", "concurrency", "disk", "hostile"} <= areas, areas
    for row in rows:
        assert row[4] == "0" and row[5] == "0", f"README reliability row shows items lost or doubled: {row}"
        assert row[2] == row[3], f"README reliability row shows a fault not survived: {row}"


def test_render_is_the_table_format() -> None:
    row = {
        "area": "kill",
        "case": "x",
        "faults": 3,
        "survived": 3,
        "items_lost": 0,
        "items_doubled": 0,
        "peak_rss_mb": 12.4,
        "note": "",
    }
    assert render([row]).splitlines()[2] == "| kill | x | 3 | 3 | 0 | 0 | 12 MiB |  |"
