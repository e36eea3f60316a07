"""Fixtures of the web collectors' tests: one fixture site (tests/support/site.py) for the whole session.

The site is shared, so tests that count requests call `site.reset()` first (or use the `fresh_site`
fixture); routes that tests register stay registered, so give them paths of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.workspace import init_workspace
from tests.support.pages import Shop, register_shop
from tests.support.site import Site


@pytest.fixture(scope="session")
def site(photos_dir: Path) -> Iterator[Site]:
    """The fixture site with the real photos, on 127.0.0.1 and a free port."""
    with Site(photos_dir) as running:
        yield running


@pytest.fixture
def fresh_site(site: Site) -> Site:
    """The shared site with its request counts cleared for this test."""
    site.reset()
    return site


@pytest.fixture
def fresh_counts(site: Site) -> None:
    """Request counts from this test only, even on a site shared by several tests (modules that count
    requests in every test use it through `pytestmark`)."""
    site.reset()


@pytest.fixture
def shop(site: Site) -> Shop:
    """The fixture shop's category, gallery and infinite-scroll pages (tests/support/pages.py)."""
    return register_shop(site)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A fresh workspace folder (its catalog created and closed again)."""
    root = tmp_path / "ws"
    init_workspace(root)[0].close()
    return root
