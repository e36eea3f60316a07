"""Render the reliability suite's figures (build/reliability/figures-*.json, newest run) as the README's table.

`python -m tests.reliability.table` prints it; `--write-readme` replaces the table between the markers
`<!-- reliability:start -->` and `<!-- reliability:end -->` in README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.reliability.ledger import newest_rows

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"


def render(rows: list[dict[str, object]]) -> str:
    lines = [
        "| area | fault | injected | survived | items lost | items doubled | peak memory | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        peak = row.get("peak_rss_mb")
        peak_text = f"{peak:.0f} MiB" if isinstance(peak, int | float) else ""
        lines.append(
            f"| {row['area']} | {row['case']} | {row['faults']} | {row['survived']} | {row['items_lost']} "
            f"| {row['items_doubled']} | {peak_text} | {row.get('note', '')} |"
        )
    return "\n".join(lines)


def readme_rows(text: str) -> list[list[str]]:
    """The table rows now in the README (cells stripped), for the test that checks they show 0 lost."""
    if START not in text:
        return []
    body = text.split(START, 1)[1].split(END, 1)[0]
    table = [line.strip() for line in body.splitlines() if line.strip().startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]  # past the header and rule


def main(argv: list[str]) -> int:
    rows = newest_rows()
    if not rows:
        print("error: no figures in build/reliability: run `pytest tests/reliability` first", file=sys.stderr)
        return 1
    table = render(rows)
    if "--write-readme" not in argv:
        print(table)
        return 0
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"error: README.md has no {START} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
