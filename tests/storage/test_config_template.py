"""`harvest init` writes a gleaner.toml with every option shown, and it is the README's Configuration block
(issue 15 item 14): what the user reads is what the file holds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from storage.config_template import HEADER, config_text
from storage.settings import load_settings
from storage.workspace import init_workspace

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block() -> str:
    section = README.read_text(encoding="utf-8").split("### Configuration", 1)[1]
    found = re.search(r"```toml\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_init_writes_the_readme_configuration_with_a_final_newline(tmp_path: Path) -> None:
    init_workspace(tmp_path / "ws")[0].close()
    text = (tmp_path / "ws" / "gleaner.toml").read_text(encoding="utf-8")
    assert text == HEADER + "\n" + readme_block()
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert tomllib.loads(text) == {
        "store": {"url": "store"},
        "catalog": {"url": "sqlite:///catalog.db"},
        "ingest": {"min_side": 8},
    }
    assert load_settings(tmp_path / "ws").ingest.workers == 0


def test_options_given_at_init_are_written_uncommented() -> None:
    text = config_text(
        's3://bucket/a "b"', "postgresql://u@db/g", endpoint_url="http://127.0.0.1:8333", addressing_style="virtual"
    )
    assert tomllib.loads(text)["store"] == {
        "url": 's3://bucket/a "b"',
        "endpoint_url": "http://127.0.0.1:8333",
        "addressing_style": "virtual",
    }
    assert '\n# region = "us-east-1"\n' in text and "\n# workers = 0 " in text
