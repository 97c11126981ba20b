"""A checkout or a `git clean` reports thousands of deleted files in one watched-files batch: the
diagnostics of those that had some are cleared, and nothing is sent for the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from heedls.server.features import lifecycle

from tests.support.in_process_server import InProcessServer, Outbox


async def test_deleting_thousands_of_files_publishes_only_for_those_that_had_diagnostics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = InProcessServer(tmp_path, monkeypatch)
    outbox = Outbox()
    harness.protocol.set_writer(outbox)
    server, send = harness.server, harness.send
    root = tmp_path / "ws"
    root.mkdir()
    options = {"telemetry": {"enabled": False}, "lint": {"enabled": False}, "tests": {"onSave": False}}
    send("initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": {"textDocument": {"publishDiagnostics": {}}},
                        "initializationOptions": options}, request=True)
    await asyncio.sleep(0.05)
    send("initialized", {})
    broken = (root / "broken.py").as_uri()
    send("textDocument/didOpen", {"textDocument": {"uri": broken, "languageId": "python", "version": 1, "text": "def f(:\n"}})
    for _ in range(100):
        await asyncio.sleep(0.02)
        if any(p["uri"] == broken and p["diagnostics"] for p in outbox.published()):
            break
    assert any(p["uri"] == broken and p["diagnostics"] for p in outbox.published())  # a syntax error
    outbox.messages.clear()

    deleted = [((root / "pkg" / f"m{i}.py").as_uri(), 3) for i in range(3000)] + [(broken, 3)]
    await lifecycle._files_changed(server, lifecycle._ProjectFile(server), deleted)

    published = outbox.published()
    assert [p["uri"] for p in published] == [broken]  # 3001 before: one for every file deleted
    assert published[0]["diagnostics"] == []
    await server.services["diagnostics"].shutdown()
