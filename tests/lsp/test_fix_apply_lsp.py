"""Handing out a validated fix, end to end: only for the text it was searched for (never onto a
document the user edited meanwhile), versioned for clients that check versions, and `heedls.fix`
says whether the editor applied it (refused, or no answer within a bounded wait)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from lsprotocol import converters, types

from tests.lsp.conftest import VSCODE, open_document, plain, until
from tests.support.clamp_bug import BUGGY, TESTS

IMPORTS = "import math\nimport sys\n\n"

# a client that takes versioned `documentChanges` in workspace edits (VS Code does)
VERSIONED = attrs.evolve(VSCODE, workspace=attrs.evolve(
    VSCODE.workspace, workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)))


def _apply(text: str, edits: list[Any]) -> str:
    """`edits` (plain TextEdits, as JSON) applied to `text`, last first."""
    lines = text.splitlines(keepends=True)

    def offset(position: dict[str, int]) -> int:
        return sum(len(x) for x in lines[: position["line"]]) + position["character"]

    for edit in sorted(edits, key=lambda e: offset(e["range"]["start"]), reverse=True):
        text = text[: offset(edit["range"]["start"])] + edit["newText"] + text[offset(edit["range"]["end"]):]
    return text


async def _client(lsp: Any, workspace: Path, capabilities: Any = "vscode", answer: Any = None) -> tuple[Any, str, list[Any]]:
    """A server for the buggy mathx.py and its tests, with mathx.py open; the client answers
    workspace/applyEdit with `answer(params)` (default: applied) and keeps the params it got."""
    module = workspace / "mathx.py"
    module.write_text(BUGGY)
    (workspace / "test_mathx.py").write_text(TESTS)
    client = await lsp(workspace, capabilities, options={"repair": {"budgetS": 40}})
    received: list[Any] = []

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    async def on_apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        received.append(params)
        if answer is not None:
            result: types.ApplyWorkspaceEditResult = await answer(params)
            return result
        return types.ApplyWorkspaceEditResult(applied=True)

    return client, open_document(client, module, BUGGY), received


def _fix(client: Any, uri: str, how: str) -> Any:
    """The fix asked for as the request or as the command behind "Search for a fix" (a task)."""
    params: Any = ({"textDocument": {"uri": uri}} if how == "heedls/fix"
                   else types.ExecuteCommandParams(command="heedls.fix", arguments=[uri, 4]))
    return asyncio.ensure_future(client.protocol.send_request_async(how, params))


def _search_started(client: Any) -> bool:
    return any(token.startswith("heedls-fix-") and reports for token, reports in client.progress_reports.items())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["heedls/fix", "workspace/executeCommand"])
async def test_a_fix_found_for_an_earlier_text_is_not_handed_out_for_the_edited_document(
        lsp: Any, workspace: Path, how: str) -> None:
    """The user types three lines at the top while the search runs: the fix's edit (for lines 4-5
    of the text searched) would have overwritten `if value < low:` with the fixed line."""
    client, uri, received = await _client(lsp, workspace)
    request = _fix(client, uri, how)
    await until(lambda: _search_started(client), 60, "the search to begin")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0)),
            text=IMPORTS)]))
    result = plain(await asyncio.wait_for(request, 90))

    assert received == []  # nothing was sent to be applied to the document as it is now
    assert result["edit"] is None, result
    assert result["fixed"] is True and result["stale"] is True  # a fix was found, for the text as it was
    assert "changed while the fix was being searched" in result["explanation"]
    if how == "workspace/executeCommand":
        assert result["applied"] is False
        await until(lambda: any("changed while the fix" in m.message for m in client.messages), 5, "the message")


@pytest.mark.slow
async def test_a_client_that_checks_versions_gets_the_fix_as_a_change_of_the_document_version_it_was_made_for(
        lsp: Any, workspace: Path) -> None:
    client, uri, received = await _client(lsp, workspace, VERSIONED)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=IMPORTS + BUGGY)]))
    result = plain(await asyncio.wait_for(_fix(client, uri, "workspace/executeCommand"), 90))

    assert len(received) == 1
    sent = plain(converters.get_converter().unstructure(received[0].edit))
    assert "changes" not in sent
    assert result["fixed"] is True and result["applied"] is True, result
    assert result["edit"] == sent  # the command's result carries the same edit
    [change] = sent["documentChanges"]
    assert change["textDocument"] == {"uri": uri, "version": 2}
    fixed = _apply(IMPORTS + BUGGY, change["edits"])
    assert fixed.startswith(IMPORTS + "def clamp(value, low, high):\n") and fixed != IMPORTS + BUGGY


@pytest.mark.slow
async def test_a_fix_the_editor_refuses_is_reported_as_found_but_not_applied(lsp: Any, workspace: Path) -> None:
    async def refuse(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        return types.ApplyWorkspaceEditResult(applied=False, failure_reason="the document is read-only")

    client, uri, received = await _client(lsp, workspace, answer=refuse)
    result = plain(await asyncio.wait_for(_fix(client, uri, "workspace/executeCommand"), 90))

    assert len(received) == 1
    assert result["fixed"] is True and result["applied"] is False, result
    assert result["failure_reason"] == "the document is read-only"
    message = await until(lambda: [m for m in client.messages if m.message.startswith("heedls:")], 5, "the message")
    assert "not applied (the document is read-only)" in message[-1].message
    assert message[-1].type == types.MessageType.Warning


@pytest.mark.slow
async def test_a_fix_command_whose_edit_the_editor_never_answers_ends_after_a_bounded_wait(
        lsp: Any, workspace: Path) -> None:
    never = asyncio.Event()
    sent_at: list[float] = []

    async def hang(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        sent_at.append(time.monotonic())
        await never.wait()
        return types.ApplyWorkspaceEditResult(applied=True)

    client, uri, received = await _client(lsp, workspace, answer=hang)
    try:
        result = plain(await asyncio.wait_for(_fix(client, uri, "workspace/executeCommand"), 90))
        waited = time.monotonic() - sent_at[0]
    finally:
        never.set()

    assert result["fixed"] is True and result["applied"] is None, result  # not confirmed either way
    assert waited < 9, waited  # 5 s for the answer, then the command ends
    message = await until(lambda: [m for m in client.messages if m.message.startswith("heedls:")], 5, "the message")
    assert "did not confirm" in message[-1].message
