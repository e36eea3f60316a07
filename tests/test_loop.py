"""The whole loop with a small budget: collect → curate → train → targets → targets job → a better model.

The real commands run (as `harvest demo` runs them) against the demo shop on 127.0.0.1. The scarce class's
recall on the fixed evaluation split must rise beyond its interval, its target must close, and the targets job
must fetch no image of any other label (judged on the shop's own request log and on the catalog).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harvest.demo.loop import Budget, run_loop
from harvest.demo.shop import Shop
from harvest.idx import FASHION_MNIST_DIR
from storage.catalog import image_sources, iter_images
from storage.workspace import open_workspace

pytestmark = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)


@pytest.mark.timeout(900)  # two trainings and a dozen commands: minutes on shared cores
def test_targeted_collection_raises_the_scarce_class(tmp_path: Path) -> None:
    budget = Budget.named("small")
    shop = Shop(budget.layout)
    scarce = budget.layout.scarce
    before_job: Counter[str] = Counter()

    def at_targets(targets: list[dict[str, Any]]) -> None:
        before_job.update(shop.paths)

    result = run_loop(tmp_path, budget, Console(stderr=True), on_targets=at_targets, shop=shop)

    assert result.targets_before[0]["label"] == scarce, result.targets_before
    assert [t["label"] for t in result.targets_before] == [scarce]  # the other classes are well stocked
    after = {t["label"]: t for t in result.targets_after}
    assert after[scarce]["status"] == "met" and after[scarce]["collected"] >= after[scarce]["want"]
    assert result.job["stopped"] == "targets met" and result.job["added"] > 0

    # The job fetched images of the scarce class only: the shop's log of image requests made during the job ...
    job_images = {path for path, n in shop.paths.items() if path.startswith("/img/") and n > before_job[path]}
    assert job_images and {shop.label_of(path) for path in job_images} == {scarce}
    # ... and every image the job's run stored is labelled with it.
    with open_workspace(result.workspace) as workspace, workspace.catalog.read() as conn:
        from_job = [
            row["label"]
            for row in iter_images(conn)
            if any(s["run_id"] == result.job["run_id"] for s in image_sources(conn, row["sha256"]))
        ]
    assert len(from_job) == result.job["added"] and set(from_job) == {scarce}

    before, rise = result.recall_before[scarce], result.recall_after[scarce]
    assert before.total == rise.total == budget.layout.evaluation_per_class
    assert rise.interval[0] > before.interval[1], (before, rise)  # risen beyond both 95% intervals
    assert all(Path(path).is_file() for path in result.reports.values())
    document = json.loads(json.dumps(result.as_json()))  # what `harvest demo --json` prints
    assert document["recall"][scarce]["after"] == {"recall": round(rise.recall, 4), "n": rise.total,
                                                   "ci": [round(bound, 4) for bound in rise.interval]}  # fmt: skip
    assert [step["exit"] for step in document["steps"]] == [0] * 15
