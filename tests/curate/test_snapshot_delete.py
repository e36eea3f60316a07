"""`curate snapshot delete NAME`: the snapshot's row and manifest go, the images stay; `curate snapshot` still works."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from curate.cli import app as curate_app
from curate.snapshot import delete_snapshot, eligible_images, list_snapshots
from harvest.importer import import_paths
from storage.workspace import Workspace


def invoke(workspace: Workspace, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(curate_app, [*args, "-w", str(workspace.root)])
    return result.exit_code, result.stdout, result.stderr


def test_snapshot_delete_removes_row_and_manifest_and_keeps_images(
    workspace: Workspace, photo_files: list[Path], tmp_path: Path
) -> None:
    for index, photo in enumerate(photo_files[:6]):
        target = tmp_path / "data" / ("cats" if index % 2 else "dogs") / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(photo.read_bytes())
    import_paths(workspace, [tmp_path / "data"], labels_from_folders=True, workers=1)
    images_before = eligible_images(workspace, False)
    for name in ("v1", "v2"):
        code, out, _ = invoke(workspace, "snapshot", "--name", name, "--json")
        assert code == 0 and json.loads(out)["name"] == name
    manifest = next(s.manifest_key for s in list_snapshots(workspace) if s.name == "v1")
    assert workspace.store.exists(manifest)

    code, out, _ = invoke(workspace, "snapshot", "delete", "v1", "--json")
    assert code == 0, out
    assert json.loads(out)["deleted"]["name"] == "v1"
    assert [s.name for s in list_snapshots(workspace)] == ["v2"]
    assert not workspace.store.exists(manifest)
    assert eligible_images(workspace, False) == images_before  # a snapshot only names images

    code, _, err = invoke(workspace, "snapshot", "delete", "v1")
    assert code == 1 and "no snapshot named 'v1'" in err and "v2" in err and "Traceback" not in err
    code, out, _ = invoke(workspace, "snapshot", "--name", "v1", "--json")  # the name is free again
    assert code == 0 and json.loads(out)["name"] == "v1"
    assert delete_snapshot(workspace, "v2").name == "v2"
    code, out, _ = invoke(workspace, "snapshot", "delete", "v1")
    assert code == 0 and "deleted snapshot v1" in out and list_snapshots(workspace) == []
