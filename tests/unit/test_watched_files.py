"""Files changed on disk by other tools (a git checkout, a formatter, a new module) reach the local
provider's index: the server asks a client that can for a .py watcher, and forwards its events."""

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
        self.sent: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        body = data.split(b"\r\n\r\n", 1)[-1]
        self.sent.append(json.loads(body))

    def close(self) -> None:
        return None


class _IndexingProvider(StaticProvider):
    """Answers as the static provider does and notes what the server says changed on disk."""

    def __init__(self) -> None:
        super().__init__("pass")
        self.changed: list[list[str]] = []

    def files_changed(self, paths: list[str]) -> None:
        self.changed.append(list(paths))


async def _serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capabilities: dict[str, Any]) -> Any:
    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEEDLS_CACHE_DIR", str(tmp_path / "cache"))
    provider = _IndexingProvider()
    server = create_server(provider=provider)
    writer = _Writer()
    server.protocol.set_writer(writer)
    ids = iter(range(1, 1000))

    def send(method: str, params: Any, request: bool = False) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            message["id"] = next(ids)
        server.protocol.handle_message(json.loads(json.dumps(message), object_hook=server.protocol.structure_message))

    root = tmp_path / "ws"
    root.mkdir()
    options = {"telemetry": {"enabled": False}, "lint": {"enabled": False}, "tests": {"onSave": False}}
    send("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": capabilities,
                        "initializationOptions": options}, request=True)
    await asyncio.sleep(0.05)
    send("initialized", {})
    await asyncio.sleep(0.05)
    return server, provider, writer, send, root


def _registrations(writer: _Writer) -> list[Any]:
    return [r for m in writer.sent if m.get("method") == "client/registerCapability" for r in m["params"]["registrations"]]


async def test_a_client_that_can_watch_files_is_asked_for_the_python_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watching = {"workspace": {"didChangeWatchedFiles": {"dynamicRegistration": True}}}
    server, _, writer, _, _ = await _serve(tmp_path, monkeypatch, watching)
    [registration] = _registrations(writer)
    assert registration["method"] == "workspace/didChangeWatchedFiles"
    assert registration["registerOptions"]["watchers"] == [{"globPattern": "**/*.py"}]
    await server.services["diagnostics"].shutdown()


async def test_a_client_that_cannot_is_not_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server, _, writer, _, _ = await _serve(tmp_path, monkeypatch, {})
    assert _registrations(writer) == []
    await server.services["diagnostics"].shutdown()


async def test_python_files_changed_on_disk_are_passed_to_the_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, provider, _, send, root = await _serve(tmp_path, monkeypatch, {})
    send("textDocument/didOpen", {"textDocument": {"uri": (root / "a.py").as_uri(), "languageId": "python",
                                                   "version": 1, "text": "x = 1\n"}})
    await asyncio.sleep(0.05)
    changes = [{"uri": (root / "b.py").as_uri(), "type": 2}, {"uri": (root / "new.py").as_uri(), "type": 1},
               {"uri": (root / "notes.txt").as_uri(), "type": 2}]
    send("workspace/didChangeWatchedFiles", {"changes": changes})
    await asyncio.sleep(0.05)
    assert provider.changed == [[str(root / "b.py"), str(root / "new.py")]]
    await server.services["diagnostics"].shutdown()
