"""An event's `file` is the document's path relative to the workspace folder holding it (the
folder whose store keeps the event). Working it out touches the disk, so the engine remembers each
document's label; only a change of the workspace folders can change one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from heedls.server.app import create_server
from heedls.server.providers.static import StaticProvider


class _Writer:
    def write(self, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None


async def test_labels_are_worked_out_again_when_the_folders_change_and_only_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEEDLS_CACHE_DIR", str(tmp_path / "cache"))
    server = create_server(provider=StaticProvider("pass"))
    protocol = server.protocol
    protocol.set_writer(_Writer())
    ids = iter(range(1, 1000))

    def send(method: str, params: Any, request: bool = False) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            message["id"] = next(ids)
        protocol.handle_message(json.loads(json.dumps(message), object_hook=protocol.structure_message))

    app, lib = tmp_path / "app", tmp_path / "lib"
    (lib / "pkg").mkdir(parents=True)
    app.mkdir()
    options = {"telemetry": {"enabled": False}, "lint": {"enabled": False}, "tests": {"onSave": False}}
    send("initialize", {"processId": None, "rootUri": app.as_uri(), "capabilities": {}, "initializationOptions": options,
                        "workspaceFolders": [{"uri": app.as_uri(), "name": "app"}]}, request=True)
    await asyncio.sleep(0.05)
    send("initialized", {})
    send("textDocument/didOpen", {"textDocument": {"uri": (app / "a.py").as_uri(), "languageId": "python",
                                                   "version": 1, "text": "x = 1\n"}})
    await asyncio.sleep(0.05)
    label = server.services["engine"].file_label
    module = str(lib / "pkg" / "m.py")
    assert label(module) == "m.py"  # in no folder: its name
    assert label.cache_info().currsize == 1

    # another setting changes: the labels stay (no disk work on the next suggestion)
    send("workspace/didChangeConfiguration", {"settings": {"heedls": {**options, "gate": {"mode": "off"}}}})
    await asyncio.sleep(0.1)
    assert server.services["engine"].config.gate.mode == "off"
    assert label.cache_info().currsize == 1

    # a folder added: the labels are worked out again, relative to the new folder
    send("workspace/didChangeWorkspaceFolders", {"event": {"added": [{"uri": lib.as_uri(), "name": "lib"}], "removed": []}})
    await asyncio.sleep(0.1)
    assert label.cache_info().currsize == 0
    assert label(module) == "pkg/m.py"
    await server.services["diagnostics"].shutdown()
