"""pygls files every handler's future in `_request_futures` but only removes a request's; the
server's protocol drops finished ones, so a keystroke (didChange) leaves nothing behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.in_process_server import InProcessServer


async def test_notifications_do_not_accumulate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = InProcessServer(tmp_path, monkeypatch)
    server, protocol, send = harness.server, harness.protocol, harness.send

    root = tmp_path / "ws"
    root.mkdir()
    uri = (root / "a.py").as_uri()
    options = {"telemetry": {"enabled": False}, "lint": {"enabled": False}, "tests": {"onSave": False}}
    send("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": {}, "initializationOptions": options}, request=True)
    await asyncio.sleep(0.05)
    send("initialized", {})
    send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}})
    for version in range(2, 502):
        at = {"line": 0, "character": 5}
        send("textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"range": {"start": at, "end": at}, "text": "0"}]})
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert server.workspace.get_text_document(uri).source == "x = 1" + "0" * 500 + "\n"
    assert len(protocol._request_futures) < 100  # pygls alone would hold 1000 here
    await server.services["diagnostics"].shutdown()
