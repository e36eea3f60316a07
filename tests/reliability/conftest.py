"""The reliability suite (issue 14, item 3): faults injected into real commands, with a ledger of figures.

Each test takes the `ledger` fixture and records one `Entry` per fault kind; the session writes them all to
build/reliability/figures-<worker>.json (see tests/reliability/ledger.py) for the README's table.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.reliability.ledger import Ledger

_LEDGER = Ledger()


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    yield _LEDGER


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Each process writes its own entries; under xdist the run id is the one all workers share."""
    workerinput = getattr(session.config, "workerinput", None)
    run = workerinput["testrunuid"] if workerinput else uuid.uuid4().hex
    _LEDGER.write(run, os.environ.get("PYTEST_XDIST_WORKER", "main"))
