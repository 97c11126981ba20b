"""Requests the server sends to the client and then gives up on (no answer in time, or their
caller stopped) leave nothing behind in the protocol's bookkeeping, and a late answer to one is
dropped quietly: an editor that never answers a fix's `workspace/applyEdit` must not make the
server hold each one for the rest of the session."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from heedls.server.features import code_actions
from lsprotocol import types

from tests.support.in_process_server import InProcessServer, Outbox


def _started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[InProcessServer, Outbox]:
    harness = InProcessServer(tmp_path, monkeypatch)
    outbox = Outbox()
    harness.protocol.set_writer(outbox)
    root = tmp_path / "ws"
    root.mkdir()
    options = {"telemetry": {"enabled": False}, "lint": {"enabled": False}, "tests": {"onSave": False}}
    harness.send("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": {},
                                "initializationOptions": options}, request=True)
    return harness, outbox


def _edit(uri: str) -> types.WorkspaceEdit:
    at = types.Position(line=0, character=0)
    return types.WorkspaceEdit(changes={uri: [types.TextEdit(range=types.Range(start=at, end=at), new_text="x")]})


async def test_an_apply_edit_never_answered_is_forgotten_and_its_late_answer_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    harness, outbox = _started(tmp_path, monkeypatch)
    await asyncio.sleep(0.05)
    protocol = harness.protocol
    monkeypatch.setattr(code_actions, "APPLY_TIMEOUT_S", 0.05)
    uri = (tmp_path / "ws" / "m.py").as_uri()

    outcomes = [await code_actions._apply_edit(harness.server, _edit(uri)) for _ in range(3)]

    assert outcomes == [(None, None)] * 3  # not confirmed either way
    sent = [m["id"] for m in outbox.requests("workspace/applyEdit")]
    assert len(sent) == 3
    for ident in sent:  # each was held for the rest of the session
        assert ident not in protocol._request_futures
        assert ident not in protocol._result_types
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        protocol.handle_message(json.loads(json.dumps({"jsonrpc": "2.0", "id": sent[0], "result": {"applied": True}}),
                                           object_hook=protocol.structure_message))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    await harness.server.services["diagnostics"].shutdown()


async def test_a_request_answered_with_an_error_leaves_no_bookkeeping(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness, outbox = _started(tmp_path, monkeypatch)
    await asyncio.sleep(0.05)
    protocol = harness.protocol
    uri = (tmp_path / "ws" / "m.py").as_uri()

    pending = asyncio.ensure_future(code_actions._apply_edit(harness.server, _edit(uri)))
    await asyncio.sleep(0.01)
    (ident,) = [m["id"] for m in outbox.requests("workspace/applyEdit")]
    protocol.handle_message(json.loads(json.dumps(
        {"jsonrpc": "2.0", "id": ident, "error": {"code": -32603, "message": "the editor is busy"}}),
        object_hook=protocol.structure_message))

    assert await pending == (False, "the editor is busy")
    assert ident not in protocol._request_futures
    assert ident not in protocol._result_types  # pygls kept the result type of every error answer
    await harness.server.services["diagnostics"].shutdown()


async def test_an_answer_to_an_id_the_server_never_used_is_still_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    harness, _ = _started(tmp_path, monkeypatch)
    await asyncio.sleep(0.05)
    protocol = harness.protocol
    with caplog.at_level(logging.WARNING):
        protocol.handle_message(json.loads(json.dumps({"jsonrpc": "2.0", "id": "never-sent", "result": 1}),
                                           object_hook=protocol.structure_message))
    assert "never-sent" in caplog.text
    await harness.server.services["diagnostics"].shutdown()


async def test_settings_requests_a_client_never_answers_do_not_pile_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each settings change asks the client for the folders' settings again; an earlier request
    still unanswered, whose answer would now be ignored as stale, is given up, not kept."""
    harness = InProcessServer(tmp_path, monkeypatch)
    outbox = Outbox()
    harness.protocol.set_writer(outbox)
    protocol, send = harness.protocol, harness.send
    root = tmp_path / "ws"
    root.mkdir()
    options = {"telemetry": {"enabled": False}, "lint": {"enabled": False}, "tests": {"onSave": False}}
    send("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": {"workspace": {"configuration": True}},
                        "workspaceFolders": [{"uri": root.as_uri(), "name": "ws"}], "initializationOptions": options},
         request=True)
    await asyncio.sleep(0.05)
    send("initialized", {})
    for level in ["info", "warning"] * 10:
        await asyncio.sleep(0.01)
        send("workspace/didChangeConfiguration", {"settings": {"heedls": {"logLevel": level}}})
    await asyncio.sleep(0.05)

    asked = [m["id"] for m in outbox.requests("workspace/configuration")]
    assert len(asked) == 21  # at start, then after each change
    waiting = [ident for ident in asked if ident in protocol._request_futures]
    assert waiting == asked[-1:]  # 21 before, each held for the rest of the session

    protocol.handle_message(json.loads(json.dumps({"jsonrpc": "2.0", "id": asked[-1], "result": [{"inline": {"debounceMs": 7}}]}),
                                       object_hook=protocol.structure_message))
    await asyncio.sleep(0.05)
    assert harness.server.config_for(root / "m.py") is not None
    assert harness.server.folder_settings  # the latest answer is still taken
    await harness.server.services["diagnostics"].shutdown()
