"""The demo's loop: each step is the real command (`python -m harvest|curate|train ... --json`), as a user runs it.

Subprocesses, not library calls: harvest, curate and train do not import each other (the import-linter
contracts), and running the CLIs is also the check that the documented commands do the whole job. Each step's
progress output goes to a log file beside the workspace; the console shows one line per step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harvest.demo.chart import plot_recall
from harvest.demo.recall import ClassRecall, per_class_recall
from harvest.demo.shop import Shop, ShopLayout
from storage.errors import GleanerError

__all__ = ["FOLLOW", "JOB_NAME", "Budget", "DemoError", "LoopResult", "run_loop"]

FOLLOW = "a.cat, a.product, li.next a"
JOB_NAME = "targets"


class DemoError(GleanerError):
    """A step failed: its command, exit status and the tail of its log."""


@dataclass(frozen=True)
class Budget:
    name: str
    layout: ShopLayout
    epochs: int

    @classmethod
    def named(cls, name: str) -> Budget:
        return cls(name, ShopLayout.budget(name), epochs=8 if name == "full" else 6)


@dataclass
class LoopResult:
    workspace: Path
    shop_url: str
    scarce: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    targets_before: list[dict[str, Any]] = field(default_factory=list)
    job: dict[str, Any] = field(default_factory=dict)
    targets_after: list[dict[str, Any]] = field(default_factory=list)
    recall_before: dict[str, ClassRecall] = field(default_factory=dict)
    recall_after: dict[str, ClassRecall] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    shop_requests: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "workspace": str(self.workspace),
            "shop": self.shop_url,
            "scarce": self.scarce,
            "steps": self.steps,
            "targets_before": self.targets_before,
            "job": self.job,
            "targets_after": self.targets_after,
            "recall": {
                label: {"before": self.recall_before[label].as_json(), "after": self.recall_after[label].as_json()}
                for label in self.recall_before
            },
            "reports": self.reports,
            "shop_requests": self.shop_requests,
            "seconds": round(self.seconds, 1),
        }


class _Runner:
    """Runs one CLI step with --json, logs its stderr, returns its JSON document, shows a line per step."""

    def __init__(self, workspace: Path, logs: Path, console: Console, total: int) -> None:
        self.workspace = workspace
        self.logs = logs
        self.console = console
        self.total = total
        self.steps: list[dict[str, Any]] = []

    def __call__(self, title: str, program: str, *args: str, workspace: bool = True) -> dict[str, Any]:
        number = len(self.steps) + 1
        argv = [sys.executable, "-m", program, *args, "--json"]
        if workspace:
            argv += ["-w", str(self.workspace)]
        shown = " ".join([program, *args])
        log = self.logs / f"{number:02d}-{program}-{args[0]}.log"
        started = time.monotonic()
        with self.console.status(f"[bold]{number}/{self.total}[/] {title}: [cyan]{shown}[/]"), log.open("w") as err:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, text=True, check=False, env=_env(program))
        seconds = time.monotonic() - started
        self.steps.append({"step": title, "command": shown, "exit": done.returncode, "seconds": round(seconds, 1)})
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise DemoError(f"{shown} exited {done.returncode}: {done.stdout.strip()[-500:]}\n{tail}")
        self.console.print(f"[green]✓[/] {number:>2}/{self.total} {title} [dim]({seconds:.1f} s) {shown}[/]")
        document: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
        return document


def _env(program: str) -> dict[str, str]:
    """One torch thread for the demo's tiny CNN unless the user chose: threads cost more than they bring on
    28 px images, and oversubscribe shared cores (measured: 38 s instead of 89 s for the small budget's run)."""
    env = dict(os.environ)
    if program == "train":
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def job_toml(url: str) -> str:
    """The `targets = true` job the demo appends to gleaner.toml: the whole site, only labels with open targets."""
    return (
        "\n# Added by `harvest demo`: collect what the first model's targets ask for from the demo shop.\n"
        "[[jobs]]\n"
        f'name = "{JOB_NAME}"\n'
        "targets = true\n\n"
        "[[jobs.sources]]\n"
        f'scrape = ["{url}"]\n'
        'label_from = "css:h1"\n'
        f'follow = "{FOLLOW}"\n'
        "allow_private = true\n"
        "per_host_rate = 0\n"
    )


def _train(step: _Runner, name: str, epochs: int) -> tuple[dict[str, Any], Path]:
    out = step.workspace / "runs" / name
    step(f"snapshot {name}", "curate", "snapshot", "--name", name)
    step(f"train on {name}", "train", "run", "--dataset", name, "--out", str(out), "--epochs", str(epochs),
         "--img-size", "28", "--members", "1")  # fmt: skip
    report = step(f"report of {name}", "train", "report", str(out), workspace=False)
    return report, out


def _recall(step: _Runner, run: Path, evaluation: Path, labels: Sequence[str]) -> dict[str, ClassRecall]:
    predicted = step(f"predict the evaluation split with {run.name}", "train", "predict", str(run), str(evaluation),
                     workspace=False)  # fmt: skip
    return per_class_recall(predicted["predictions"], evaluation, labels)


def run_loop(
    out: Path,
    budget: Budget,
    console: Console,
    on_targets: Callable[[list[dict[str, Any]]], None] | None = None,
    shop: Shop | None = None,
) -> LoopResult:
    """Shop → scrape → dedupe → snapshot → train → targets → targets job → train again → recall before/after.

    `on_targets` sees the first model's targets just before the job runs; `shop` is an unstarted shop to use
    (a test's, to look at its requests), else one of the budget's layout."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    workspace = out / "workspace"
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    with console.status("starting the shop (Fashion-MNIST product pages on 127.0.0.1)"):
        shop = (shop or Shop(budget.layout)).start()
    layout = shop.layout
    try:
        evaluation = out / "evaluation"
        counts = shop.write_evaluation(evaluation)
        console.print(
            f"[green]✓[/] shop at {shop.url} ({len(shop.products)} products; robots.txt disallows /outlet/); "
            f"evaluation split: {sum(counts.values())} images the shop never serves, in {evaluation}"
        )
        step = _Runner(workspace, logs, console, total=15)
        result = LoopResult(workspace=workspace, shop_url=shop.url, scarce=layout.scarce, steps=step.steps)
        step("create the workspace", "harvest", "init", str(workspace), workspace=False)
        scraped = step(
            "scrape the first pages", "harvest", "scrape", shop.url, "--follow", FOLLOW, "--label-from", "css:h1",
            "--depth", str(layout.first_depth), "--allow-private", "--per-host-rate", "0",
        )  # fmt: skip
        console.print(f"    added {scraped.get('added')} images from {scraped.get('pages', {}).get('fetched')} pages")
        step("near-duplicates", "curate", "dedupe", "--apply")
        report_before, run_before = _train(step, "before", budget.epochs)
        result.targets_before = step("what to collect next", "harvest", "targets")["targets"]
        if on_targets is not None:
            on_targets(result.targets_before)
        with (workspace / "gleaner.toml").open("a") as toml:
            toml.write(job_toml(shop.url))
        result.job = step("run the targets job", "harvest", "jobs", "run", JOB_NAME)
        result.targets_after = step("targets after the job", "harvest", "targets", "--all")["targets"]
        step("near-duplicates again", "curate", "dedupe", "--apply")
        report_after, run_after = _train(step, "after", budget.epochs)
        result.recall_before = _recall(step, run_before, evaluation, layout.classes)
        result.recall_after = _recall(step, run_after, evaluation, layout.classes)
        result.reports = {"before": str(run_before / "report.html"), "after": str(run_after / "report.html")}
        chart = plot_recall(result.recall_before, result.recall_after, layout.scarce, out / "recall.png")
        result.reports["recall_chart"] = str(chart)
        del report_before, report_after
    finally:
        result_requests = dict(shop.requests)
        shop.stop()
    result.shop_requests = result_requests
    result.seconds = time.monotonic() - started
    return result
