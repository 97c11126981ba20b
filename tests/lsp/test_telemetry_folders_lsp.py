"""A multi-root window (VS Code's `.code-workspace`, Neovim's added workspace folders): each
folder's suggestion events end up in that folder's own store, the one `heedls telemetry export`
reads when run in the folder; no folder's code lands in another folder's export."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types

from tests.lsp.conftest import inline_request, open_document, plain, server_env, until

STUB = "total_{line} = compute_total(values)"
TEXT = "".join(f"def f{i}(values):\n    \n" for i in range(3))


def _export(folder: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`heedls telemetry export` run in `folder`: its events by id ({} when it has no store)."""
    out = subprocess.run([sys.executable, "-m", "heedls", "telemetry", "export", "--format", "jsonl"],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode == 1 and "no telemetry recorded yet" in out.stderr:
        return {}
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return {event["id"]: event for event in events}


async def _suggest(client: Any, uri: str, line: int) -> tuple[str, str]:
    result = await client.text_document_inline_completion_async(inline_request(uri, line, 4, invoked=True))
    item = result.items[0]
    sid = item.command.arguments[0]
    client.protocol.notify("heedls/suggestionShown", {"id": sid})
    return sid, item.insert_text


async def _report(client: Any, *args: str) -> Path:
    result = plain(await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="heedls.report", arguments=list(args))))
    assert result["html"], result
    return Path(result["html"])


def _reported(page: Path) -> dict[str, int]:
    data = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", page.read_text(), re.DOTALL)
    assert data is not None
    total = json.loads(data.group(1))["total"]
    return {"requests": total["requests"], "accepted": total["accepted"]}


def _folders_event(added: Sequence[Path] = (), removed: Sequence[Path] = ()) -> types.DidChangeWorkspaceFoldersParams:
    return types.DidChangeWorkspaceFoldersParams(event=types.WorkspaceFoldersChangeEvent(
        added=[types.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in added],
        removed=[types.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in removed]))


async def test_each_workspace_folder_exports_its_own_suggestion_events(lsp, tmp_path: Path) -> None:
    app, lib, extra = tmp_path / "app", tmp_path / "lib", tmp_path / "extra"
    for folder in (app, lib / "pkg", extra):
        folder.mkdir(parents=True)
    options = {"telemetry": {"persistenceTimeScale": 200}, "gate": {"mode": "off"}, "inline": {"debounceMs": 0}}
    client = await lsp(app, "vscode", stub=STUB, options=options, folders=[app, lib])
    env = server_env(tmp_path)  # the data dir the server writes to

    in_app = open_document(client, app / "calc.py", TEXT)
    in_lib = open_document(client, lib / "pkg" / "calc.py", TEXT)
    app_id, _ = await _suggest(client, in_app, 1)
    lib_id, lib_text = await _suggest(client, in_lib, 1)
    # rejected in app, accepted in lib (and the accepted text stays there: it persists)
    client.protocol.notify("heedls/suggestionRejected", {"id": app_id, "reason": "dismissed"})
    accepted = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="heedls.accept", arguments=[lib_id]))
    assert plain(accepted)["accepted"] is True
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(version=2, uri=in_lib),
        [types.TextDocumentContentChangePartial(range=types.Range(types.Position(1, 4), types.Position(1, 4)), text=lib_text)]))

    # a folder added while the server runs, and removed again: its store is closed (flushed) then
    client.workspace_did_change_workspace_folders(_folders_event(added=[extra]))
    await asyncio.sleep(0.3)
    in_extra = open_document(client, extra / "calc.py", TEXT)
    extra_id, _ = await _suggest(client, in_extra, 3)
    client.workspace_did_change_workspace_folders(_folders_event(removed=[extra]))
    exported = await until(lambda: _export(extra, env), 15, "the removed folder's store written")
    assert set(exported) == {extra_id}

    await asyncio.sleep(0.5)  # the 30 s checkpoint at 200×, then a keystroke checks it
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(version=3, uri=in_lib),
        [types.TextDocumentContentChangeWholeDocument(text=TEXT.replace("    \n", "    " + lib_text + "\n", 1) + "\n")]))
    await asyncio.sleep(0.5)
    # the report command covers the window (every folder's store), or one document's folder
    assert _reported(await _report(client)) == {"requests": 2, "accepted": 1}
    assert _reported(await _report(client, in_lib)) == {"requests": 1, "accepted": 1}
    assert _reported(await _report(client, in_app)) == {"requests": 1, "accepted": 0}
    await client.shutdown_session()
    await asyncio.sleep(0.5)

    app_events, lib_events = _export(app, env), _export(lib, env)
    assert set(app_events) == {app_id}
    assert set(lib_events) == {lib_id}
    assert app_events[app_id]["outcome"] == "rejected" and app_events[app_id]["file"] == "calc.py"
    lib_event = lib_events[lib_id]
    assert lib_event["outcome"] == "accepted" and lib_event["suggestion"] == lib_text
    assert lib_event["persisted_30s"] is True  # the persistence update went to the same store
    assert lib_event["file"] == "pkg/calc.py"  # relative to its own folder
    assert set(_export(extra, env)) == {extra_id}


async def test_turning_telemetry_to_nocode_or_off_in_the_editor_applies_to_every_folders_store(lsp, tmp_path: Path) -> None:
    app, lib = tmp_path / "app", tmp_path / "lib"
    for folder in (app, lib):
        folder.mkdir()
    base = {"gate": {"mode": "off"}, "inline": {"debounceMs": 0}}
    client = await lsp(app, "vscode", stub="SECRET_{line} = compute()", options=base, folders=[app, lib])
    env = server_env(tmp_path)
    docs = {folder: open_document(client, folder / "m.py", TEXT) for folder in (app, lib)}
    first = {folder: (await _suggest(client, uri, 1))[0] for folder, uri in docs.items()}

    def changed(what: str) -> Any:
        return [m.message for m in client.log_messages if f"telemetry settings changed: now {what}" in m.message]

    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"heedls": {**base, "telemetry": {"privacy": "nocode"}}}))
    await until(lambda: len(changed("privacy nocode")) == 2, 10, "both folders' stores now nocode")
    second = {folder: (await _suggest(client, uri, 3))[0] for folder, uri in docs.items()}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"heedls": {**base, "telemetry": {"enabled": False}}}))
    await until(lambda: changed("off"), 10, "telemetry off")
    for uri in docs.values():
        assert (await client.text_document_inline_completion_async(inline_request(uri, 5, 4, invoked=True))).items
    await client.shutdown_session()
    await asyncio.sleep(0.5)

    for folder in (app, lib):
        events = _export(folder, env)
        assert set(events) == {first[folder], second[folder]}  # nothing after "off"
        assert events[first[folder]]["suggestion"] == "SECRET_1 = compute()"  # kept as it was written
        assert events[second[folder]]["suggestion"] is None and events[second[folder]]["prefix"] is None
