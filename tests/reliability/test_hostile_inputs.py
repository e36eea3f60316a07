"""Hostile inputs through every collector (issue 14 item 3; issue 16's acceptance): the real CLI, as a
subprocess, over the whole hostile corpus and the hostile routes mixed with good real photos.

- `harvest import` of a folder holding the hostile file corpus (decompression bombs: a 3.6-gigapixel PNG, a
  10-gigapixel TIFF, a 38-byte WebP that decodes to 324 MB, GIFs of 300 frames on a 9000-px canvas and of
  10,000 frames, a progressive JPEG of 2,000 scans; truncated files; polyglots; text, HTML and SVG under image
  names; a FIFO; a dangling link) and good photos;
- `harvest urls` of a list whose URLs serve every hostile file, a gzip bomb, an endless body, a Content-Length
  that lies both ways, a redirect loop, headers and a body dripped for ever (slow-loris), 429 with
  Retry-After: 999999, an image that a 50 MB robots.txt disallows, and good images (some on that origin);
- `harvest scrape` of a page holding all of those as images, and links to malformed, binary and deeply nested
  pages (300 levels, closed again; 100,000 never closed: each with one good image that must be found), pages
  over the page limit, a gzip-bomb page, a redirect loop and a slow-loris page;
- `harvest watch` with the corpus dropped into the watched folder while it runs, then SIGTERM;
- `harvest jobs run` of a `[[jobs]]` urls source with the hostile list.

For each: the run exits 0 by itself within its bound, every good image is catalogued once, every hostile item is
exactly one problem entry whose reason says what it was, nothing else is a problem, stderr holds no traceback,
and the collector's process tree (the command and its WORKERS workers) stays under PEAK_RSS_LIMIT_MB, each of
its processes under PROCESS_RSS_LIMIT_MB (a bomb decoded in a worker would pass it by hundreds of MB). The peak
is read from each process's own VmHWM in /proc while it runs (wait4's ru_maxrss would carry pytest's RSS across
exec), summed over the tree: an upper bound of the tree's peak, as pages shared by the workers count in each.

The slow-loris items end at the item deadline, set to ITEM_TIMEOUT_S here (`--item-timeout`; 60 s by default), so
the web collectors cannot finish sooner than that: all five collectors are started together by one module fixture,
and each test waits for its own and checks it, so the module takes about as long as its slowest collector.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.workspace import init_workspace, open_workspace
from tests.reliability.hostile_site import GOOD_PHOTOS, ITEM_TIMEOUT_S, HostileWorld, make_corpus
from tests.reliability.ledger import Entry, Ledger, assert_zero_loss
from tests.support.jobs import job_config

pytestmark = pytest.mark.timeout(400)

PEAK_RSS_LIMIT_MB = 700  # a collector and all its processes together (sum of their peaks; measured 280-520)
PROCESS_RSS_LIMIT_MB = 250  # any one of them (measured 60-130: a worker holds a body of up to 50 MB)
WORKERS = 2  # worker processes per collector (GLEANER_WORKERS), so that the peak does not grow with the cores
LOCAL_BOUND_S = 120  # `harvest import` and `harvest watch` of the corpus end within this (about 10 s alone)
WEB_BOUND_S = 200  # urls, scrape, jobs run: the slow-loris items take the item deadline, then the run ends
HARVEST = Path(sys.executable).parent / "harvest"
WEB_OPTIONS = ("--allow-private", "--per-host-rate", "0", "--item-timeout", str(ITEM_TIMEOUT_S))  # loopback sites
COLLECTORS = ("import", "urls", "scrape", "watch", "jobs")


class TreePeak(threading.Thread):
    """Polls the VmHWM (peak resident set) of a process and of every descendant it has, until it ends."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = pid
        self.peaks_kb: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for pid in self._tree():
                kb = _vmhwm_kb(pid)
                if kb is not None:
                    self.peaks_kb[pid] = max(self.peaks_kb.get(pid, 0), kb)
            self.done.wait(0.05)

    def _tree(self) -> list[int]:
        found, queue = [], [self.root]
        while queue:
            pid = queue.pop()
            found.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as children:
                        queue.extend(int(child) for child in children.read().split())
            except OSError:  # gone meanwhile
                continue
        return found

    @property
    def mb(self) -> float:
        return sum(self.peaks_kb.values()) / 1024


