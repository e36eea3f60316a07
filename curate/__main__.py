"""`python -m curate`: the `curate` command with the running interpreter (`harvest demo` runs it so)."""

from curate.cli import app

app(prog_name="curate")
