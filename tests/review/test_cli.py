"""`curate review` as people start it: a real process that prints its URL, serves it, and stops on Ctrl-C."""

from __future__ import annotations

import http.cookiejar
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from curate.review.server import bind, is_loopback, open_in_browser
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
    """Issue 16, item 12: `--host 0.0.0.0` only warned, and switched the Host check off."""
    refused = subprocess.run(
        [sys.executable, "-m", "curate.cli", "review", "--no-open", "-w", str(catalogue.root), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "--allow-remote" in refused.stderr and "Traceback" not in refused.stderr
    assert refused.stdout == ""  # no link printed, nothing served
    process, url, errors = start(
        catalogue.root, "--host", "0.0.0.0", "--port", "0", "--allow-remote", "--allow-host", "review.example"
    )
    try:
        assert url.startswith("http://0.0.0.0:")
        port = url.split(":")[2].split("/")[0]
        for host, status in (("rebound.example", 400), ("review.example", 401), ("127.0.0.1", 401)):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": f"{host}:{port}"})
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(request, timeout=10)
            assert answer.value.code == status, host  # still a Host allow-list: DNS rebinding stays refused
    finally:
        stop(process)
    assert "warning" in "".join(errors) and "0.0.0.0" in "".join(errors)


def test_the_browser_gets_a_private_redirect_file_not_the_link(tmp_path: Path) -> None:
    """Issue 16, item 11: the URL with its token was on the browser's command line, visible in `ps`."""
    opened: list[str] = []
    done = threading.Event()

    def browser(address: str) -> None:  # what webbrowser.open would put on the browser's command line
        opened.append(address)
        done.set()

    link = "http://127.0.0.1:8765/?token=secret-one-time-token"
    path = open_in_browser(link, opener=browser)
    try:
        assert done.wait(10)
        assert opened == [path.as_uri()] and "secret" not in opened[0]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert f'url={link}"' in path.read_text()
    finally:
        path.unlink()
        path.parent.rmdir()


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