def _vmhwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), None)
    except OSError:
        return None


@dataclass
class Launched:
    """One collector started by the module fixture, and what the test needs to judge it."""

    name: str
    command: list[str]
    ws: Path
    folder: Path
    bound_s: float
    hostile: dict[str, str]  # problem item → substring its reason must hold
    good: dict[str, bytes]  # good item → its bytes
    process: subprocess.Popen[bytes] | None = None
    peak: TreePeak | None = None
    started: float = 0.0
    extra_faults: dict[str, str] = field(default_factory=dict)  # hostile items that must be no problem at all

    def start(self) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_")}
        environment["GLEANER_WORKERS"] = str(WORKERS)
        with open(self.folder / "stdout", "wb") as out, open(self.folder / "stderr", "wb") as err:
            self.process = subprocess.Popen(self.command, cwd=self.folder, env=environment, stdout=out, stderr=err)
        self.started = time.monotonic()
        self.peak = TreePeak(self.process.pid)
        self.peak.start()

    def stderr(self) -> str:
        return (self.folder / "stderr").read_text(errors="replace")

    def wait(self) -> tuple[int, float]:
        """The exit status and seconds taken; the process is killed (and the test fails) past its bound."""
        assert self.process is not None and self.peak is not None
        try:
            code = self.process.wait(timeout=max(1.0, self.started + self.bound_s - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"`harvest {self.name}` still running after {self.bound_s:g} s:\n{self.stderr()[-3000:]}")
        finally:
            self.peak.done.set()
            self.peak.join()
        return code, time.monotonic() - self.started


def _ws(root: Path) -> Path:
    init_workspace(root)[0].close()
    return root


def _good_photos(photos: list[Path], folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    good = {}
    for photo in photos:
        target = folder / photo.name
        target.write_bytes(photo.read_bytes())
        good[str(target)] = target.read_bytes()
    return good


@pytest.fixture(scope="module")
def world(photo_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileWorld]:
    running = HostileWorld.start(photo_files, tmp_path_factory.mktemp("served"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def launched(
    request: pytest.FixtureRequest,
    world: HostileWorld,
    photo_files: list[Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Launched]]:
    """Every collector whose test was selected, started at once (see the module docstring)."""
    wanted = {name for name in COLLECTORS if any(f"test_hostile_{name}" in item.name for item in request.session.items)}
    photos = photo_files[-3 * GOOD_PHOTOS :]  # not the ones the sites serve, which come from the front
    runs: dict[str, Launched] = {}
    if "import" in wanted:
        folder = tmp_path_factory.mktemp("import")
        corpus = folder / "in"
        reasons = make_corpus(corpus, photo_files[0])
        good = _good_photos(photos[:GOOD_PHOTOS], corpus)
        runs["import"] = Launched(
            "import", [str(HARVEST), "import", str(corpus), "--json", "-w", str(_ws(folder / "ws"))],
            folder / "ws", folder, LOCAL_BOUND_S, {str(corpus / n): r for n, r in reasons.items()}, good,
        )  # fmt: skip
    url_offer = world.url_list()
    for name in ("urls", "jobs"):
        if name not in wanted:
            continue
        folder = tmp_path_factory.mktemp(name)
        ws = _ws(folder / "ws")
        (ws / "hostile.txt").write_text("\n".join(url_offer.urls) + "\n")
        if name == "urls":
            command = [str(HARVEST), "urls", str(ws / "hostile.txt"), *WEB_OPTIONS, "--json", "-w", str(ws)]
        else:
            job_config(ws, '[[jobs]]\nname = "hostile"\n\n[[jobs.sources]]\nurls = "hostile.txt"\n'
                           f"allow_private = true\nper_host_rate = 0\nitem_timeout = {ITEM_TIMEOUT_S}\n")  # fmt: skip
            command = [str(HARVEST), "jobs", "run", "hostile", "--json", "-w", str(ws)]
        runs[name] = Launched(name, command, ws, folder, WEB_BOUND_S, url_offer.hostile, url_offer.good)
    if "scrape" in wanted:
        folder = tmp_path_factory.mktemp("scrape")
        ws = _ws(folder / "ws")
        site = world.scrape_site()
        command = [str(HARVEST), "scrape", world.scrape_seed, "--follow", "a", "--depth", "1", *WEB_OPTIONS,
                   "--json", "-w", str(ws)]  # fmt: skip
        runs["scrape"] = Launched("scrape", command, ws, folder, WEB_BOUND_S, site.hostile, site.good)
        runs["scrape"].extra_faults = site.survivors
    if "watch" in wanted:
        folder = tmp_path_factory.mktemp("watch")
        watched = folder / "watched"
        watched.mkdir()
        command = [str(HARVEST), "watch", str(watched), "--settle", "0.5", "--json", "-w", str(_ws(folder / "ws"))]
        runs["watch"] = Launched("watch", command, folder / "ws", folder, LOCAL_BOUND_S, {}, {})
    for run in runs.values():
        run.start()
    if "watch" in runs:  # dropped in once the watcher is up: files arriving, not files already there
        watch = runs["watch"]
        _wait_for(lambda: "watching" in watch.stderr(), watch, what="the watch to start")
        watched = watch.folder / "watched"
        watch.good = _good_photos(photos[GOOD_PHOTOS : 2 * GOOD_PHOTOS], watched)
        watch.hostile = {str(watched / n): r for n, r in make_corpus(watched, photo_files[0]).items()}
    try:
        yield runs
    finally:
        for run in runs.values():
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
                run.process.wait()


def _wait_for(condition: Callable[[], bool], run: Launched, *, what: str | Callable[[], str]) -> None:
    deadline = run.started + run.bound_s
    while not condition():
        assert run.process is not None
        ended = run.process.poll() is not None
        if ended or time.monotonic() > deadline:
            said = what() if callable(what) else what
            why = "ended while waiting for" if ended else f"not within {run.bound_s:g} s:"
            pytest.fail(f"`harvest {run.name}` {why} {said}\n{run.stderr()[-3000:]}")
        time.sleep(0.1)


def _catalogued(ws: Path) -> tuple[set[str], Counter[str]]:
    """The catalog's image sha256s, and how many source rows each has."""
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        shas = set(conn.execute(sa.text("SELECT sha256 FROM images")).scalars())
        sources = Counter(str(sha) for sha in conn.execute(sa.text("SELECT sha256 FROM sources")).scalars())
    return shas, sources


def judge(run: Launched, ledger: Ledger, case: str) -> None:
    """Record the collector's figures in the ledger, then check everything the module docstring promises."""
    code, seconds = run.wait()
    stderr = run.stderr()
    stdout = (run.folder / "stdout").read_text()
    assert code == 0, f"exit {code}:\n{stderr[-3000:]}"
    document = json.loads(stdout)
    problems = Counter(problem["item"] for problem in document["problems"])
    reasons = {problem["item"]: problem["reason"] for problem in document["problems"]}
    one_clear_entry = [
        item for item, want in run.hostile.items() if problems[item] == 1 and want in reasons[item] and reasons[item]
    ]
    shas, sources = _catalogued(run.ws)
    good_shas = {hashlib.sha256(data).hexdigest() for data in run.good.values()}
    survived_pages = [page for page in run.extra_faults if page not in problems]  # parsed, no problem entry
    assert run.peak is not None
    entry = ledger.record(
        Entry(
            area="hostile",
            case=case,
            faults=len(run.hostile) + len(run.extra_faults),
            survived=len(one_clear_entry) + len(survived_pages),
            items_lost=len(good_shas - shas),
            items_doubled=sum(sources[sha] > 1 for sha in good_shas),
            peak_rss_mb=round(run.peak.mb, 1),
            note=f"limit {PEAK_RSS_LIMIT_MB} MiB (command + workers, sum of VmHWM), {PROCESS_RSS_LIMIT_MB} MiB a "
            f"process; {seconds:.0f} s, bound {run.bound_s:g} s",
        )
    )
    missing = {item: (problems[item], reasons.get(item), want) for item, want in run.hostile.items()
               if item not in one_clear_entry}  # fmt: skip
    assert not missing, f"hostile items without exactly one clear problem entry: {missing}"
    assert_zero_loss(entry)
    unexpected = {item: reasons[item] for item in problems if item not in run.hostile}
    assert not unexpected, f"problems for items that are not hostile: {unexpected}"
    assert "Traceback" not in stderr, stderr[-3000:]
    assert run.peak.mb < PEAK_RSS_LIMIT_MB, f"peak RSS {run.peak.mb:.0f} MiB, by process (KiB): {run.peak.peaks_kb}"
    biggest = max(run.peak.peaks_kb.values()) / 1024
    assert biggest < PROCESS_RSS_LIMIT_MB, f"one process peaked at {biggest:.0f} MiB: {run.peak.peaks_kb}"


def _corpus_case(run: Launched, command: str) -> str:
    return (
        f"hostile corpus ({len(run.hostile)} files: bombs PNG/TIFF/WebP/GIF of 10,000 frames/2,000-scan JPEG, "
        f"truncated, polyglots, text and markup, a FIFO, a dangling link) among {len(run.good)} photos through "
        f"{command}"
    )


def test_hostile_import(launched: dict[str, Launched], ledger: Ledger) -> None:
    run = launched["import"]
    judge(run, ledger, _corpus_case(run, "`harvest import`"))


def test_hostile_watch(launched: dict[str, Launched], ledger: Ledger) -> None:
    """Every dropped file gets its line on stderr (taken or refused, the FIFO and the dangling link too), then
    SIGTERM ends the watch with the summary."""
    run = launched["watch"]
    expected = set(run.hostile) | set(run.good)

    def unseen() -> set[str]:
        lines = run.stderr().splitlines()
        return expected - {line.split(" ", 1)[1] for line in lines if line.startswith(("added ", "rejected "))}

    _wait_for(lambda: not unseen(), run, what=lambda: f"a line for each of {sorted(unseen())}")
    assert run.process is not None
    run.process.send_signal(signal.SIGTERM)
    judge(run, ledger, _corpus_case(run, "`harvest watch` (dropped in while it runs)"))


def _web_case(run: Launched, command: str) -> str:
    return (
        f"{len(run.hostile)} hostile URLs (every corpus file; gzip bomb, endless body, lying Content-Length both "
        f"ways, redirect loop, slow-loris headers and body, 429 + Retry-After: 999999, a 50 MB robots.txt) among "
        f"{len(run.good)} good images through {command}"
    )


def test_hostile_urls(launched: dict[str, Launched], ledger: Ledger) -> None:
    run = launched["urls"]
    judge(run, ledger, _web_case(run, "`harvest urls`"))


def test_hostile_jobs(launched: dict[str, Launched], ledger: Ledger) -> None:
    run = launched["jobs"]
    judge(run, ledger, _web_case(run, "`harvest jobs run` (a urls source)"))


def test_hostile_scrape(launched: dict[str, Launched], ledger: Ledger) -> None:
    run = launched["scrape"]
    judge(
        run,
        ledger,
        f"a page of {len(run.hostile) - 5} hostile images, links to 5 hostile pages (over the page limit, gzip "
        f"bomb, redirect loop, slow-loris) and to {len(run.extra_faults)} malformed, binary and deeply nested pages "
        f"whose images must be found, {len(run.good)} good images, through `harvest scrape`",
    )
