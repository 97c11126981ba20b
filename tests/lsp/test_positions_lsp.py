"""Where an inline suggestion goes: positions in the client's code units, lines broken where the
client breaks them, and positions an editor racing with edits sends past the end of the text.

The stub provider answers `L{line}C{character}`: the line and the code-point column at which the
server placed the cursor; the item's range is where the editor inserts it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from heedls.server.positions import column_from_units, split_lines
from lsprotocol import types

from tests.lsp.conftest import VSCODE, open_document, until

STUB = "L{line}C{character}"
OPTIONS = {"inline": {"debounceMs": 0}, "gate": {"mode": "off"}}


def _client_with(encoding: types.PositionEncodingKind) -> types.ClientCapabilities:
    return types.ClientCapabilities(text_document=VSCODE.text_document, workspace=VSCODE.workspace,
                                    window=VSCODE.window,
                                    general=types.GeneralClientCapabilities(position_encodings=[encoding]))


async def _ask(client: Any, uri: str, line: int, character: int) -> Any:
    return await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)))


async def _suggest(client: Any, uri: str, line: int, character: int) -> tuple[str, types.Position]:
    [item] = (await _ask(client, uri, line, character)).items
    assert item.range is not None and item.range.start == item.range.end
    return str(item.insert_text), item.range.start


async def test_on_the_empty_line_after_the_final_line_break_the_suggestion_goes_there(lsp, workspace: Path) -> None:
    """Where the cursor is after pressing Enter at the end of a file (it went to the line above)."""
    client = await lsp(workspace, "vscode", stub=STUB, options=OPTIONS)
    uri = open_document(client, workspace / "a.py", "import os\r\nx = os.path\r\n")
    assert await _suggest(client, uri, 2, 0) == ("L2C0", types.Position(2, 0))


async def test_a_position_past_the_text_is_the_end_of_its_line_or_of_the_document(lsp, workspace: Path) -> None:
    client = await lsp(workspace, "neovim", stub=STUB, options=OPTIONS)
    uri = open_document(client, workspace / "a.py", "a = 1\nprint(a)")
    assert await _suggest(client, uri, 0, 99) == ("L0C5", types.Position(0, 5))
    assert await _suggest(client, uri, 9, 3) == ("L1C8", types.Position(1, 8))


async def test_a_form_feed_is_no_line_break_for_the_edits_that_follow_it(lsp, workspace: Path) -> None:
    """PEP 8 allows form feeds; str.splitlines breaks lines at them, the client does not."""
    client = await lsp(workspace, "vscode", stub=STUB, options=OPTIONS)
    uri = open_document(client, workspace / "a.py", "import os\n\x0c\ndef f():\n    return 1\n")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(3, 11), types.Position(3, 12)), text="20")]))
    assert await _suggest(client, uri, 3, 13) == ("L3C13", types.Position(3, 13))  # after `return 20`


async def test_columns_count_the_negotiated_code_units(lsp, workspace: Path) -> None:
    line = 's = "😀é" + os.pa'  # 16 code points, 17 UTF-16 units, 20 UTF-8 bytes
    for encoding, end in ((types.PositionEncodingKind.Utf8, 20), (types.PositionEncodingKind.Utf16, 17),
                          (types.PositionEncodingKind.Utf32, 16)):
        client = await lsp(workspace, _client_with(encoding), stub=STUB, options=OPTIONS)
        uri = open_document(client, workspace / f"{encoding.value}.py", f"import os\n{line}\n")
        assert await _suggest(client, uri, 1, end) == ("L1C16", types.Position(1, end)), encoding
        assert await _suggest(client, uri, 1, end + 40) == ("L1C16", types.Position(1, end)), encoding


async def test_a_position_inside_an_emoji_is_taken_as_just_after_it(lsp, workspace: Path) -> None:
    """Half a surrogate pair is no place for a cursor: the range and the text agree on after it."""
    client = await lsp(workspace, "vscode", stub=STUB, options=OPTIONS)
    uri = open_document(client, workspace / "a.py", 'x = "😀"\n')
    assert await _suggest(client, uri, 0, 6) == ("L0C6", types.Position(0, 7))


async def test_jedi_completes_after_an_emoji_on_the_line(lsp, workspace: Path) -> None:
    """The local provider gets the column in code points (it took UTF-16 units for them)."""
    client = await lsp(workspace, "vscode", stub=None, options=OPTIONS)
    text = 'import os\nx = "😀"; p = os.path.jo'
    uri = open_document(client, workspace / "a.py", text)
    end = len(text.split("\n")[1]) + 1  # + 1: the emoji's second UTF-16 unit
    answers = []
    for _ in range(20):  # jedi's first requests miss the deadline while it loads
        await asyncio.sleep(0.5)
        answers.append(await _ask(client, uri, 1, end))
        if answers[-1].items:
            break
    [item] = answers[-1].items
    assert str(item.insert_text).startswith("in") and item.range.start == types.Position(1, end)


async def test_a_ruff_fix_edits_the_right_characters_in_every_encoding(lsp, workspace: Path) -> None:
    """F541 (an f-string without placeholders) after an emoji: applying the quick fix by the
    negotiated units gives exactly ruff's fix, and the action names the diagnostic as published."""
    (workspace / "pyproject.toml").write_text('[tool.ruff]\nlint.select = ["F"]\n')
    text = 'x = "😀é"; y = f"abc"\n'
    for encoding in (types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16,
                     types.PositionEncodingKind.Utf32):
        client = await lsp(workspace, _client_with(encoding))
        uri = open_document(client, workspace / f"f_{encoding.value}.py", text)
        [diagnostic] = await until(lambda: [d for d in client.diagnostics.get(uri, []) if d.code == "F541"], 15,  # noqa: B023
                                   "the F541 diagnostic")
        actions = await client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), range=diagnostic.range,
            context=types.CodeActionContext(diagnostics=[diagnostic])))
        [action] = [a for a in actions if a.diagnostics and a.diagnostics[0].code == "F541"]
        assert action.diagnostics[0].range == diagnostic.range, encoding
        [edit] = action.edit.changes[uri]
        assert _apply(text, edit, encoding) == 'x = "😀é"; y = "abc"\n', encoding


def _apply(text: str, edit: types.TextEdit, encoding: types.PositionEncodingKind) -> str:
    lines = split_lines(text)

    def offset(position: types.Position) -> int:
        body = lines[position.line].rstrip("\r\n")
        return sum(map(len, lines[: position.line])) + column_from_units(body, position.character, encoding)

    return text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end):]
