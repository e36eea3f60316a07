"""`python -m train`: the `train` command with the running interpreter (`harvest demo` runs it so)."""

from train.cli import app

app(prog_name="train")
