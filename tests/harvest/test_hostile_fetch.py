"""Hostile servers (issue 16): answers that keep a fetch busy without ever letting one socket read time out.
The item deadline must hold from connect through status line, headers and body."""

from __future__ import annotations

import pytest

from harvest.fetch import Fetcher, FetchPolicy
from tests.support.site import Site, hostile_fetch_routes

pytestmark = pytest.mark.timeout(90)  # before the fix these ran for as long as the server kept talking

DEADLINE = 2.0
POLICY = FetchPolicy(allow_private=True, per_host_rate=0, item_deadline=DEADLINE, read_timeout=30.0)


@pytest.fixture
def hostile(site: Site) -> Site:
    hostile_fetch_routes(site)
    return site


@pytest.mark.parametrize("path", ["/hostile/trickle-headers?delay=0.2", "/hostile/endless-continue"])
@pytest.mark.parametrize("kind", ["image", "page"])
def test_headers_that_never_end_hit_the_item_deadline(hostile: Site, path: str, kind: str) -> None:
    with Fetcher(POLICY) as fetcher:
        result = fetcher.fetch(hostile.url(path), kind=kind)  # type: ignore[arg-type]
    assert not result.ok
    assert result.error_kind == "timeout", (result.error_kind, result.error)
    assert "item deadline" in (result.error or ""), result.error
    assert result.attempts == 1, result  # the deadline is spent: no retry


def test_the_fetcher_works_after_a_cut_off_request(hostile: Site) -> None:
    """The cut connection is not reused: the next fetch from the same thread and host succeeds."""
    with Fetcher(POLICY) as fetcher:
        assert fetcher.fetch(hostile.url("/hostile/trickle-headers"), kind="image").error_kind == "timeout"
        for _ in range(3):
            result = fetcher.fetch(hostile.url("/img/" + hostile.photo_names[0]), kind="image")
            assert result.ok, result.error
            assert result.data == hostile.photo()
