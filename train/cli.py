"""`train`: models from the curated data. Thin commands over the library."""

from __future__ import annotations

import typer
from rich.table import Table

from storage.clikit import JsonOption, emit_json, out_console, user_errors
from train.devices import list_devices

app = typer.Typer(help="Train image classifiers on a Gleaner dataset.", no_args_is_help=True, add_completion=False)


@app.command("devices")
@user_errors
def devices_command(json_output: bool = JsonOption) -> None:
    """List the devices torch can train on here (CPU, CUDA GPUs)."""
    devices = list_devices()
    if json_output:
        emit_json({"devices": devices})
        return
    table = Table(title="Devices")
    for column in ("device", "name", "details"):
        table.add_column(column)
    for device in devices:
        details = ", ".join(f"{k} {v}" for k, v in device.items() if k not in ("device", "name"))
        table.add_row(device["device"], device["name"], details)
    out_console.print(table)


@app.callback()
def main() -> None:
    """Train image classifiers on a Gleaner dataset."""


if __name__ == "__main__":  # pragma: no cover
    app()
