"""Code actions end to end: a failing test → `heedls/fix` → a validated "Fix: … (tests pass)" code
action whose edit makes the test pass; cancelling a running repair stops its worker processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tests.lsp.conftest import open_document, plain, until
from tests.support.clamp_bug import BUGGY, TESTS


def _apply(text: str, edit: types.TextEdit) -> str:
    lines = text.splitlines(keepends=True)
    start = sum(len(x) for x in lines[: edit.range.start.line]) + edit.range.start.character
    end = sum(len(x) for x in lines[: edit.range.end.line]) + edit.range.end.character
    return text[:start] + edit.new_text + text[end:]


def _runner_pids(under: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"heedls_repair_runner.py" in cmd and cwd.startswith(str(under)):
            pids.append(int(entry.name))
    return pids


async def _searched(lsp: Any, workspace: Path) -> tuple[Any, str, list[types.Diagnostic], dict[str, Any]]:
    """A client of a server that showed the failing test of the buggy mathx.py as pytest
    diagnostics after a save and was then asked for a fix: (client, uri, those diagnostics, the
    `heedls/fix` answer)."""
    module = workspace / "mathx.py"
    module.write_text(BUGGY)
    (workspace / "test_mathx.py").write_text(TESTS)
    client = await lsp(workspace, options={"repair": {"budgetS": 40}})
    uri = open_document(client, module, BUGGY)
    # the failing test shows up as pytest diagnostics after a save (the diagnostics feature)
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    failing: list[types.Diagnostic] = await until(
        lambda: [d for d in client.diagnostics.get(uri, []) if "pytest" in (d.source or "")], 90,
        "a pytest diagnostic for the failing test")
    result = plain(await client.protocol.send_request_async("heedls/fix", {"textDocument": {"uri": uri}}))
    return client, uri, failing, result


@pytest.mark.slow
async def test_failing_test_gets_a_validated_fix_code_action(lsp: Any, workspace: Path) -> None:
    client, uri, failing, result = await _searched(lsp, workspace)
    module = workspace / "mathx.py"
    assert result["fixed"] is True, result
    assert "tests pass" in result["explanation"] or "pass" in result["explanation"]
    assert result["patch"].startswith("--- a/mathx.py")
    assert module.read_text() == BUGGY  # nothing is written until the user applies the fix

    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=failing[0].range,
        context=types.CodeActionContext(diagnostics=failing),
    ))
    assert actions
    fix = next(a for a in actions if isinstance(a, types.CodeAction) and a.title.startswith("Fix:"))
    assert fix.title.endswith("(tests pass)")
    assert fix.kind == types.CodeActionKind.QuickFix
    assert fix.diagnostics  # offered on the failing test's diagnostics
    assert fix.edit is not None and fix.edit.changes is not None
    edits = fix.edit.changes[uri]
    fixed = BUGGY
    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        fixed = _apply(fixed, edit)
    assert fixed != BUGGY
    module.write_text(fixed)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mathx.py"],  # noqa: ASYNC221, PLW1510
                         cwd=workspace, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert run.returncode == 0, run.stdout + run.stderr


async def _fixed(lsp: Any, workspace: Path) -> tuple[Any, str, Any]:
    """A client whose server has found (and cached) a fix of mathx.py, and a function that lists
    the titles of the code actions on the failing test's diagnostic."""
    client, uri, failing, result = await _searched(lsp, workspace)
    assert result["fixed"]

    async def titles() -> list[str]:
        actions = await client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), range=failing[0].range,
            context=types.CodeActionContext(diagnostics=failing)))
        return [a.title for a in actions or []]

    assert any(t.startswith("Fix:") and t.endswith("(tests pass)") for t in await titles())
    return client, uri, titles


@pytest.mark.slow
async def test_a_fix_is_no_longer_offered_as_proven_once_its_tests_changed(lsp: Any, workspace: Path) -> None:
    client, uri, titles = await _fixed(lsp, workspace)
    # the user changes what the tests expect: the fix was proven against other tests
    (workspace / "test_mathx.py").write_text(TESTS.replace("== 10", "== 11"))
    now = await titles()
    assert not any(t.startswith("Fix:") for t in now), now
    assert "Search for a fix that makes the tests pass" in now


@pytest.mark.slow
async def test_a_fix_is_no_longer_offered_as_proven_once_another_module_changed(lsp: Any, workspace: Path) -> None:
    client, uri, titles = await _fixed(lsp, workspace)

    def report(name: str, kind: types.FileChangeType) -> None:
        client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
            types.FileEvent(uri=(workspace / name).as_uri(), type=kind)]))

    # the document's own save (the text the fix was searched for) keeps its fix
    report("mathx.py", types.FileChangeType.Changed)
    await asyncio.sleep(1.0)  # the server handles a burst of reports 0.3 s after its last
    assert any(t.startswith("Fix:") for t in await titles())
    # the module under repair may import any other: the editor reports one written on disk
    (workspace / "limits.py").write_text("LOW = 0\n")
    report("limits.py", types.FileChangeType.Created)
    for _ in range(50):
        now = await titles()
        if not any(t.startswith("Fix:") for t in now):
            break
        await asyncio.sleep(0.1)
    assert not any(t.startswith("Fix:") for t in now), now
    assert "Search for a fix that makes the tests pass" in now


