"""The `harvest` command: its console script and `python -m harvest` (the scheduler starts jobs so).

Loading the CLI takes a moment (torch, boto3, SQLAlchemy); Ctrl-C in that moment exits 130 like any interrupted
command, not with Python's traceback of whatever module was being imported. SIGTERM (systemd, Kubernetes, `kill`)
then means what Ctrl-C means: the collectors finish their batch, record the run as interrupted and exit 130
(`harvest watch`, `harvest jobs run` and `harvest schedule` install their own, gentler handlers)."""

from __future__ import annotations

import signal
from types import FrameType


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    try:
        from harvest.cli import app
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    signal.signal(signal.SIGTERM, _terminate)
    app(prog_name="harvest")


if __name__ == "__main__":
    main()
