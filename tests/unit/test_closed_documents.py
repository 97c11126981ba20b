"""A long day opens and closes hundreds of documents: the server keeps nothing per URI of a
closed document in the suggestion engine (its live suggestion, its typing speed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.in_process_server import InProcessServer


async def test_documents_opened_typed_in_asked_and_closed_leave_no_engine_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = InProcessServer(tmp_path, monkeypatch)
    server, send = harness.server, harness.send
    root = tmp_path / "ws"
    root.mkdir()
    options = {"telemetry": {"enabled": False}, "lint": {"enabled": False}, "tests": {"onSave": False},
               "inline": {"debounceMs": 0}}
    send("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": {}, "initializationOptions": options}, request=True)
    await asyncio.sleep(0.05)
    send("initialized", {})
    for i in range(60):
        uri = (root / f"m{i}.py").as_uri()
        send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}})
        at = {"line": 1, "character": 0}
        send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                        "contentChanges": [{"range": {"start": at, "end": at}, "text": "y = "}]})
        send("textDocument/inlineCompletion", {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 4},
                                               "context": {"triggerKind": 2}}, request=True)
        await asyncio.sleep(0.01)
        send("textDocument/didClose", {"textDocument": {"uri": uri}})
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    engine = server.services["engine"]
    assert engine.stats.shown >= 50  # the requests were answered with suggestions
    assert len(engine._live) == 0 and len(engine._typing) == 0  # 60 and 60 before
    engine.settle_pending()
    await server.services["diagnostics"].shutdown()
