"""SIGKILL at seeded random points of every collector, then a rerun (issue 14, item 3; issue 16 item 18).

Each test runs one command as a user runs it (the console script, in its own process group), first once
uninterrupted on a workspace of its own (the reference: how long a run takes, what it catalogues), then ten
times on a second workspace, each run killed with SIGKILL at a seeded point (tests/reliability/kill.py: in the
start-up, in the middle, near the end; the whole process group or the command alone) and each the same command
again, continuing what the killed ones left. After every kill `curate fsck` finds nothing missing or corrupt
(orphan objects are what a crash may leave: stored a moment before their catalog commit) and no process of
the killed group lives on. A final run completes; then every image the source offered is catalogued once,
with one source row per item (nothing lost, nothing doubled), the same images are set aside as
near-duplicates as in the reference run, no run is left "running", `curate fsck` is ok with no orphans, and
no `gleaner-robots-*` folder is left in the commands' temp folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from storage.workspace import init_workspace
from tests.reliability.kill import (
    BIN,
    Progress,
    Span,
    Tally,
    Trial,
    catalogued,
    child_environment,
    kill_points,
    kill_trials,
    measure,
    robots_folders,
    start,
    store_objects,
    tally,
)
from tests.reliability.ledger import Entry, Ledger, assert_zero_loss
from tests.support.pages import register_shop
from tests.support.site import Site

TRIALS = 10
PHOTOS = 30
SETTLE = "0.5"  # harvest watch --settle
DROPPED = 4  # files dropped into the watched folder per trial


@pytest.fixture(scope="module")
def site(photos_dir: Path) -> Iterator[Site]:
    with Site(photos_dir) as running:
        yield running


def new_workspace(root: Path) -> Path:
    init_workspace(root)[0].close()
    return root


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def harvest(*args: str | Path) -> list[str]:
    """The command line of the `harvest` console script."""
    return [str(BIN / "harvest"), *map(str, args)]


def image_hits(site: Site, paths: Sequence[str]) -> Progress:
    """Progress as image requests the site has answered (counted per path: the server threads add to the counter
    while the test reads it)."""
    return lambda: sum(site.hits[path] for path in paths)


def complete(command: Sequence[str], env: dict[str, str]) -> dict[str, object]:
    """The final run: it must finish (exit 0) and print the collectors' JSON."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr
    document: dict[str, object] = json.loads(done.stdout)
    return document


