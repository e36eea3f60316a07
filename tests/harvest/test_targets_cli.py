"""`harvest targets` through the real command: images any collector brings count against the open target of their
label, a met target closes, a run's target names its folder, and a label the catalog does not know is refused
with one line (issue 13 item 2; issue 15 items 7 and 14)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.catalog import finish_run, start_run
from storage.catalog.schema import targets as targets_table
from storage.catalog.targets import replace_run_targets
from storage.workspace import open_workspace
from tests.harvest.test_exit_codes import one_error_line
from tests.harvest.test_import import harvest, ok_json
from tests.support.site import Site

TARGET_KEYS = {"label", "want", "collected", "reason", "status", "origin"}


class RunTarget:
    def __init__(self, label: str, want: int, reason: str) -> None:
        self.label, self.want, self.reason = label, want, reason


def targets(ws: Path, *args: str) -> list[dict[str, Any]]:
    document = ok_json(harvest("targets", *args, "--json", "-w", ws, cwd=ws.parent))
    assert set(document) == {"targets"}
    listed: list[dict[str, Any]] = document["targets"]
    for target in listed:
        assert set(target) >= TARGET_KEYS, target
        assert all(isinstance(target[k], int) for k in ("want", "collected"))
        assert all(isinstance(target[k], str) for k in ("label", "reason", "status", "origin"))
    return listed


def by_label(listed: list[dict[str, Any]]) -> dict[str, tuple[int, int, str]]:
    return {t["label"]: (t["want"], t["collected"], t["status"]) for t in listed}


def copy_photos(photos: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copyfile(photo, folder / photo.name)
    return folder


@pytest.fixture
def trained(tmp_path: Path, ws: Path, photo_files: list[Path]) -> Path:
    """A workspace with 10 coats and 10 shirts and the targets a training run in ws/runs/first wrote."""
    classes = tmp_path / "classes"
    copy_photos(photo_files[:10], classes / "coat")
    copy_photos(photo_files[10:20], classes / "shirt")
    ok_json(harvest("import", classes, "--labels-from-folders", "--json", "-w", ws, cwd=ws.parent))
    workspace = open_workspace(ws)
    with workspace.catalog.write() as conn:
        run = start_run(conn, "train", {"run_dir": "runs/first"})
        wanted = [RunTarget("coat", 90, "confused with shirt"), RunTarget("shirt", 30, "confused with coat")]
        replace_run_targets(conn, wanted, run, measured=["coat", "shirt"], origin=str(ws / "runs" / "first"))
        finish_run(conn, run, "done", {})
    workspace.close()
    return ws


def test_imported_images_count_against_their_target_until_it_is_met(
    trained: Path, tmp_path: Path, photo_files: list[Path]
) -> None:
    ws = trained
    listed = targets(ws)
    assert by_label(listed) == {"coat": (90, 0, "open"), "shirt": (30, 0, "open")}
    assert {t["origin"] for t in listed} == {"runs/first"}  # the run's folder, not "run 1"
    more = copy_photos(photo_files[20:40], tmp_path / "more-shirts")
    assert ok_json(harvest("import", more, "--label", "shirt", "--json", "-w", ws, cwd=ws.parent))["added"] == 20
    assert ok_json(harvest("import", more, "--label", "shirt", "--json", "-w", ws, cwd=ws.parent))["added"] == 0
    assert by_label(targets(ws)) == {"coat": (90, 0, "open"), "shirt": (30, 20, "open")}  # duplicates count once
    rest = copy_photos(photo_files[40:50], tmp_path / "last-shirts")
    assert ok_json(harvest("import", rest, "--label", "shirt", "--json", "-w", ws, cwd=ws.parent))["added"] == 10
    assert by_label(targets(ws)) == {"coat": (90, 0, "open")}  # met: no longer open
    workspace = open_workspace(ws)
    with workspace.catalog.read() as conn:  # closed for good by the import's run end, not only shown as met
        stored = conn.execute(select(targets_table.c.label, targets_table.c.status)).all()
    workspace.close()
    assert sorted(map(tuple, stored)) == [("coat", "open"), ("shirt", "met")]
    assert by_label(targets(ws, "--all")) == {"coat": (90, 0, "open"), "shirt": (30, 30, "met")}
    table = harvest("targets", "--all", "-w", ws, cwd=ws.parent)
    assert table.code == 0 and "met" in table.stdout and "runs/first" in table.stdout


def test_images_from_a_web_collector_count_too(trained: Path, tmp_path: Path, site: Site) -> None:
    ws = trained
    listing = tmp_path / "coats.csv"
    listing.write_text("url\n" + "".join(f"{site.url('/img/' + name)}\n" for name in site.photo_names[60:65]))
    summary = ok_json(harvest("urls", listing, "--label", "coat", "--allow-private", "--json", "-w", ws, cwd=ws))
    assert summary["added"] == 5
    assert by_label(targets(ws))["coat"] == (90, 5, "open")


def test_set_refuses_an_unknown_label_unless_create(trained: Path) -> None:
    ws = trained
    refused = harvest("targets", "set", "nosuchlabel", "--want", "10", "-w", ws, cwd=ws.parent)
    assert refused.code != 0
    one_error_line(refused.stderr, "nosuchlabel")
    assert "coat, shirt" in refused.stderr and "--create" in refused.stderr
    as_json = harvest("targets", "set", "nosuchlabel", "--want", "10", "--json", "-w", ws, cwd=ws.parent)
    assert as_json.code != 0 and "nosuchlabel" in as_json.json()["error"]
    assert "nosuchlabel" not in by_label(targets(ws, "--all"))

    made = ok_json(
        harvest("targets", "set", "scarf", "--want", "10", "--create", "--source", "https://shop.test/scarves",
                "--json", "-w", ws, cwd=ws.parent)
    )  # fmt: skip
    assert made["open"] is True and made["origin"] == "manual" and made["sources"] == ["https://shop.test/scarves"]
    listed = targets(ws)
    assert listed[0]["label"] == "scarf" and listed[0]["status"] == "open"  # hand-set first
    labels = ok_json(harvest("targets", "set", "shirt", "--want", "5", "--json", "-w", ws, cwd=ws.parent))
    assert labels["label"] == "shirt" and labels["want"] == 5  # a known label needs no --create
    assert "scarf" in harvest("targets", "-w", ws, cwd=ws.parent).stdout


def test_close_and_want_zero_close_a_target(trained: Path) -> None:
    ws = trained
    assert ok_json(harvest("targets", "close", "coat", "--json", "-w", ws, cwd=ws.parent)) == {
        "label": "coat",
        "closed": 1,
    }
    again = harvest("targets", "close", "coat", "-w", ws, cwd=ws.parent)
    assert again.code != 0
    one_error_line(again.stderr, "no open target for 'coat'")
    zero = ok_json(harvest("targets", "set", "shirt", "--want", "0", "--json", "-w", ws, cwd=ws.parent))
    assert zero["open"] is False and zero["status"] == "closed"
    assert targets(ws) == []
    assert sorted((t["label"], t["status"]) for t in targets(ws, "--all")) == [("coat", "closed"), ("shirt", "closed")]
    assert "No open targets" in harvest("targets", "-w", ws, cwd=ws.parent).stdout


def test_a_newer_run_replaces_only_the_targets_of_the_labels_it_measured(trained: Path) -> None:
    ws = trained
    ok_json(harvest("targets", "set", "hat", "--want", "7", "--create", "--json", "-w", ws, cwd=ws.parent))
    workspace = open_workspace(ws)
    with workspace.catalog.write() as conn:
        run = start_run(conn, "train", {"run_dir": "runs/second"})
        replace_run_targets(conn, [RunTarget("coat", 40, "few")], run, measured=["coat", "shirt"],
                            origin=str(ws / "runs" / "second"))  # fmt: skip
    workspace.close()
    listed = targets(ws)
    assert [(t["label"], t["want"], t["origin"]) for t in listed] == [
        ("hat", 7, "manual"),  # not measured: stays
        ("coat", 40, "runs/second"),  # measured and wanted again: replaced
    ]  # shirt was measured and wanted nothing more: dropped
    assert ("shirt", "dropped") in {(t["label"], t["status"]) for t in targets(ws, "--all")}
