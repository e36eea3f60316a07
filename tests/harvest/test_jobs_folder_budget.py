"""A budgeted folder job moves on through its folder run after run (issue 13): the files a run already brought
are passed over before admission (same path, same size, not modified since), so they are not fetched again as
duplicates that use up `max_images`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.harvest.test_import import harvest
from tests.support.jobs import job_config


def test_a_folder_job_with_max_images_takes_the_next_files_on_each_run(ws: Path, photo_files: list[Path]) -> None:
    inbox = ws.parent / "inbox"
    inbox.mkdir()
    for file in photo_files[:9]:
        (inbox / file.name).write_bytes(file.read_bytes())
    job_config(ws, '[[jobs]]\nname = "inbox"\nmax_images = 3\n[[jobs.sources]]\nfolder = "../inbox"\nlabel = "cat"\n')
    runs = []
    for _ in range(4):
        result = harvest("jobs", "run", "inbox", "--json", "-w", ws, cwd=ws.parent)
        assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
        runs.append(json.loads(result.stdout))
    assert [d["added"] for d in runs] == [3, 3, 3, 0], runs
    assert [d["duplicates"] for d in runs] == [0, 0, 0, 0], runs
    assert [d["already_catalogued"] for d in runs] == [0, 3, 6, 9], runs

    rewritten = inbox / photo_files[0].name  # a file rewritten in place is read again
    rewritten.write_bytes(photo_files[9].read_bytes())
    later = time.time() + 5
    os.utime(rewritten, (later, later))
    again = json.loads(harvest("jobs", "run", "inbox", "--json", "-w", ws, cwd=ws.parent).stdout)
    assert (again["added"], again["already_catalogued"]) == (1, 8), again