@pytest.mark.slow
@pytest.mark.parametrize("how", ["heedls/fix", "workspace/executeCommand"])
async def test_cancelling_a_repair_stops_its_workers(lsp: Any, workspace: Path, tmp_path: Path, how: str) -> None:
    """As the request or as the command behind the "Search for a fix" action (pygls cancelled only
    the command's wrapper: the search ran on, and a fix found later still edited the buffer)."""
    # every candidate takes long and nothing fixes it: the search would run for the whole budget
    module = workspace / "slow.py"
    module.write_text("import time\n\n\ndef answer(x):\n    time.sleep(0.3)\n    return x * 2 + 7\n")
    (workspace / "test_slow.py").write_text(
        "from slow import answer\n\n\ndef test_answer():\n    assert answer(3) == 123456\n")
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    client = await lsp(workspace, options={"repair": {"budgetS": 120}}, env={"TMPDIR": str(server_tmp)})
    uri = open_document(client, module, module.read_text())
    params: Any = ({"textDocument": {"uri": uri}} if how == "heedls/fix"
                   else types.ExecuteCommandParams(command="heedls.fix", arguments=[uri, 4]))
    request = asyncio.ensure_future(client.protocol.send_request_async(how, params, msg_id="fix-1"))
    await until(lambda: _runner_pids(server_tmp), 60, "the repair to start its workers")
    await asyncio.sleep(1.0)
    client.protocol.notify("$/cancelRequest", types.CancelParams(id="fix-1"))
    try:
        await asyncio.wait_for(request, 15)
    except Exception:  # noqa: BLE001, S110
        pass  # a cancelled request answers with an error
    await until(lambda: _runner_pids(server_tmp) == [], 10, "every repair worker to exit")
    await asyncio.sleep(1.0)
    shown = [m.message for m in client.messages]
    assert not [m for m in shown if "candidate" in m or "Fixed" in m], shown  # the search said nothing: it stopped


@pytest.mark.slow
async def test_search_action_runs_the_repair_and_applies_only_a_validated_edit(lsp: Any, workspace: Path) -> None:
    module = workspace / "mathx.py"
    module.write_text(BUGGY)
    (workspace / "test_mathx.py").write_text(TESTS)
    client = await lsp(workspace, options={"repair": {"budgetS": 40}})
    applied: list[types.ApplyWorkspaceEditParams] = []

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def on_apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        applied.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    uri = open_document(client, module, BUGGY)
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    failing: list[types.Diagnostic] = await until(
        lambda: [d for d in client.diagnostics.get(uri, []) if "pytest" in (d.source or "")], 90,
        "a pytest diagnostic for the failing test")
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=failing[0].range,
        context=types.CodeActionContext(diagnostics=failing)))
    # (lsprotocol's client-side converter reads a CodeAction carrying a command as a Command, so
    # look at the title and the command text rather than the structured fields)
    search = [a for a in actions or [] if a.title == "Search for a fix that makes the tests pass"]
    assert len(search) == 1
    assert getattr(search[0], "edit", None) is None  # nothing is proven yet, so no edit is offered
    assert "heedls.fix" in str(search[0].command)
    result = plain(await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="heedls.fix", arguments=[uri, failing[0].range.start.line])))
    assert result["fixed"] is True
    assert len(applied) == 1 and applied[0].edit.changes is not None
    fixed = BUGGY
    for edit in applied[0].edit.changes[uri]:
        fixed = _apply(fixed, edit)
    module.write_text(fixed)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mathx.py"],  # noqa: ASYNC221, PLW1510
                         cwd=workspace, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert run.returncode == 0, run.stdout + run.stderr


async def test_with_repair_turned_off_no_fix_is_searched_for(lsp: Any, workspace: Path) -> None:
    module = workspace / "mathx.py"
    module.write_text(BUGGY)
    (workspace / "test_mathx.py").write_text(TESTS)
    client = await lsp(workspace, options={"repair": {"enabled": False}})
    uri = open_document(client, module, BUGGY)
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    failing: list[types.Diagnostic] = await until(
        lambda: [d for d in client.diagnostics.get(uri, []) if "pytest" in (d.source or "")], 90,
        "a pytest diagnostic for the failing test")  # the tests still run and explain the failure
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=failing[0].range,
        context=types.CodeActionContext(diagnostics=failing)))
    assert not [a for a in actions or [] if "fix" in a.title.lower() and "tests pass" in a.title]
    result = plain(await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="heedls.fix", arguments=[uri, failing[0].range.start.line])))
    assert result["fixed"] is False and "repair is turned off" in result["explanation"]
