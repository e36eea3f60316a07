"""Collection-job workers as real processes: `harvest jobs run NAME --json` started N times on one workspace.

    workers = start_job_workers(ws, "crawl", 3)      # the first starts the run, the others join it
    documents = finish_job_workers(workers)          # each worker's JSON (asserts exit 0, no traceback)

Each worker runs in its own process group (`start_new_session`), so `kill_job_worker` takes its download and
ingest processes with it, like a pod or a machine that dies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.site import Request, Response, Site

__all__ = ["finish_job_workers", "gated_url_list", "job_config", "kill_job_worker", "start_job_workers"]


def job_config(ws: Path, text: str) -> None:
    """Append `[[jobs]]` tables (TOML text) to the workspace's gleaner.toml."""
    path = ws / "gleaner.toml"
    path.write_text(path.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")


def start_job_workers(
    ws: Path, name: str, count: int = 1, *, env: dict[str, str] | None = None
) -> list[subprocess.Popen[str]]:
    """Start `count` processes of `harvest jobs run NAME --json -w WS`."""
    environment = {**os.environ, **(env or {})}
    environment.pop("GLEANER_WORKSPACE", None)
    return [
        subprocess.Popen(
            [sys.executable, "-m", "harvest", "jobs", "run", name, "--json", "-w", str(ws)],
            cwd=ws.parent,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(count)
    ]


def finish_job_workers(workers: list[subprocess.Popen[str]], timeout: float = 240) -> list[dict[str, Any]]:
    """Wait for the workers; each must exit 0 without a traceback. Their JSON documents, in start order."""
    documents = []
    for worker in workers:
        out, err = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, err
        assert "Traceback" not in err, err
        documents.append(json.loads(out))
    return documents


def kill_job_worker(worker: subprocess.Popen[str]) -> None:
    """SIGKILL the worker and its process group (no clean-up runs), and reap it."""
    os.killpg(worker.pid, signal.SIGKILL)
    worker.communicate(timeout=60)


def gated_url_list(site: Site, path: Path, rows: Sequence[tuple[str, str]], tag: str) -> tuple[threading.Event, str]:
    """Write a URL list (`url,label`) of the site's photos (name, label) to `path`, served from a route of its own
    that holds every response until the returned event is set: several workers then join one run before any
    image arrives, whatever the load on the machine. Returns the event and the route's prefix (the images are
    `{prefix}photo?img=NAME`)."""
    opened = threading.Event()
    prefix = f"/{tag}-gate-{os.getpid()}-{time.monotonic_ns()}/"

    def gated(request: Request) -> Response:
        opened.wait(120)  # a bound, so that a failing test cannot leave server threads behind
        return Response.image(request.site.photo(request.arg("img")))

    site.route(prefix, gated)
    lines = [f"{site.url(f'{prefix}photo?img={name}')},{label}" for name, label in rows]
    path.write_text("url,label\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return opened, prefix
