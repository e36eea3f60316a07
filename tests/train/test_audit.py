"""`train audit` on real images with labels flipped on purpose: scikit-learn's handwritten digits (30 per class,
16x16 PNGs), 10 images moved into the wrong class folder before `harvest import`, and near-copies (one pixel
changed) of two images filed under another label.

Measured on this set (5 folds, 6 epochs without augmentation, one network per fold): all 10 flipped images are
among the first 20 suspects that `curate labels --suspects --json` lists (13 suspects in all); the test asks for
at least 8, and for both near-copy conflicts to be flagged with their source. The audit runs as a real process,
SIGKILLed once its first fold is done; `--resume` continues with the other folds only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
import torch
from PIL import Image

from curate.cli import app as curate_app
from curate.snapshot import create_snapshot
from harvest.importer import import_paths
from storage.catalog.audits import audit_probabilities, latest_audit
from storage.workspace import Workspace, init_workspace, open_workspace
from tests.support.processes import children, wait_until_gone
from tests.train.conftest import SNAPSHOT, invoke, write_digits
from train.audit.folds import fold_processes
from train.cli import app as train_app

FLIPS = 10
AUDIT = ["--dataset", "digits", "--folds", "5", "--epochs", "6", "--img-size", "16", "--batch-size", "32",
         "--augment", "none", "--device", "cpu", "--workers", "1"]  # fmt: skip
BAR_IN_TOP_20 = 8


def _flip(folder: Path) -> dict[str, tuple[str, str]]:
    """Move one image of each class into the next class's folder: file name → (true, given)."""
    flipped = {}
    classes = sorted(p.name for p in folder.iterdir())
    chosen = [(label, sorted((folder / label).glob("*.png"))[3]) for label in classes[:FLIPS]]
    for k, (label, path) in enumerate(chosen):  # all chosen first: a moved file is never picked again
        given = classes[(k + 3) % len(classes)]
        path.rename(folder / given / path.name)
        flipped[path.name] = (label, given)
    return flipped


def _near_copies(folder: Path) -> list[tuple[str, str]]:
    """Two images copied with one pixel changed, filed under another label: (copy name, its wrong label)."""
    made = []
    for label, wrong in (("digit0", "digit8"), ("digit1", "digit7")):
        source = sorted((folder / label).glob("*.png"))[10]
        pixels = np.asarray(Image.open(source)).copy()
        pixels[0, 0] = 255 - pixels[0, 0]
        name = f"copy-{source.name}"
        Image.fromarray(pixels, "L").save(folder / wrong / name)
        made.append((name, wrong))
    return made


def _workspace(root: Path, images: Path) -> Workspace:
    """As tests/train/conftest.make_workspace, with a snapshot that groups near-duplicates (pHash+dHash ≤ 6)."""
    init_workspace(root)
    config = root / "gleaner.toml"
    document = tomllib.loads(config.read_text())
    document.setdefault("ingest", {})["near_duplicates"] = False  # keep the near-copies in the snapshot
    config.write_text(tomli_w.dumps(document))
    workspace = open_workspace(root)
    import_paths(workspace, [images], labels_from_folders=True, workers=1)
    create_snapshot(workspace, name=SNAPSHOT, threshold=6)
    return workspace


@pytest.fixture(scope="module")
def noisy_ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("noisy")
    folder = root / "images"
    write_digits(folder)
    flipped, copies = _flip(folder), _near_copies(folder)
    workspace = _workspace(root / "ws", folder)
    yield workspace, flipped, copies
    workspace.close()


def _sha_by_name(workspace: Workspace) -> dict[str, str]:
    with workspace.catalog.read() as conn:
        from storage.catalog.images import source_uris

        return {Path(uri).name: sha for sha, uris in source_uris(conn).items() for uri in uris}


