"""docs/protocol.md is the written contract: it must say what proto/ does."""

from __future__ import annotations

from pathlib import Path

from proto.commands import SPECS
from proto.messages import MESSAGE_TYPES
from proto.protocol_doc import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_the_protocol_page_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/protocol.md is stale: run `.venv/bin/python -m proto.protocol_doc > docs/protocol.md`")


def test_the_page_names_every_command_and_message_type() -> None:
    text = render()
    for spec in SPECS:
        assert f"#### `{spec.name}`" in text and spec.doc, f"{spec.service}.{spec.name} undocumented"
    for cls in MESSAGE_TYPES:
        assert f"### `{cls.TYPE}`" in text
