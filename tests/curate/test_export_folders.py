"""`curate export --format imagefolder` maps labels to safe folder names (issue 16, item 15): labels stored before
the label rule (`..`, NUL, a slash, 200 CJK characters, `Cat` next to `cat`) wrote into the export's parent
folder or crashed ("embedded null byte", "File name too long")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from curate.export.folders import label_folders, safe_folder_name
from curate.export.formats import export_imagefolder
from curate.snapshot import ManifestEntry
from storage.keys import image_key
from storage.workspace import Workspace
from tests.hostile import valid_png

OLD_LABELS = ["..", ".", "a\x00b", "cats/dogs", "back\\slash", "猫" * 200, "Cat", "cat", "ok", "con:", " x "]


def test_hostile_labels_export_inside_out(workspace: Workspace, tmp_path: Path) -> None:
    entries = []
    for i, label in enumerate(OLD_LABELS):
        data = valid_png(16, 16, text=str(i).encode())
        sha = hashlib.sha256(data).hexdigest()
        key = image_key(sha, "png")
        workspace.store.put(key, data)
        entries.append(ManifestEntry(sha256=sha, label=label, split="train", key=key, group=sha))
    out = tmp_path / "nested" / "out"
    out.mkdir(parents=True)
    assert export_imagefolder(entries, workspace.store, out) == {"images": len(OLD_LABELS)}
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # nothing written beside the export
    folders = sorted((out / "train").iterdir())
    assert len(folders) == len(OLD_LABELS)  # one folder per label, none shared
    assert len({folder.name.casefold() for folder in folders}) == len(OLD_LABELS)  # case-insensitive disks too
    for folder in folders:
        assert folder.resolve().parent == (out / "train").resolve()
        assert len(folder.name.encode()) <= 255 and len(list(folder.iterdir())) == 1
    mapping = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert sorted(mapping.values()) == sorted(OLD_LABELS)
    assert mapping["ok"] == "ok" and mapping["Cat"] == "Cat"  # safe names stay as they are
    assert next(folder for folder, label in mapping.items() if label == "cat").startswith("cat~")


def test_folder_names_are_stable_and_plain_when_safe() -> None:
    assert safe_folder_name("golden retriever") == "golden retriever"
    assert safe_folder_name("..") == safe_folder_name("..") != ".."
    assert label_folders(["b", "a/b", "a_b"]) == label_folders(["a_b", "b", "a/b"])
    assert "/" not in "".join(label_folders(["a/b", "\\", "/"]).values())
