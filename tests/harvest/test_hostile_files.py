"""Hostile local files (issue 16): a path that is checked to be a regular file and then opened must not be
swapped for something that hangs the open (a FIFO) — the open itself decides, on its descriptor; a URL list
whose rows break their parser costs one rejected row each, and a list that is not what its name says one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harvest.urllists import read_url_list
from storage.errors import GleanerError
from storage.imaging import Rejected
from storage.ingest import read_file
from tests.harvest.test_import import assert_summary, harvest, ok_json
from tests.harvest.test_urls import cli_urls
from tests.hostile import hostile_url_lists, make_fifo, swapping_link, valid_png
from tests.support.site import Site

pytestmark = pytest.mark.timeout(180)  # before the fix these hung for ever in fifo_open


def test_a_fifo_and_a_link_to_one_are_refused(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "pipe.jpg")
    link = tmp_path / "link.jpg"
    os.symlink(fifo, link)
    for path in (fifo, link):
        with pytest.raises(Rejected, match="not a regular file"):
            read_file(str(path), 1 << 20)


def test_a_link_swapped_to_a_fifo_never_hangs_the_read(tmp_path: Path) -> None:
    """Between the regular-file check and the open, another process points the link at a FIFO."""
    image = tmp_path / "real.png"
    image.write_bytes(valid_png())
    outcomes = {"read": 0, "refused": 0}
    with swapping_link(tmp_path / "swapped.png", image) as link:
        for _ in range(3000):
            try:
                assert read_file(str(link), 1 << 20) == image.read_bytes()
                outcomes["read"] += 1
            except Rejected as exc:
                assert "not a regular file" in str(exc) or "unreadable" in str(exc), exc
                outcomes["refused"] += 1
    assert outcomes["read"] > 0 and outcomes["refused"] > 0, outcomes  # both sides of the swap were seen


def test_import_of_links_swapped_to_a_fifo_finishes(tmp_path: Path, ws: Path) -> None:
    """`harvest import` of a folder of links to a path that keeps turning into a FIFO: every item ends, as an
    image or as one rejected item, and the run completes (before: both workers blocked in fifo_open)."""
    image = tmp_path / "real.png"
    image.write_bytes(valid_png())
    folder = tmp_path / "in"
    folder.mkdir()
    make_fifo(folder / "plain-fifo.jpg")
    with swapping_link(tmp_path / "swapped.png", image) as target:
        for n in range(200):
            os.symlink(target, folder / f"img-{n:03}.png")
        document = ok_json(harvest("import", folder, "--json", "--workers", "2", cwd=ws))
    assert document["added"] <= 1 and document["failed"] == 0, document
    assert document["added"] + document["duplicates"] + document["rejected"] == 201, document
    reasons = {p["item"]: p["reason"] for p in document["problems"]}
    assert "not a regular file" in reasons[str(folder / "plain-fifo.jpg")], reasons
    assert all("not a regular file" in r or "unreadable" in r for r in reasons.values()), reasons
    assert_summary(document)


# -- URL lists (issue 16, item 16): a bad row is one rejected row, a bad file one line ------------------------

EXPECTED_LIST_PROBLEMS = {
    "huge-field.csv": "line over 16,777,216 characters",
    "unterminated.csv": "unterminated quote",
    "deep.jsonl": "nested too deeply",
    "long-number.jsonl": "invalid JSON",
    "long-line.txt": "line over",
    "truncated.csv.gz": "ends early (truncated)",
}


@pytest.fixture(scope="module")
def hostile_lists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    good = [f"http://127.0.0.1:9/img/{n}.jpg" for n in range(3)]
    return hostile_url_lists(tmp_path_factory.mktemp("lists"), good)


@pytest.mark.parametrize("name", sorted(EXPECTED_LIST_PROBLEMS))
def test_a_hostile_row_is_one_rejected_row(hostile_lists: dict[str, Path], name: str) -> None:
    rows = list(read_url_list(hostile_lists[name]))
    problems = [row for row in rows if row.problem]
    assert len(problems) == 1, problems
    assert EXPECTED_LIST_PROBLEMS[name] in (problems[0].problem or ""), problems[0]
    assert problems[0].url is None
    urls = [row.url for row in rows if not row.problem]
    good = [f"http://127.0.0.1:9/img/{n}.jpg" for n in range(3)]
    if name == "unterminated.csv":  # the quote swallows the last good row and everything after it
        assert urls == good[:2]
        assert "lines 4-5" in (problems[0].problem or ""), problems[0]
    else:
        assert urls[: len(good)] == good, urls
    if name == "truncated.csv.gz":
        assert 3 < len(urls) < 2003  # the rows before the cut are kept


def test_text_after_a_closing_quote_is_read_leniently_as_before(hostile_lists: dict[str, Path]) -> None:
    """Strict parsing finds unclosed quotes; a caption like `"Best" photo` still loads as `Best photo`."""
    rows = list(read_url_list(hostile_lists["bad-quote.csv"]))
    assert (rows[0].url, rows[0].label) == ("http://127.0.0.1:9/img/0.jpg", "Best photo")
    assert [row.problem for row in rows] == [None, None, None]


def test_a_gz_that_is_not_gzip_is_one_error(hostile_lists: dict[str, Path]) -> None:
    with pytest.raises(GleanerError, match="not a gzip file"):
        list(read_url_list(hostile_lists["not-gzip.csv.gz"]))


def test_harvest_urls_goes_on_past_hostile_rows(site: Site, ws: Path, tmp_path: Path) -> None:
    """Through the console script: the good URLs are fetched, each hostile row is one problem, exit 0; a list
    that is not what its name says is one `error:` line (before: a traceback, or click's bare "Aborted.")."""
    good = [site.url(f"/img/{name}") for name in site.photo_names[:3]]
    lists = hostile_url_lists(tmp_path / "lists", good)
    for name in ("huge-field.csv", "deep.jsonl", "truncated.csv.gz"):
        document = cli_urls(ws, lists[name])
        assert document["added"] + document["duplicates"] == 3, (name, document)
        problems = [p["reason"] for p in document["problems"] if p["item"].startswith(name)]
        assert len(problems) == 1 and EXPECTED_LIST_PROBLEMS[name] in problems[0], (name, document["problems"])
    refused = harvest("urls", lists["not-gzip.csv.gz"], "--json", "-w", ws, cwd=ws.parent)
    assert refused.code != 0 and "Traceback" not in refused.stderr and "Aborted" not in refused.stderr
    assert "not a gzip file" in refused.json()["error"], refused
    assert [line for line in refused.stderr.splitlines() if line.startswith("error")] == [
        f"error: {refused.json()['error']}"
    ]


def test_a_url_list_that_is_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    with pytest.raises(GleanerError, match="not a regular file"):
        read_url_list(make_fifo(tmp_path / "list.csv"))
