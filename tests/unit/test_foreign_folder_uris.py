"""Workspace folders a client names by URIs that are no folder of this machine (a Windows
client's `file:///c%3A/…`, `untitled:`, a virtual file system's) are no folders of the server:
they were taken as folders under its working directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.in_process_server import InProcessServer


async def test_folders_named_by_uris_of_no_local_path_are_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = InProcessServer(tmp_path, monkeypatch)
    server, send = harness.server, harness.send
    root = tmp_path / "ws"
    root.mkdir()
    options = {"telemetry": {"enabled": False}, "lint": {"enabled": False}, "tests": {"onSave": False}}
    folders = [{"uri": "file:///c%3A/Users/me/project", "name": "windows"}, {"uri": root.as_uri(), "name": "ws"}]
    send("initialize", {"processId": None, "rootUri": "file:///c%3A/Users/me/project", "capabilities": {},
                        "workspaceFolders": folders, "initializationOptions": options}, request=True)
    await asyncio.sleep(0.05)
    send("initialized", {})
    assert server.folders == [root] and server.root == root

    send("workspace/didChangeWorkspaceFolders", {"event": {"added": [
        {"uri": "file:///d%3A/other", "name": "d"}, {"uri": "untitled:Untitled-1", "name": "u"},
        {"uri": "vscode-vfs://github/owner/repo", "name": "v"}], "removed": []}})
    await asyncio.sleep(0.05)
    assert server.folders == [root]
    assert all(folder.is_absolute() for folder in server.folder_configs)
    await server.services["diagnostics"].shutdown()


async def test_a_root_uri_of_no_local_path_is_no_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = InProcessServer(tmp_path, monkeypatch)
    server, send = harness.server, harness.send
    options = {"telemetry": {"enabled": False}, "lint": {"enabled": False}, "tests": {"onSave": False}}
    send("initialize", {"processId": None, "rootUri": "file:///c%3A/Users/me/project", "capabilities": {},
                        "initializationOptions": options}, request=True)
    await asyncio.sleep(0.05)
    assert server.root is None and server.folders == []
    await server.services["diagnostics"].shutdown()
