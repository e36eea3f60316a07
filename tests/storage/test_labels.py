"""The label rule (issue 16, item 15): one rule in storage.catalog.labels for every writer.

Before it, `Cat`/`cat`/`CAT`, `ﬁsh`/`fish`, NFC/NFD `é`, zero-width and RTL variants were different labels, NUL
got in through the review API or a CSV, `.` and `..` were accepted, and export wrote into its parent folder."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from storage.catalog import InvalidLabel, label_counts, label_key, normalize_label, set_label
from storage.catalog.labels import MAX_LABEL_BYTES, add_label, label_history, merge_labels, rename_label
from storage.ingest import IngestItem, Ingestor, source_for_path
from storage.workspace import Workspace

NFD_CAFE = unicodedata.normalize("NFD", "café")
SPOOFS = {  # spelling → the label it must be
    "Cat": "cat",
    "CAT": "cat",
    " cat ": "cat",
    "c\u200bat": "cat",  # zero-width space
    "cat\u200d": "cat",  # zero-width joiner
    "\u202ecat": "cat",  # right-to-left override
    "\ufeffcat": "cat",  # byte-order mark
    "\u2066cat\u2069": "cat",  # bidi isolate
    "ﬁsh": "fish",  # ligature: one label under case-folding
    NFD_CAFE: "café",
}
REFUSED = {
    "": "empty",
    "\u200b": "empty",
    "a\x00b": "control",
    "tab\tbed": "control",
    "two\nlines": "control",
    "c1\x85code": "control",
    "para\u2029graph": "control",
    "cats/dogs": "slash",
    "back\\slash": "slash",
    ".": "'.'",
    "..": "'..'",
    " .. ": "'..'",
    "猫" * 67: "UTF-8 bytes",  # 201 bytes
    "x" * 201: "UTF-8 bytes",
}


def test_the_rule_normalises_or_refuses() -> None:
    assert normalize_label(NFD_CAFE) == "café" and len(normalize_label(NFD_CAFE)) == 4
    assert normalize_label("c\u200bat") == "cat" and normalize_label("\u202ecat") == "cat"
    for spelling, label in SPOOFS.items():
        assert label_key(normalize_label(spelling)) == label_key(label), repr(spelling)
    for name, reason in REFUSED.items():
        with pytest.raises(InvalidLabel, match=reason):
            normalize_label(name)
    assert normalize_label("猫" * 66) == "猫" * 66  # 198 bytes
    assert len(normalize_label("é" * 100).encode()) == MAX_LABEL_BYTES
    for kept in ("Golden Retriever", "été", "日本語", "a.b", "...", "C++", "🐈", "n/a".replace("/", "-")):
        assert normalize_label(kept) == kept
        assert normalize_label(normalize_label(kept)) == kept  # idempotent


def test_every_spelling_lands_on_one_label(workspace: Workspace, photo_files: list[Path]) -> None:
    ingest = Ingestor.for_workspace(workspace)
    shas = []
    for path, label in zip(photo_files, ["cat", *SPOOFS], strict=False):
        outcome = ingest.ingest(IngestItem(source=source_for_path(path), label=label, path=str(path)))
        assert outcome.sha256
        shas.append(outcome.sha256)
    with workspace.catalog.read() as conn:
        counts = label_counts(conn)
        history = label_history(conn, limit=100)
    assert counts == {"cat": 9, "ﬁsh": 1, "café": 1}, counts  # the first spelling stored is kept
    assert {event["after"] for event in history} == {"cat", "ﬁsh", "café"}  # history names the stored spelling
    with workspace.catalog.write() as conn:
        assert not add_label(conn, "CAT", actor="t")  # exists already
        assert add_label(conn, "Dog", actor="t")
        assert not add_label(conn, "dog", actor="t")
        set_label(conn, shas[:1], "DOG", actor="t")
        rename_label(conn, "dog", "Hound", actor="t")  # found under case-folding
        rename_label(conn, "hound", "HOUND", actor="t")  # a new spelling of itself is a rename
        with pytest.raises(Exception, match="already exists"):
            rename_label(conn, "HOUND", "Cat", actor="t")
        with pytest.raises(Exception, match="itself"):
            merge_labels(conn, ["Fish"], "FISH", actor="t")
        merge_labels(conn, ["ﬁsh"], "HOUND", actor="t")
        for name in REFUSED:
            with pytest.raises(InvalidLabel):
                set_label(conn, shas[:1], name, actor="t")
        counts = label_counts(conn)
    assert counts == {"HOUND": 2, "cat": 8, "café": 1}, counts
