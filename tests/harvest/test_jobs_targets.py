"""Targets-driven collection (issue 13 item 3): a `targets = true` job over a site offering every label collects
only the labels with open targets, each until its target is met, without fetching the others; a target's
`--source` URLs are scraped for its label; `max_per_label` holds per run, and the next run goes on."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pytest

from harvest.importer import import_paths
from storage.catalog import label_counts
from storage.catalog.targets import list_targets, set_manual_target
from storage.workspace import open_workspace
from tests.harvest.test_import import harvest
from tests.support.jobs import job_config
from tests.support.site import Request, Response, Site

ZOO = ("ant", "bee", "cow")
PER_LABEL = 4


@pytest.fixture
def zoo(fresh_site: Site) -> dict[str, list[str]]:
    """/jobs-zoo/ links one page per label (its name in an h1, PER_LABEL photos); /jobs-zoo-extra/ has three
    more photos and no heading. Returns label -> photo names, and "extra"."""
    names = fresh_site.photo_names
    offered = {label: names[150 + i * PER_LABEL : 150 + (i + 1) * PER_LABEL] for i, label in enumerate(ZOO)}
    offered["extra"] = names[170:173]

    def page(heading: str, photos: list[str], links: str = "") -> Response:
        images = "".join(f'<img src="/img/{html.escape(name)}">' for name in photos)
        return Response.html(f"<html><body>{heading}{links}{images}</body></html>")

    def zoo_page(request: Request) -> Response:
        label = request.path.removeprefix("/jobs-zoo/")
        if not label:
            return page("", [], "".join(f'<a class="cat" href="/jobs-zoo/{name}">{name}</a>' for name in ZOO))
        return page(f"<h1>{html.escape(label)}</h1>", offered.get(label, []))

    fresh_site.route("/jobs-zoo/", zoo_page)
    fresh_site.route("/jobs-zoo-extra/", lambda _request: page("", offered["extra"]))
    return offered


def zoo_job(ws: Path, site: Site, extra: str = "") -> None:
    job_config(
        ws,
        f"""[[jobs]]
