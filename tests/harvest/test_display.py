"""Untrusted text (file names, URLs, reasons, labels) is shown as text, never as rich markup or terminal codes
(issue 16 item 7). Through the real commands, without --json."""

from __future__ import annotations

from pathlib import Path

from tests.harvest.test_import import harvest


def test_markup_and_control_codes_in_names_and_urls_are_shown_as_text(tmp_path: Path, ws: Path) -> None:
    folder = tmp_path / "odd"
    (folder / "x[").mkdir(parents=True)  # the path holds ".../x[/bold]...": a closing tag with nothing open
    (folder / "x[" / "bold]\x1b[2J\x1b]0;pwned\x07\x9b.jpg").write_bytes(b"not an image")
    (folder / "[link=https:x]y.jpg").write_bytes(b"not an image")
    result = harvest("import", folder, "-w", ws, cwd=ws.parent)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    shown = result.stdout + result.stderr
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown, repr(shown)
    assert "x[/bold]" in shown and "[link=https:x]" in shown, shown

    listing = tmp_path / "list.txt"
    listing.write_text("http://127.0.0.1:9/[/bold][red]x.jpg\n")
    fetched = harvest("urls", listing, "--allow-private", "-w", ws, cwd=ws.parent)
    assert "Traceback" not in fetched.stderr and "MarkupError" not in fetched.stderr, fetched.stderr
    assert fetched.code == 0 and "[/bold][red]x.jpg" in fetched.stdout, fetched.stdout
