"""The `harvest` command: its console script and `python -m harvest` (the scheduler starts jobs so).

Loading the CLI takes a moment (torch, boto3, SQLAlchemy); Ctrl-C in that moment exits 130 like any interrupted
command, not with Python's traceback of whatever module was being imported."""

from __future__ import annotations


def main() -> None:
    try:
        from harvest.cli import app
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    app(prog_name="harvest")


if __name__ == "__main__":
    main()
