"""`curate labels --suspects`: the suspected label errors of the newest finished `train audit`, read from the
catalog, most likely first. The audit's rows are written here through storage.catalog.audits, as `train audit`
writes them (tests/train/test_audit.py runs the real audit); the images are real photos ingested for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.catalog.audits import (
    AuditPrediction,
    Suspect,
    finish_audit,
    replace_suspects,
    start_audit,
    write_audit_predictions,
)
from storage.catalog.runs import start_run
from storage.workspace import open_workspace
from tests.curate.test_labels_cli import Catalogued, catalogued, curate, fails, ok

__all__ = ["catalogued"]


def _audit(ws: Path, found: list[Suspect], *, finish: bool = True) -> int:
    with open_workspace(ws) as workspace, workspace.catalog.write() as conn:
        run_id = start_run(conn, "audit", {"run_dir": "audits/x"})
        start_audit(conn, run_id, "snap-1", ["cat", "dog"], 5)
        write_audit_predictions(
            conn, run_id, [AuditPrediction(s.sha256, s.label, s.sha256, 1, [0.5, 0.5]) for s in found]
        )
        replace_suspects(conn, run_id, found)
        if finish:
            finish_audit(conn, run_id)
    return run_id


def test_suspects_most_likely_first_and_corrected_ones_leave_the_list(catalogued: Catalogued) -> None:
    cats, dogs = catalogued.cats, catalogued.dogs
    _audit(catalogued.ws, [
        Suspect(cats[0], "cat", "dog", 0.61, ["confident_learning"]),
        Suspect(dogs[0], "dog", "cat", 0.97, ["confident_learning", "near_duplicate_conflict"]),
        Suspect(cats[1], "cat", "dog", 0.61, ["near_duplicate_conflict"]),
    ])  # fmt: skip
    document = ok(catalogued.ws, "labels", "--suspects")
    listed = document["suspects"]
    tie = sorted([cats[0], cats[1]])
    assert [s["sha256"] for s in listed] == [dogs[0], *tie]  # score descending, ties by sha256
    assert listed[0] == {
        "sha256": dogs[0], "label": "dog", "suggested": "cat", "score": 0.97,
        "sources": ["confident_learning", "near_duplicate_conflict"],
    }  # fmt: skip
    assert document["audit"]["snapshot"] == "snap-1"

    ok(catalogued.ws, "label", "set", "cat", dogs[0])  # the suggestion accepted
    assert [s["sha256"] for s in ok(catalogued.ws, "labels", "--suspects")["suspects"]] == tie
    human = curate(catalogued.ws, "labels", "--suspects")
    assert human.code == 0 and "Suspected label errors" in human.stdout and "near_duplicate_conflict" in human.stdout


def test_the_newest_finished_audit_is_listed(catalogued: Catalogued) -> None:
    cats = catalogued.cats
    _audit(catalogued.ws, [Suspect(cats[0], "cat", "dog", 0.9, ["confident_learning"])])
    _audit(catalogued.ws, [Suspect(cats[2], "cat", "dog", 0.8, ["confident_learning"])], finish=False)
    assert [s["sha256"] for s in ok(catalogued.ws, "labels", "--suspects")["suspects"]] == [cats[0]]
    _audit(catalogued.ws, [Suspect(cats[1], "cat", "dog", 0.7, ["confident_learning"])])
    assert [s["sha256"] for s in ok(catalogued.ws, "labels", "--suspects")["suspects"]] == [cats[1]]


@pytest.mark.parametrize("audits", [0, 1])
def test_without_a_finished_audit_it_says_what_to_run(catalogued: Catalogued, audits: int) -> None:
    if audits:
        _audit(catalogued.ws, [Suspect(catalogued.cats[0], "cat", "dog", 0.9, ["confident_learning"])], finish=False)
    fails(catalogued.ws, "labels", "--suspects", needle="run `train audit` first")
