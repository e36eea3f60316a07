"""Two collectors and the review app writing one SQLite catalog at once (issue 14, item 3).

A workspace on the embedded default (local store, SQLite catalog) gets, all at the same time: `harvest import`
of one folder of real photos, `harvest urls` of other photos from the fixture site, and the review app
(`curate review`, a real server process) receiving label changes over HTTP the way its page sends them (the
session cookie of the printed link, the CSRF token of the page, one POST /api/action at a time, the next as
soon as one is answered). The page does not retry a failed action (it shows "not saved"), so every answer must
be a success. Afterwards: both collectors exited 0 without "database is locked", every photo is catalogued
once, and each image's label and label history hold every change in the order the app answered them.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import select

from storage.catalog.schema import images, label_events, labels
from storage.workspace import open_workspace
from tests.reliability.ledger import Entry, Ledger, assert_zero_loss
from tests.support.site import Site

BIN = Path(sys.executable).parent
REVIEWED = 20  # photos catalogued first: the review app changes their labels
IMPORTED = 120  # photos `harvest import` adds meanwhile
FETCHED = 60  # photos `harvest urls` adds meanwhile
MIN_CHANGES = 200  # label changes the review app receives at least (more while the collectors still run)
MAX_CHANGES = 3000  # a bound, should the collectors hang
NAMES = ("cat", "dog", "bird")  # each change moves an image to the next name: every POST changes something
LOCKED = "database is locked"


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_") and k != "COLUMNS"}


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / str(args[0])), *map(str, args[1:])], capture_output=True, text=True, env=environment(), timeout=120
    )


def start_cli(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / str(args[0])), *map(str, args[1:])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )


def linked(folder: Path, photos: list[Path]) -> Path:
    folder.mkdir()
    for photo in photos:
        (folder / photo.name).symlink_to(photo)
    return folder


class Reviewer:
    """A browser on the review app: the printed one-time link exchanged for the session cookie, then the page's
    CSRF token on every POST, as review.js sends them."""

    def __init__(self, link: str) -> None:
        self.base = link.split("/?", 1)[0]
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with self.opener.open(link, timeout=60) as page:
            found = re.search(r'"csrf": "([^"]+)"', page.read().decode())
        assert found, "no CSRF token on the review page"
        self.csrf = found.group(1)

    def label(self, sha: str, name: str) -> tuple[int, dict[str, object]]:
        body = json.dumps({"action": "label", "label": name, "shas": [sha]}).encode()
        request = urllib.request.Request(
            f"{self.base}/api/action",
            data=body,
            method="POST",
            headers={"content-type": "application/json", "x-csrf-token": self.csrf},
        )
        try:
            with self.opener.open(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as refused:
            return refused.code, {"error": refused.read().decode(errors="replace")[:500]}
        except OSError as exc:  # no answer at all (refused or reset connection, timeout): a change not saved
            return 0, {"error": repr(exc)}


@dataclass
class Changes:
    """The label changes sent, in the order they were answered (one at a time), and how each was answered."""

    sent: list[tuple[str, str]] = field(default_factory=list)  # (sha256, label) answered 200, in order
    refused: list[tuple[str, str, int, object]] = field(default_factory=list)  # (sha256, label, status, answer)
    contended: int = 0  # sent and answered while a collector was running (writing the catalog)
    contended_ok: int = 0  # of those, the ones answered with success


def send_changes(reviewer: Reviewer, shas: list[str], collectors: list[subprocess.Popen[str]], out: Changes) -> None:
    """Label changes as fast as the app answers, until both collectors ended and MIN_CHANGES were sent."""
    index = 0
    while index < MAX_CHANGES and (index < MIN_CHANGES or any(c.poll() is None for c in collectors)):
        sha = shas[index % len(shas)]
        name = NAMES[(index // len(shas)) % len(NAMES)]
        collecting = any(c.poll() is None for c in collectors)
        status, answer = reviewer.label(sha, name)
        contended = collecting and any(c.poll() is None for c in collectors)
        saved = status == 200 and answer.get("changed") == 1
        if saved:
            out.sent.append((sha, name))
        else:
            out.refused.append((sha, name, status, answer))
        out.contended += contended
        out.contended_ok += contended and saved
        index += 1


def forward(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def start_review(ws: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    process = start_cli("curate", "review", "--no-open", "--port", "0", "-w", ws)
    assert process.stdout is not None and process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    errors: list[str] = []
    threading.Thread(target=forward, args=(process.stdout, lines), daemon=True).start()
    threading.Thread(target=errors.extend, args=(process.stderr,), daemon=True).start()
    try:
        return process, lines.get(timeout=60).strip(), errors
    except queue.Empty:
        process.kill()
        raise AssertionError(f"`curate review` printed no URL: {''.join(errors)}") from None


def test_two_collectors_and_review_label_changes_share_one_sqlite_catalog(
    photo_files: list[Path], photos_dir: Path, tmp_path: Path, ledger: Ledger
) -> None:
    reviewed = photo_files[:REVIEWED]
    imported = photo_files[REVIEWED : REVIEWED + IMPORTED]
    fetched = photo_files[REVIEWED + IMPORTED : REVIEWED + IMPORTED + FETCHED]
    assert len(fetched) == FETCHED, "the shared photos are fewer than this test needs"
    ws = tmp_path / "ws"
    assert run_cli("harvest", "init", ws).returncode == 0
    first = run_cli("harvest", "import", linked(tmp_path / "reviewed", reviewed), "-w", ws, "--json")
    assert first.returncode == 0, first.stderr
    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        shas = sorted(row.sha256 for row in conn.execute(select(images.c.sha256)))
    assert len(shas) == REVIEWED

    review, link, review_errors = start_review(ws)
    changes = Changes()
    collectors: list[subprocess.Popen[str]] = []
    try:
        reviewer = Reviewer(link)
        with Site(photos_dir) as site:
            urls = tmp_path / "urls.csv"
            urls.write_text("url,label\n" + "".join(f"{site.url('/img/' + p.name)},fetched\n" for p in fetched))
            collectors += [
                start_cli("harvest", "import", linked(tmp_path / "imported", imported), "-l", "imported", "--json",
                          "--workers", "2", "-w", ws),
                start_cli("harvest", "urls", urls, "--allow-private", "--per-host-rate", "0", "--workers", "2",
                          "--json", "-w", ws),
            ]  # fmt: skip
            sender = threading.Thread(target=send_changes, args=(reviewer, shas, collectors, changes), daemon=True)
            sender.start()
            outputs = [collector.communicate(timeout=240) for collector in collectors]
            sender.join(timeout=240)
            assert not sender.is_alive(), "the review app stopped answering"
    finally:
        for process in collectors:
            if process.poll() is None:  # a failed assertion above: leave nothing running
                process.kill()
        review.send_signal(signal.SIGINT)
        review_code = review.wait(timeout=30)

    with open_workspace(ws) as workspace, workspace.catalog.read() as conn:
        catalogued = {row.sha256 for row in conn.execute(select(images.c.sha256))}
        current = dict(
            conn.execute(
                select(images.c.sha256, labels.c.name).select_from(
                    images.outerjoin(labels, images.c.label_id == labels.c.id)
                )
            ).all()
        )
        events = conn.execute(
            select(label_events.c.sha256, label_events.c.after)
            .where(label_events.c.origin == "human")
            .order_by(label_events.c.id)
        ).all()
    codes = [collector.returncode for collector in collectors]
    documents = [json.loads(out) if code == 0 else {} for (out, _), code in zip(outputs, codes, strict=True)]
    added = sum(int(document.get("added", 0)) for document in documents)
    lost_images = REVIEWED + IMPORTED + FETCHED - len(catalogued)
    last = {sha: name for sha, name in changes.sent}
    wrong_labels = sum(current.get(sha) != name for sha, name in last.items())
    history_kept = [(row.sha256, row.after) for row in events] == changes.sent
    lost_changes = len(changes.refused) + wrong_labels + (0 if history_kept else 1)
    locked = [err for _, err in outputs if LOCKED in err] + [e for e in review_errors if LOCKED in e]
    clean_collectors = sum(code == 0 and LOCKED not in err for code, (_, err) in zip(codes, outputs, strict=True))
    entry = ledger.record(
        Entry(
            area="concurrency",
            case="two collectors (`harvest import`, `harvest urls`) and label changes in `curate review` on one "
            "SQLite catalog at once",
            faults=changes.contended + len(collectors),
            survived=changes.contended_ok + clean_collectors,
            items_lost=lost_images + lost_changes,
            note=f"3 writing processes; {len(changes.sent) + len(changes.refused)} label changes, "
            f"{changes.contended} of them while the collectors wrote; {added} images collected meanwhile",
        )
    )
    for code, (_, err) in zip(codes, outputs, strict=True):
        assert code == 0 and "Traceback" not in err, err[-3000:]
    assert not locked, locked
    assert not changes.refused, changes.refused[:5]
    assert changes.contended > 0, "no label change overlapped the collectors: the test tested nothing"
    assert added == IMPORTED + FETCHED, documents
    assert history_kept, "the label history does not hold every change in the order the app answered them"
    assert wrong_labels == 0
    assert_zero_loss(entry)
    assert review_code == 0 and "Traceback" not in "".join(review_errors), "".join(review_errors)
