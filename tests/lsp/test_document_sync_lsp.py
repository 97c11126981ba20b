"""Incremental didChange over the real server: an edit at a position past the end of a line lands
at the end of that line, as in the editor, so later results are computed on the editor's text.

The stub provider answers `L{line}C{character}`: asked past the end of a line, the server places
the cursor at the end of that line of its own copy, which shows the copy's line lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tests.lsp.conftest import open_document

OPTIONS = {"inline": {"debounceMs": 0}, "gate": {"mode": "off"}}


async def _cursor(client: Any, uri: str, line: int, character: int) -> str:
    """Where the server puts the cursor asked for at (line, character): `L{line}C{column}`."""
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)))
    [item] = result.items
    return str(item.insert_text)


@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
async def test_an_insert_past_the_end_of_a_line_goes_at_the_end_of_that_line(lsp: Any, workspace: Path, eol: str) -> None:
    client = await lsp(workspace, "vscode", stub="L{line}C{character}", options=OPTIONS)
    uri = open_document(client, workspace / "a.py", f"a = 1{eol}b = 2{eol}")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(0, 6), types.Position(0, 6)), text=" if 1 else 2")]))
    # the editor's text: `a = 1 if 1 else 2` (17 characters), then `b = 2`
    assert await _cursor(client, uri, 0, 99) == "L0C17"
    assert await _cursor(client, uri, 1, 99) == "L1C5"