def fsck_cli(ws: Path, env: dict[str, str]) -> dict[str, object]:
    """`curate fsck --json` as a user runs it (exit 0 when ok, 1 when not; never a traceback)."""
    command = [str(BIN / "curate"), "fsck", "--json", "-w", str(ws)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr
    document: dict[str, object] = json.loads(done.stdout)
    return document


def check_and_record(
    ledger: Ledger,
    case: str,
    trials: list[Trial],
    finals: list[Tally],
    expected: Tally | tuple[Counter[str | None], frozenset[str]],
    fsck_documents: list[dict[str, object]],
    tmpdir: Path,
) -> None:
    """The ledger row for one command, then what it promises, then the rest of what the kills must not leave.
    `finals`: each workspace's tally after its last run; `expected`: the reference run's tally (its labels
    and the near-duplicates it set aside are every workspace's too), or those two figures themselves."""
    leftovers = robots_folders(tmpdir)
    killed = [trial for trial in trials if trial.kill.killed]
    whole = (  # what the reruns must have repaired, whichever kill left it
        all(document["ok"] and not document["orphans"] for document in fsck_documents)
        and not any(final.running for final in finals)
        and not leftovers
    )
    entry = ledger.record(
        Entry(
            area="kill",
            case=case,
            faults=len(killed),
            survived=sum(trial.consistent for trial in killed) if whole else 0,
            items_lost=sum(final.lost for final in finals),
            items_doubled=sum(final.doubled for final in finals),
            note=f"{sum(not t.kill.group for t in killed)} of the kills took the command's own process only "
            f"(its workers left by themselves); {len(finals)} workspace(s) taken to their end",
        )
    )
    details = "\n".join(map(str, trials))
    assert_zero_loss(entry)
    assert len(killed) == TRIALS, details
    for document in fsck_documents:
        assert document["ok"] is True and document["orphans"] == [], document  # the reruns recorded them
    labels, set_aside = (expected.labels, expected.set_aside) if isinstance(expected, Tally) else expected
    for final in finals:
        assert final.running == [], final  # every killed run was marked interrupted by the next one
        assert final.set_aside == set_aside, (final, expected)  # the near-duplicates the reference set aside
        assert final.labels == labels, (final, expected)
    assert leftovers == [], leftovers  # the robots.txt folders of killed download pools


def finish(
    command: Callable[[Path], list[str]],
    env: dict[str, str],
    workspaces: list[Path],
    offered: dict[str, str],
    kind: str,
) -> tuple[list[Tally], list[dict[str, object]]]:
    """Run the command to its end on the last workspace (the others were completed by a run that ended), then
    each workspace's tally and `curate fsck --json`."""
    complete(command(workspaces[-1]), env)
    return [tally(ws, offered, kind) for ws in workspaces], [fsck_cli(ws, env) for ws in workspaces]


def test_sigkill_during_harvest_import(
    ledger: Ledger, photo_files: list[Path], near_duplicates_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in [*photo_files[:PHOTOS], *sorted((near_duplicates_dir / "mixed_images").iterdir())]:
        shutil.copy(photo, folder / photo.name)
    offered = {str(path): sha256(path.read_bytes()) for path in sorted(folder.iterdir()) if "corrupt" not in path.name}
    env = child_environment(tmp_path / "tmp")

    def command(ws: Path) -> list[str]:
        return harvest("import", folder, "--label", "photo", "--json", "-w", ws)

    ref = new_workspace(tmp_path / "ref")
    span = measure(command(ref), env, store_objects(ref / "store"))
    reference = tally(ref, offered, "file")
    assert reference.lost == reference.doubled == 0 and reference.set_aside, reference  # near-duplicates set aside

    fresh = lambda n: new_workspace(tmp_path / f"ws{n}")  # noqa: E731
    left = share_left(len(offered))
    trials, workspaces = kill_trials(command, env, kill_points(14_1), span, fresh, kills=TRIALS, left=left)
    finals, documents = finish(command, env, workspaces, offered, "file")
    case = f"SIGKILL at a random point of `harvest import` ({TRIALS} seeded trials), rerun"
    check_and_record(ledger, case, trials, finals, reference, documents, tmp_path / "tmp")


def share_left(total: int) -> Callable[[Path], float]:
    """The share of the images a run still has to do: those not yet catalogued (a killed run's uncommitted
    ones are read or fetched again)."""
    return lambda ws: 1 - catalogued(ws)() / total


def test_sigkill_during_harvest_urls(ledger: Ledger, site: Site, tmp_path: Path) -> None:
    names = site.photo_names[100 : 100 + PHOTOS]
    listing = tmp_path / "list.csv"
    listing.write_text("url,label\n" + "".join(f"{site.url(f'/img/{n}')},photo\n" for n in names), encoding="utf-8")
    offered = {site.url(f"/img/{name}"): sha256(site.photo(name)) for name in names}
    hits = image_hits(site, [f"/img/{name}" for name in names])
    env = child_environment(tmp_path / "tmp")

    def command(ws: Path) -> list[str]:
        return harvest("urls", listing, "--allow-private", "--per-host-rate", "0", "--json", "-w", ws)

    ref = new_workspace(tmp_path / "ref")
    site.reset()
    span = measure(command(ref), env, hits)
    reference = tally(ref, offered, "url")
    assert reference.lost == reference.doubled == 0, reference

    site.reset()
    fresh = lambda n: new_workspace(tmp_path / f"ws{n}")  # noqa: E731
    left = share_left(PHOTOS)
    trials, workspaces = kill_trials(command, env, kill_points(14_2), span, fresh, kills=TRIALS, left=left)
    finals, documents = finish(command, env, workspaces, offered, "url")
    case = f"SIGKILL at a random point of `harvest urls` ({TRIALS} seeded trials), rerun"
    check_and_record(ledger, case, trials, finals, reference, documents, tmp_path / "tmp")


def test_sigkill_during_harvest_scrape(ledger: Ledger, site: Site, tmp_path: Path) -> None:
    shop = register_shop(site)  # /shop/all: five pages of eight photos, one "Next" link to the following page
    offered = {site.url(f"/img/{name}"): sha256(site.photo(name)) for name in shop.all_expected}
    hits = image_hits(site, [f"/img/{name}" for name in shop.all_expected])
    env = child_environment(tmp_path / "tmp")

    def command(ws: Path) -> list[str]:
        return harvest(
            "scrape", site.url("/shop/all?page=1"), "--follow", "li.next a", "--label-from", "css:h1.category",
            "--allow-private", "--per-host-rate", "0", "--json", "-w", ws,
        )  # fmt: skip

    ref = new_workspace(tmp_path / "ref")
    site.reset()
    span = measure(command(ref), env, hits)
    reference = tally(ref, offered, "scrape")
    assert reference.lost == reference.doubled == 0 and set(reference.labels) == {"Everything"}, reference

    site.reset()
    fresh = lambda n: new_workspace(tmp_path / f"ws{n}")  # noqa: E731
    left = share_left(len(offered))
    trials, workspaces = kill_trials(command, env, kill_points(14_3), span, fresh, kills=TRIALS, left=left)
    finals, documents = finish(command, env, workspaces, offered, "scrape")
    case = f"SIGKILL at a random point of `harvest scrape` ({TRIALS} seeded trials), rerun"
    check_and_record(ledger, case, trials, finals, reference, documents, tmp_path / "tmp")


def job_workspace(root: Path, listing: Path) -> Path:
    """A workspace with a collection job of the README's kind: one urls source against the test site."""
    new_workspace(root)
    config = root / "gleaner.toml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + f'\n[[jobs]]\nname = "restock"\n\n[[jobs.sources]]\nurls = "{listing}"\nallow_private = true\n'
        "per_host_rate = 0\n",
        encoding="utf-8",
    )
    return root


def test_sigkill_during_harvest_jobs_run(ledger: Ledger, site: Site, tmp_path: Path) -> None:
    names = site.photo_names[150 : 150 + PHOTOS]
    listing = tmp_path / "restock.csv"
    listing.write_text("url,label\n" + "".join(f"{site.url(f'/img/{n}')},stock\n" for n in names), encoding="utf-8")
    offered = {site.url(f"/img/{name}"): sha256(site.photo(name)) for name in names}
    hits = image_hits(site, [f"/img/{name}" for name in names])
    env = child_environment(tmp_path / "tmp")

    def command(ws: Path) -> list[str]:
        return harvest("jobs", "run", "restock", "--json", "-w", ws)

    ref = job_workspace(tmp_path / "ref", listing)
    site.reset()
    span = measure(command(ref), env, hits)
    reference = tally(ref, offered, "url")
    assert reference.lost == reference.doubled == 0 and json.loads(span.stdout)["status"] == "done", reference

    site.reset()
    fresh = lambda n: job_workspace(tmp_path / f"ws{n}", listing)  # noqa: E731
    left = share_left(PHOTOS)
    trials, workspaces = kill_trials(command, env, kill_points(14_4), span, fresh, kills=TRIALS, left=left)
    finals, documents = finish(command, env, workspaces, offered, "url")
    case = f"SIGKILL at a random point of `harvest jobs run` ({TRIALS} seeded trials), rerun"
    check_and_record(ledger, case, trials, finals, reference, documents, tmp_path / "tmp")


class Dropper:
    """Photos dropped into the watched folder a few at a time, each written whole (a copy, then a rename)."""

    def __init__(self, photos: list[Path], inbox: Path) -> None:
        self.photos, self.inbox = list(photos), inbox
        self.dropped: dict[str, str] = {}
        self.inbox.mkdir(parents=True, exist_ok=True)

    def __call__(self, count: int = DROPPED) -> None:
        for photo in self.photos[len(self.dropped) : len(self.dropped) + count]:
            data = photo.read_bytes()
            target = self.inbox / photo.name
            partial = self.inbox / f".{photo.name}.part"
            partial.write_bytes(data)
            partial.rename(target)
            self.dropped[str(target)] = sha256(data)


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


def stop_watcher(process: subprocess.Popen[str]) -> dict[str, object]:
    """Ctrl-C: the watcher finishes what it holds and prints its summary (exit 0)."""
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "Traceback" not in err, err
    document: dict[str, object] = json.loads(out)
    return document


def test_sigkill_during_harvest_watch(ledger: Ledger, photo_files: list[Path], tmp_path: Path) -> None:
    env = child_environment(tmp_path / "tmp")
    ref = new_workspace(tmp_path / "ref")
    options = ["--label", "inbox", "--settle", SETTLE, "--rescan-every", "1", "--json"]
    # The reference: a watcher that takes one drop of files, from its start to the last one stored.
    reference_drop = Dropper(photo_files[200 : 200 + DROPPED], tmp_path / "ref-inbox")
    began = time.monotonic()
    watcher = start(harvest("watch", reference_drop.inbox, *options, "-w", ref), env)
    reference_drop()
    until(lambda: store_objects(ref / "store")() == DROPPED, 60, "the reference watcher to store its files")
    span = time.monotonic() - began
    stop_watcher(watcher)
    reference = tally(ref, reference_drop.dropped, "watch")
    assert reference.lost == reference.doubled == 0, reference

    # Files keep arriving: each trial's watcher is killed at a seeded moment of the span a drop takes, with
    # its drop in whatever state it left it; the next watcher finds them in its first scan.
    drop = Dropper(photo_files[: (TRIALS + 1) * DROPPED], tmp_path / "inbox")

    def command(ws: Path) -> list[str]:
        return harvest("watch", drop.inbox, *options, "-w", ws)

    fresh = lambda n: new_workspace(tmp_path / f"ws{n}")  # noqa: E731
    whole = Span(startup=0.0, seconds=span, stdout="")  # each watcher has a whole drop to take: the moments
    points = kill_points(14_5)  # cover the reference's span, from its start to its last file stored
    trials, workspaces = kill_trials(command, env, points, whole, fresh, kills=TRIALS, on_start=drop)
    assert len(workspaces) == 1  # a watcher only ends when it is stopped
    ws = workspaces[0]
    watcher = start(command(ws), env)
    drop()
    until(lambda: store_objects(ws / "store")() >= len(drop.dropped), 120, "the last watcher to store every file")
    until(lambda: tally(ws, drop.dropped, "watch").lost == 0, 60, "the last watcher to catalogue every file")
    stop_watcher(watcher)
    final = tally(ws, drop.dropped, "watch")
    assert len(drop.dropped) == (TRIALS + 1) * DROPPED
    case = f"SIGKILL at a random point of `harvest watch` while files arrive ({TRIALS} seeded trials), restart"
    labels: Counter[str | None] = Counter({"inbox": len(drop.dropped)})
    set_aside = frozenset[str]()  # as the reference had them
    assert reference.labels == Counter({"inbox": DROPPED}) and reference.set_aside == set_aside, reference
    check_and_record(ledger, case, trials, [final], (labels, set_aside), [fsck_cli(ws, env)], tmp_path / "tmp")
