"""pygls files every handler's future in `_request_futures` but only removes a request's; the
server's protocol drops finished ones, so a keystroke (didChange) leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from heedls.server.app import create_server
from heedls.server.providers.static import StaticProvider


class _Writer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        return None


async def test_notifications_do_not_accumulate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEEDLS_CACHE_DIR", str(tmp_path / "cache"))
    server = create_server(provider=StaticProvider("pass"))
    protocol = server.protocol
    protocol.set_writer(_Writer())
    ids = iter(range(1, 10_000))

    def send(method: str, params: Any, request: bool = False) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            message["id"] = next(ids)
        protocol.handle_message(json.loads(json.dumps(message), object_hook=protocol.structure_message))

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
