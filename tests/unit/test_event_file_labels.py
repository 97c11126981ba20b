"""An event's `file` is the document's path relative to the workspace folder holding it (the
folder whose store keeps the event). Working it out touches the disk, so the engine remembers each
document's label; only a change of the workspace folders can change one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.in_process_server import InProcessServer


async def test_labels_are_worked_out_again_when_the_folders_change_and_only_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = InProcessServer(tmp_path, monkeypatch)
    server, send = harness.server, harness.send

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
