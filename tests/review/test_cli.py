"""`curate review` as people start it: a real process that prints its URL, serves it, and stops on Ctrl-C."""

from __future__ import annotations

import http.cookiejar
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from curate.review.server import bind, is_loopback
from storage.errors import GleanerError
from tests.review.conftest import Catalogue

URL_RE = re.compile(r"^http://(\S+):(\d+)/\?token=([\w-]+)$")


def start(ws: Path, *args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Start `curate review ARGS`; returns the process, the URL line it printed, and its stderr lines so far."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GLEANER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "curate.cli", "review", "--no-open", "-w", str(ws), *args],
        cwd=ws.parent,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    errors: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True).start()  # type: ignore[arg-type]
    try:
        url = lines.get(timeout=60).strip()
    except queue.Empty:
        process.kill()
        raise AssertionError(f"no URL printed; stderr: {''.join(errors)}") from None
    return process, url, errors


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def test_review_prints_a_token_url_and_serves_it(catalogue: Catalogue) -> None:
    process, url, errors = start(catalogue.root, "--port", "0")
    try:
        match = URL_RE.match(url)
        assert match, url
        host, port, _token = match.groups()
        assert host == "127.0.0.1" and int(port) > 0
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        assert refused.value.code == 401
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with browser.open(url, timeout=30) as response:  # token → cookie → redirect to the clean URL
            assert response.status == 200
            assert response.url == f"http://127.0.0.1:{port}/"
            assert response.read().decode().count('class="card ') == 10
    finally:
        code = stop(process)
    assert code == 0, "".join(errors)
    assert "Traceback" not in "".join(errors)


def test_other_hosts_need_the_flag_and_get_a_warning(catalogue: Catalogue) -> None:
    process, url, errors = start(catalogue.root, "--host", "0.0.0.0", "--port", "0")
    try:
        assert url.startswith("http://0.0.0.0:")
    finally:
        stop(process)
    assert "warning" in "".join(errors) and "0.0.0.0" in "".join(errors)


def test_binding() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(GleanerError, match="--port 0"):
            bind("127.0.0.1", port)
        fallback = bind("127.0.0.1", None)  # the default port, or any free one when it is taken
        fallback.close()
    finally:
        taken.close()