name = "zoo"
{extra}
[[jobs.sources]]
scrape = ["{site.url("/jobs-zoo/")}"]
label_from = "css:h1"
follow = "a.cat"
depth = 1
allow_private = true
""",
    )


def run_zoo(ws: Path) -> dict[str, Any]:
    result = harvest("jobs", "run", "zoo", "--json", "-w", ws, cwd=ws.parent)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def set_target(ws: Path, label: str, want: int, sources: list[str] | None = None) -> None:
    with open_workspace(ws) as workspace, workspace.catalog.write() as conn:
        set_manual_target(conn, label, want, sources=sources or [], create=True)


def labelled(ws: Path) -> dict[str, int]:
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        return {label: count for label, count in label_counts(conn).items() if count}


def fetched(site: Site, names: list[str]) -> int:
    return sum(site.hits[f"/img/{name}"] for name in names)


def test_only_the_open_targets_label_is_fetched_and_the_target_closes_when_met(
    ws: Path, fresh_site: Site, zoo: dict[str, list[str]]
) -> None:
    set_target(ws, "bee", 3)
    zoo_job(ws, fresh_site, "targets = true")
    document = run_zoo(ws)
    assert document["added"] == 3 and labelled(ws) == {"bee": 3}
    assert document["targets"] == [{"label": "bee", "want": 3, "collected": 3, "open": False, "status": "met"}]
    assert document["stopped"] == "targets met" and document["status"] == "done"
    assert fetched(fresh_site, zoo["ant"] + zoo["cow"]) == 0  # filtered before fetching: the label was on the page
    assert fetched(fresh_site, zoo["bee"]) == 3
    skipped = document["skipped"]
    assert skipped["total"] >= 1 and set(skipped["by_reason"]) <= {"no_target", "target_met"}, skipped
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        (bee,) = [t for t in list_targets(conn, include_closed=True) if t.label == "bee"]
    assert bee.status == "met" and bee.collected == 3
    again = run_zoo(ws)  # nothing is wanted any more: the run ends before any fetch
    assert again["stopped"] == "no open targets" and again["added"] == 0 and again["status"] == "done"
    table = harvest("jobs", "run", "zoo", "-w", ws, cwd=ws.parent)
    assert table.code == 0 and "no open targets" in table.stderr


def test_a_targets_source_urls_are_scraped_for_its_label_until_it_is_met(
    ws: Path, fresh_site: Site, zoo: dict[str, list[str]]
) -> None:
    set_target(ws, "cow", PER_LABEL + 1, sources=[fresh_site.url("/jobs-zoo-extra/")])
    zoo_job(ws, fresh_site, "targets = true")
    document = run_zoo(ws)
    assert labelled(ws) == {"cow": PER_LABEL + 1} and document["stopped"] == "targets met"
    assert [s["source"] for s in document["sources"]][-1] == "scrape " + fresh_site.url("/jobs-zoo-extra/")
    assert fresh_site.hits["/jobs-zoo-extra/"] == 1
    assert fetched(fresh_site, zoo["cow"]) == PER_LABEL and fetched(fresh_site, zoo["extra"]) == 1
    assert fetched(fresh_site, zoo["ant"] + zoo["bee"]) == 0


def test_max_per_label_holds_per_run_and_the_next_run_takes_what_was_passed_over(
    ws: Path, fresh_site: Site, zoo: dict[str, list[str]]
) -> None:
    zoo_job(ws, fresh_site, "max_per_label = 2")
    first = run_zoo(ws)
    assert labelled(ws) == dict.fromkeys(ZOO, 2) and first["added"] == 6
    assert first["skipped"]["by_reason"] == {"max_per_label": 6}
    assert first["skipped"]["by_label"] == dict.fromkeys(ZOO, 2)
    second = run_zoo(ws)
    assert labelled(ws) == dict.fromkeys(ZOO, 4) and second["added"] == 6 and second["skipped"]["total"] == 0
    assert fetched(fresh_site, [name for label in ZOO for name in zoo[label]]) == 3 * PER_LABEL  # each once


def test_local_files_are_filtered_before_ingest_by_their_folder_label(ws: Path, photo_files: list[Path]) -> None:
    inbox = ws.parent / "inbox"
    for label, files in (("cat", photo_files[:3]), ("dog", photo_files[3:5])):
        (inbox / label).mkdir(parents=True)
        for file in files:
            (inbox / label / file.name).write_bytes(file.read_bytes())
    set_target(ws, "cat", 2)
    job_config(
        ws,
        '[[jobs]]\nname = "zoo"\ntargets = true\n[[jobs.sources]]\nfolder = "../inbox"\nlabels_from_folders = true\n',
    )
    document = run_zoo(ws)
    assert labelled(ws) == {"cat": 2} and document["added"] == 2
    assert document["skipped"]["by_reason"] == {"no_target": 2, "target_met": 1}
    assert document["targets"][0]["open"] is False


def test_a_label_whose_pass_brought_duplicates_gets_another_pass_until_its_target_is_met(
    ws: Path, fresh_site: Site, zoo: dict[str, list[str]], photos_dir: Path
) -> None:
    with open_workspace(ws) as workspace:  # one bee photo is in the catalog already: fetched again, a duplicate
        import_paths(workspace, [photos_dir / zoo["bee"][0]], label="bee", workers=1)
    set_target(ws, "bee", 3)
    zoo_job(ws, fresh_site, "targets = true")
    document = run_zoo(ws)
    assert (document["added"], document["duplicates"]) == (3, 1) and labelled(ws) == {"bee": 4}
    assert document["targets"][0]["collected"] == 3 and document["stopped"] == "targets met"
    assert all(fresh_site.hits[f"/img/{name}"] == 1 for name in zoo["bee"])
    assert fetched(fresh_site, zoo["ant"] + zoo["cow"]) == 0


def test_max_images_ends_the_run_after_that_many_fetches(ws: Path, fresh_site: Site, zoo: dict[str, list[str]]) -> None:
    zoo_job(ws, fresh_site, "max_images = 5")
    document = run_zoo(ws)
    assert document["added"] == 5 and document["stopped"] == "max_images" and document["status"] == "done"
    assert fetched(fresh_site, [name for label in ZOO for name in zoo[label]]) == 5
    assert sum(labelled(ws).values()) == 5
