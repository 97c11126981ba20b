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
from heedls.server.watched import QUIET_S, Change, WatchedFiles, merge


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
    await asyncio.sleep(QUIET_S + 0.2)  # handled once the reports pause
    assert provider.changed == [[str(root / "b.py"), str(root / "new.py")]]
    await server.services["diagnostics"].shutdown()


class _Counter:
    """A document listener noting the deletions it is told about."""

    def __init__(self) -> None:
        self.deleted: list[list[str]] = []

    async def on_deleted(self, uris: list[str]) -> None:
        self.deleted.append(list(uris))


async def test_a_change_reported_twice_is_handled_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VS Code in a multi-root window reports each event twice, in one notification or in the next
    (its client batches every 250 ms): the index, the diagnostics and the configuration act once."""
    server, provider, _, send, root = await _serve(tmp_path, monkeypatch, {})
    send("textDocument/didOpen", {"textDocument": {"uri": (root / "a.py").as_uri(), "languageId": "python",
                                                   "version": 1, "text": "x = 1\n"}})
    await asyncio.sleep(0.05)
    counter = _Counter()
    server.document_listeners.append(counter)
    reloads: list[Any] = []

    async def on_config(config: Any) -> None:
        reloads.append(config)

    server.config_listeners.append(on_config)
    gone, edited, project = (root / "gone.py").as_uri(), (root / "b.py").as_uri(), (root / "pyproject.toml").as_uri()
    twice = [{"uri": gone, "type": 3}, {"uri": edited, "type": 2}, {"uri": project, "type": 2}] * 2
    send("workspace/didChangeWatchedFiles", {"changes": twice})
    await asyncio.sleep(0.1)
    send("workspace/didChangeWatchedFiles", {"changes": twice[:3]})  # the repeat, one batch later
    await asyncio.sleep(QUIET_S + 0.3)

    assert counter.deleted == [[gone]]
    assert provider.changed == [[str(root / "gone.py"), str(root / "b.py")]]
    assert len(reloads) == 1

    # a report after its batch was handled is a new change: handled again, never dropped
    send("workspace/didChangeWatchedFiles", {"changes": [{"uri": edited, "type": 2}]})
    await asyncio.sleep(QUIET_S + 0.3)
    assert provider.changed[1:] == [[str(root / "b.py")]]
    await server.services["diagnostics"].shutdown()


async def test_a_steady_stream_of_reports_is_still_handled_within_the_longest_wait() -> None:
    handled: list[list[Change]] = []

    async def handle(changes: list[Change]) -> None:
        handled.append(changes)

    watched = WatchedFiles(handle, quiet_s=0.2, max_wait_s=0.5)
    for i in range(8):  # one report every 0.1 s: never a pause of 0.2 s
        watched.add([(f"file:///m{i}.py", 2), ("file:///same.py", 2)])
        await asyncio.sleep(0.1)
    await watched.flush()
    assert len(handled) >= 2  # the first batch did not wait for the stream to end
    assert handled[0][-1] == ("file:///same.py", 2) and handled[0].count(("file:///same.py", 2)) == 1
    assert sorted(u for batch in handled for u, _ in batch if u != "file:///same.py") == [f"file:///m{i}.py" for i in range(8)]


def test_a_files_last_changes_keep_their_order() -> None:
    """Deleted then created again: the batch ends with the creation (the file is there)."""
    pending: dict[Change, None] = {}
    merge(pending, [("file:///a.py", 1), ("file:///a.py", 3), ("file:///b.py", 2), ("file:///a.py", 1)])
    assert list(pending) == [("file:///a.py", 3), ("file:///b.py", 2), ("file:///a.py", 1)]
