"""`python -m harvest`: the `harvest` command with the running interpreter (the scheduler starts jobs so)."""

from harvest.cli import app

app(prog_name="harvest")