def _audit_process(ws: Workspace, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "train.cli", "audit", *AUDIT, "--out", str(out), "-w", str(ws.root), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def audited(noisy_ws: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The audit as a real process, SIGKILLed once fold 1 is done, then `--resume`d: (out, report, stderr,
    fold 1's oof.npz mtime before the resume, the run id the killed audit recorded)."""
    workspace, _, _ = noisy_ws
    out = tmp_path_factory.mktemp("audit") / "audit"
    process = _audit_process(workspace, out, "--parallel", "2")
    first = out / "folds" / "fold-1" / "oof.npz"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.exists() and process.poll() is None, "the audit should be running its second fold"
    workers = children(process.pid)
    assert workers, "--parallel 2 trains the folds in worker processes"
    os.kill(process.pid, signal.SIGKILL)
    _, err = process.communicate()
    assert wait_until_gone(workers, 10), "fold workers outlived the killed audit"
    assert not (out / "report.json").exists()
    before = first.stat().st_mtime_ns
    with workspace.catalog.read() as conn:
        assert latest_audit(conn) is None  # not finished: no suspects listed yet
    killed = json.loads((out / "audit.json").read_text())
    with workspace.catalog.read() as conn:
        recorded = audit_probabilities(conn, killed["run_id"])
    assert recorded and {r.fold for r in recorded} <= {1, 2}  # fold 1 recorded, maybe fold 2 too
    report = invoke(train_app, "audit", "--out", out, "--resume", "-w", workspace.root, "--json")
    return out, report, err, before, killed["run_id"]


def test_audit_killed_resumes_and_finds_the_flipped_labels(noisy_ws: Any, audited: Any) -> None:
    workspace, flipped, copies = noisy_ws
    out, report, _, before, run_id = audited
    first = out / "folds" / "fold-1" / "oof.npz"
    assert first.stat().st_mtime_ns == before
    assert report["folds"][0]["resumed"] is True
    assert [f["fold"] for f in report["folds"]] == [1, 2, 3, 4, 5]
    assert report["images"] == 300 + len(copies) and report["run_id"] == run_id
    assert (out / "report.html").is_file() and "noise matrix" in (out / "report.html").read_text()

    listed = invoke(curate_app, "labels", "--suspects", "--json", "-w", workspace.root)["suspects"]
    scores = [s["score"] for s in listed]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert set(listed[0]) == {"sha256", "label", "suggested", "score", "sources"}
    sha = _sha_by_name(workspace)
    top = {s["sha256"]: s for s in listed[:20]}
    found = [name for name in flipped if sha[name] in top]
    assert len(found) >= BAR_IN_TOP_20, (len(found), len(listed))
    right = [name for name in found if top[sha[name]]["suggested"] == flipped[name][0]]
    assert len(right) >= BAR_IN_TOP_20 - 1  # and mostly with the true label as the suggestion
    by_sha = {s["sha256"]: s for s in listed}
    for name, wrong in copies:
        assert sha[name] in by_sha, f"near-copy {name} under {wrong} not flagged"
        assert "near_duplicate_conflict" in by_sha[sha[name]]["sources"]
    # every audited image got its probabilities, in the audit's class order, from one fold
    with workspace.catalog.read() as conn:
        rows = audit_probabilities(conn, report["run_id"])
    assert len(rows) == report["images"] and all(len(r.probs) == len(report["labels"]) for r in rows)
    assert all(abs(sum(r.probs) - 1) < 1e-3 for r in rows)


def test_folds_keep_near_duplicate_groups_together(noisy_ws: Any, audited: Any) -> None:
    workspace, _, copies = noisy_ws
    out, _, err, _, _ = audited
    document = json.loads((out / "audit.json").read_text())
    sha = _sha_by_name(workspace)
    with workspace.catalog.read() as conn:
        rows = {r.sha256: r for r in audit_probabilities(conn, document["run_id"])}
    groups: dict[str, set[int]] = {}
    for row in rows.values():
        groups.setdefault(row.group, set()).add(row.fold)
    shared = [g for g in groups if sum(1 for r in rows.values() if r.group == g) > 1]
    assert len(shared) >= len(copies)  # the near-copies are grouped with their originals
    assert all(len(groups[g]) == 1 for g in shared), "a group straddles folds"
    for name, _ in copies:
        copy = rows[sha[name]]
        original = rows[sha[name.removeprefix("copy-")]]
        assert copy.group == original.group and copy.fold == original.fold
        assert document["fold_of"][copy.sha256] == copy.fold
    assert "fold 1/5" in err and "fold 2/5" in err  # progress across folds on stderr


def test_the_review_view_lists_the_suspects_and_y_takes_the_suggestion(noisy_ws: Any, audited: Any) -> None:
    """`curate review` in Chromium: the "Suspected label errors" view shows the suspects in the CLI's order, most
    of the flipped images on its first cards with the suggested label; `y` gives the focused image that label
    (the catalog says so) and `u` undoes it, so the later tests see the audit's labels."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    from curate.review.server import running
    from harvest.scrape.render import CHROMIUM, CHROMIUM_ARGS
    from storage.catalog import get_image

    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not installed at {CHROMIUM}")
    workspace, flipped, _ = noisy_ws
    listed = invoke(curate_app, "labels", "--suspects", "--json", "-w", workspace.root)["suspects"]
    sha = _sha_by_name(workspace)
    with running(workspace, port=0) as server, playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='1']")
            page.click("nav.views a[data-view='suspects']")
            page.wait_for_selector("body[data-ready='1'] .grid .card[data-suggested]")
            cards = page.locator(".grid .card")
            shown = [cards.nth(i).get_attribute("data-sha") for i in range(min(20, cards.count()))]
            assert shown == [s["sha256"] for s in listed[: len(shown)]]  # the CLI's order, most likely first
            found = [name for name in flipped if sha[name] in shown]
            assert len(found) >= BAR_IN_TOP_20, (len(found), len(shown))
            first = listed[0]
            assert cards.first.get_attribute("data-suggested") == first["suggested"]
            assert f"probably {first['suggested']}" in cards.first.inner_text()

            page.keyboard.press("y")  # the focused card (the first) takes its suggestion
            page.wait_for_selector("body[data-inflight='0']")
            with workspace.catalog.read() as conn:
                assert get_image(conn, first["sha256"])["label"] == first["suggested"]
            page.keyboard.press("u")
            page.wait_for_selector("body[data-inflight='0']")
            with workspace.catalog.read() as conn:
                assert get_image(conn, first["sha256"])["label"] == first["label"]
            assert not errors, errors
        finally:
            browser.close()


def test_accepted_suggestions_leave_the_list_and_compare_retrains(noisy_ws: Any, audited: Any) -> None:
    """Accept the top suspects' suggestions (as a reviewer would, with `curate label set`); they leave the list,
    and `train audit --compare` trains on the corrected and on the audited labels, tested on one test split."""
    workspace, _, _ = noisy_ws
    out, report, _, _, _ = audited
    listed = invoke(curate_app, "labels", "--suspects", "--json", "-w", workspace.root)["suspects"]
    accepted = listed[:5]
    for suspect in accepted:
        invoke(curate_app, "label", "set", suspect["suggested"], suspect["sha256"], "--json", "-w", workspace.root)
    left = invoke(curate_app, "labels", "--suspects", "--json", "-w", workspace.root)["suspects"]
    assert [s["sha256"] for s in left] == [s["sha256"] for s in listed[5:]]

    compared = invoke(train_app, "audit", "--compare", "--out", out, "-w", workspace.root, "--json")
    comparison = compared["comparison"]
    assert comparison["changed"] == len(accepted) and comparison["ignored"] == 0
    models = comparison["models"]
    assert set(models) == {"audited labels", "corrected labels"}
    assert models["audited labels"]["test_images"] == models["corrected labels"]["test_images"] > 0
    assert all(0 <= m["accuracy"] <= 1 for m in models.values())
    expected = models["corrected labels"]["accuracy"] - models["audited labels"]["accuracy"]
    assert comparison["gain"] == pytest.approx(expected, abs=1e-4)
    saved = json.loads((out / "report.json").read_text())
    assert saved["comparison"] == comparison and saved["suspect_count"] == report["suspect_count"]
    assert "What fixing gained" in (out / "report.html").read_text()


def test_ctrl_c_stops_the_fold_workers_with_the_audit(noisy_ws: Any, tmp_path: Path) -> None:
    """SIGINT to the audit process alone (its fold workers not signalled): it records the interruption, exits 130
    without a traceback, and no fold goes on training."""
    workspace, _, _ = noisy_ws
    process = _audit_process(workspace, tmp_path / "audit", "--parallel", "2")
    deadline = time.monotonic() + 120
    while len(children(process.pid)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # two fold workers and multiprocessing's resource tracker
    workers = children(process.pid)
    assert len(workers) >= 3 and process.poll() is None
    time.sleep(1.0)  # the workers are importing torch or training
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    assert wait_until_gone(workers, 10), "fold workers outlived the interrupted audit"


def test_fold_processes_share_the_threads_and_stay_one_off_the_cpu() -> None:
    threads = torch.get_num_threads()
    assert fold_processes(None, "cpu", 5) == (min(threads, 5), max(1, threads // min(threads, 5)))
    assert fold_processes(4, "cpu", 2) == (2, max(1, threads // 2))  # never more processes than folds
    assert fold_processes(1, "cpu", 5) == (1, threads)
    assert fold_processes(3, "cpu", 1) == (1, threads)
