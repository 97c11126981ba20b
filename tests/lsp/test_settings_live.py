"""Settings changed while the server runs (workspace/didChangeConfiguration) take effect at once,
and only the settings that changed: a privacy choice cannot wait for a restart, an unrelated
change must not undo what the user toggled, and a warning is said once, not on every change."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from heedls.server.telemetry.store import read_events
from lsprotocol import types

from tests.lsp.conftest import inline_request, nothing_to_show, open_document, plain, until


def _change(client: Any, settings: dict[str, Any]) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"heedls": settings}))


def _stored(tmp_path: Path) -> list[Any]:
    events = []
    for store in (tmp_path / "data").rglob("events.sqlite3"):
        events.extend(read_events(store))
    return events


async def _shutdown(client: Any) -> None:
    await client.shutdown_session()  # closes the store: everything queued is written


async def test_turning_telemetry_to_nocode_or_off_applies_to_the_next_suggestion(lsp, workspace: Path, tmp_path: Path) -> None:
    base = {"gate": {"mode": "off"}, "inline": {"debounceMs": 0}}
    client = await lsp(workspace, "vscode", stub="SECRET_{line} = compute()", options=base)
    uri = open_document(client, workspace / "m.py", "".join(f"def f{i}():\n    \n" for i in range(4)))

    assert (await client.text_document_inline_completion_async(inline_request(uri, 1, 4, invoked=True))).items
    _change(client, {**base, "telemetry": {"privacy": "nocode"}})
    await until(lambda: any("now privacy nocode" in m.message for m in client.log_messages), 10, "the nocode store")
    assert (await client.text_document_inline_completion_async(inline_request(uri, 3, 4, invoked=True))).items
    _change(client, {**base, "telemetry": {"enabled": False}})
    await until(lambda: any("now off" in m.message for m in client.log_messages), 10, "telemetry off")
    assert (await client.text_document_inline_completion_async(inline_request(uri, 5, 4, invoked=True))).items  # still serving
    await _shutdown(client)

    events = _stored(tmp_path)
    texts = sorted(e.suggestion for e in events if e.suggestion)
    assert texts == ["SECRET_1 = compute()"]  # logged before the switch: kept, nothing lost
    assert len(events) == 2  # the nocode event is there, without its code; nothing after "off"
    nocode = next(e for e in events if not e.suggestion)
    assert nocode.prefix is None and nocode.suffix is None


async def test_an_unrelated_settings_change_keeps_suggestions_toggled_off(lsp, workspace: Path) -> None:
    client = await lsp(workspace, "vscode", options={"inline": {"debounceMs": 0}})
    uri = open_document(client, workspace / "m.py", "def f():\n    \n")
    off = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="heedls.toggleSuggestions", arguments=[False]))
    assert off == {"enabled": False}
    _change(client, {"inline": {"debounceMs": 0}, "lint": {"enabled": False}})  # e.g. VS Code's trust grant
    await asyncio.sleep(0.3)
    status = plain(await client.protocol.send_request_async("heedls/status", {}))
    assert status["enabled"] is False
    assert nothing_to_show(await client.text_document_inline_completion_async(inline_request(uri, 1, 4, invoked=True)))
    # turning the setting itself off and on again does switch them on
    _change(client, {"inline": {"debounceMs": 0, "enabled": False}})
    _change(client, {"inline": {"debounceMs": 0, "enabled": True}})
    await asyncio.sleep(0.3)
    assert plain(await client.protocol.send_request_async("heedls/status", {}))["enabled"] is True


async def test_a_wrong_setting_is_warned_about_once_not_on_every_change(lsp, workspace: Path) -> None:
    options = {"inline": {"debounceMs": 0}, "gate": {"mode": "sometimes"}}
    client = await lsp(workspace, "vscode", options=options)
    for debounce in (5, 10, 15):
        _change(client, {"inline": {"debounceMs": debounce}})
        await asyncio.sleep(0.1)
    _change(client, {"inline": {"debounceMs": 0}, "gate": {"mode": "often"}})  # a new mistake is said
    await until(lambda: any("often" in m.message for m in client.log_messages), 10, "the new warning")
    said = [m.message for m in client.log_messages if "sometimes" in m.message]
    assert len(said) == 1


async def test_with_telemetry_off_nothing_about_the_users_decisions_reaches_the_disk(lsp, workspace: Path, tmp_path: Path) -> None:
    options = {"inline": {"debounceMs": 0}, "gate": {"keepAccepted": 1.0}, "telemetry": {"enabled": False}}
    client = await lsp(workspace, "vscode", options=options)
    uri = open_document(client, workspace / "m.py", "def f():\n    \n\ndef g():\n    \n")

    async def decide(line: int) -> None:
        items = await client.text_document_inline_completion_async(inline_request(uri, line, 4, invoked=True))
        client.protocol.notify("heedls/suggestionRejected", {"id": items.items[0].command.arguments[0], "reason": "dismissed"})
        await asyncio.sleep(0.3)

    await decide(1)
    data = tmp_path / "data"
    assert not list(data.rglob("events.sqlite3")) and not list(data.rglob("acceptance-rows.jsonl"))
    _change(client, {**options, "telemetry": {"enabled": True}})  # turned on: from then on, recorded
    await until(lambda: any("telemetry settings changed" in m.message for m in client.log_messages), 10, "the store")
    await decide(4)
    await until(lambda: list(data.rglob("acceptance-rows.jsonl")), 10, "the gate's rows")
    await _shutdown(client)
    assert [e.outcome for e in _stored(tmp_path)] == ["rejected"]


async def _gate_mode(client: Any, wanted: str) -> str:
    """The gate mode heedls/status reports, once it is `wanted` (or after 5 s)."""
    for _ in range(100):
        mode = str(plain(await client.protocol.send_request_async("heedls/status", {}))["gate"]["mode"])
        if mode == wanted:
            break
        await asyncio.sleep(0.05)
    return mode


async def test_a_saved_pyproject_toml_applies_at_once(lsp, workspace: Path) -> None:
    project = workspace / "pyproject.toml"
    project.write_text('[tool.heedls.gate]\nmode = "stage1"\n')
    client = await lsp(workspace, "vscode")
    assert await _gate_mode(client, "stage1") == "stage1"
    project.write_text('[tool.heedls.gate]\nmode = "off"\n')
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=project.as_uri())))
    assert await _gate_mode(client, "off") == "off"
    project.write_text('[tool.heedls.gate]\nmode = "cascade"\n')  # changed on disk, reported as a watched file
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
        changes=[types.FileEvent(uri=project.as_uri(), type=types.FileChangeType.Changed)]))
    assert await _gate_mode(client, "cascade") == "cascade"


async def test_a_pull_model_client_is_asked_for_its_settings(lsp, workspace: Path) -> None:
    """Clients that answer workspace/configuration (Helix, Zed, eglot) push nothing: heedls asks
    after `initialized` and whenever they say the settings changed (settings: null)."""
    client = await lsp(workspace, "neovim")
    client.set_configuration({"gate": {"mode": "off"}}, section="heedls")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    assert await _gate_mode(client, "off") == "off"
    client.set_configuration({"gate": {"mode": "stage1"}}, section="heedls")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    assert await _gate_mode(client, "stage1") == "stage1"


async def test_a_client_answering_only_the_first_item_still_gets_its_settings_applied(lsp, workspace: Path) -> None:
    """heedls asks for the window's settings and each folder's in one request; a client that
    answers the first item alone (it knows no scopes) still has its settings taken."""
    client = await lsp(workspace, "neovim")
    client.protocol.fm.features.pop(types.WORKSPACE_CONFIGURATION)  # pytest-lsp's answers every item

    @client.feature(types.WORKSPACE_CONFIGURATION)
    def first_only(params: types.ConfigurationParams) -> list[Any]:
        return [{"gate": {"mode": "off"}}]

    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    assert await _gate_mode(client, "off") == "off"


async def test_a_late_answer_to_an_older_settings_request_does_not_undo_a_newer_one(lsp, workspace: Path) -> None:
    """Two changes in quick succession make two workspace/configuration requests; the client may
    answer the older one last (it was busy). The settings are the ones asked for last."""
    client = await lsp(workspace, "neovim")
    client.protocol.fm.features.pop(types.WORKSPACE_CONFIGURATION)
    asked: list[int] = []
    older_answered = asyncio.Event()

    @client.feature(types.WORKSPACE_CONFIGURATION)
    async def slow_then_fast(params: types.ConfigurationParams) -> list[Any]:
        asked.append(len(asked))
        if len(asked) == 1:  # the older request: answered after the newer one, with the old settings
            await until(lambda: len(asked) >= 2, 5.0, "the second settings request")
            await asyncio.sleep(0.3)
            older_answered.set()
            return [{"gate": {"mode": "off"}} for _ in params.items]
        return [{"gate": {"mode": "stage1"}} for _ in params.items]

    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    await until(lambda: asked, 5.0, "the first settings request")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    assert await _gate_mode(client, "stage1") == "stage1"
    await asyncio.wait_for(older_answered.wait(), 5.0)
    await asyncio.sleep(0.3)  # the older answer has reached the server by now
    assert await _gate_mode(client, "stage1") == "stage1"


async def test_each_workspace_folder_lints_and_tests_as_its_own_pyproject_says(lsp, tmp_path: Path) -> None:
    """A multi-root workspace (a VS Code .code-workspace, several folders in Neovim): a document
    is linted, tested and repaired as the pyproject.toml of the folder holding it says, in a folder
    added while the server runs too, and a saved folder's pyproject.toml applies at once."""
    app, lib, extra = (tmp_path / name for name in ("app", "lib", "extra"))
    ruff_f = '[tool.ruff]\nlint.select = ["F"]\n'
    off = '[tool.heedls.lint]\nenabled = false\n[tool.heedls.tests]\nenabled = false\n'
    for folder, project in ((app, ruff_f), (lib, ruff_f + off), (extra, ruff_f + off)):
        folder.mkdir()
        (folder / "pyproject.toml").write_text(project)
    client = await lsp(app, "vscode", folders=[app, lib], options={"lint": {"lintDebounceMs": 50}})
    unused = "import os\n\n\ndef f():\n    return 1\n"  # F401

    def ruff(uri: str) -> list[Any]:
        return [d for d in client.diagnostics.get(uri, []) if d.source == "heedls/ruff"]

    in_app, in_lib = open_document(client, app / "m.py", unused), open_document(client, lib / "m.py", unused)
    await until(lambda: ruff(in_app), 15, "F401 in the first folder")
    await until(lambda: in_lib in client.diagnostics, 15, "the second folder's publish")
    await asyncio.sleep(0.5)
    assert ruff(in_lib) == []  # lint.enabled = false there
    ran = plain(await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="heedls.runTests", arguments=[in_lib])))
    assert ran["ran"] is False and "tests.enabled" in ran["reason"]

    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        event=types.WorkspaceFoldersChangeEvent(added=[types.WorkspaceFolder(uri=extra.as_uri(), name="extra")], removed=[])))
    in_extra = open_document(client, extra / "m.py", unused)
    await until(lambda: in_extra in client.diagnostics, 15, "the added folder's publish")
    await asyncio.sleep(0.5)
    assert ruff(in_extra) == []

    (lib / "pyproject.toml").write_text(ruff_f)  # lint on again in lib, saved in the editor
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=(lib / "pyproject.toml").as_uri())))
    await asyncio.sleep(0.3)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=in_lib, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="\n" + unused)]))
    await until(lambda: ruff(in_lib), 15, "F401 in the second folder once its pyproject.toml allows it")
    assert ruff(in_app) and ruff(in_extra) == []


async def test_each_workspace_folder_gets_the_settings_the_editor_has_for_it(lsp, tmp_path: Path) -> None:
    """VS Code's folder settings (a folder's .vscode/settings.json): heedls asks
    workspace/configuration for each folder (scopeUri) as well as for the window, at start-up and
    after every settings change, and a folder's lint, tests and repair settings apply to the
    documents in it, over the window's settings and the folder's pyproject.toml. What the shared
    services use (here the gate) stays the window's."""
    app, lib = tmp_path / "app", tmp_path / "lib"
    for folder in (app, lib):
        folder.mkdir()
        (folder / "pyproject.toml").write_text('[tool.ruff]\nlint.select = ["F"]\n[tool.heedls.lint]\nenabled = true\n')
    window = {"lint": {"enabled": True, "lintDebounceMs": 50}, "gate": {"mode": "stage1"}}
    lib_off = {**window, "lint": {"enabled": False, "lintDebounceMs": 50}, "tests": {"enabled": False},
               "gate": {"mode": "off"}}  # a shared section in a folder's settings: not the folder's to decide
    client = await lsp(app, "vscode", folders=[app, lib], configuration={"": window, lib.as_uri(): lib_off})
    unused = "import os\n\n\ndef f():\n    return 1\n"  # F401

    def ruff(uri: str) -> list[Any]:
        return [d for d in client.diagnostics.get(uri, []) if d.source == "heedls/ruff"]

    async def ran_tests(uri: str) -> Any:
        return plain(await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="heedls.runTests", arguments=[uri])))

    in_app, in_lib = open_document(client, app / "m.py", unused), open_document(client, lib / "m.py", unused)
    await until(lambda: ruff(in_app), 15, "F401 in the first folder")
    await until(lambda: in_lib in client.diagnostics, 15, "the second folder's publish")
    await asyncio.sleep(0.5)
    assert ruff(in_lib) == []  # its folder settings turn lint off
    assert "tests.enabled" in (await ran_tests(in_lib))["reason"]
    assert await _gate_mode(client, "stage1") == "stage1"  # the window's, not lib's "off"

    # VS Code pushes the window's settings on every change; each folder's are asked for again
    client.set_configuration(window, section="heedls", scope_uri=lib.as_uri())
    client.set_configuration({**window, "lint": {"enabled": False}}, section="heedls", scope_uri=app.as_uri())
    _change(client, window)
    for uri, version in ((in_app, 2), (in_lib, 2)):
        await asyncio.sleep(0.3)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text="\n" + unused)]))
    await until(lambda: ruff(in_lib), 15, "F401 in the second folder once its settings allow it")
    await until(lambda: not ruff(in_app), 15, "the first folder's ruff diagnostics gone with its lint off")


async def test_when_the_first_folder_is_removed_the_next_one_supplies_the_shared_settings(lsp, tmp_path: Path) -> None:
    """The shared settings (provider, inline, gate, telemetry) are the first folder's: a user who
    removes that folder from the window no longer has its pyproject.toml apply; the folder now
    first does, and suggestions go on without a restart."""
    app, lib = tmp_path / "app", tmp_path / "lib"
    for folder, mode in ((app, "stage1"), (lib, "off")):
        folder.mkdir()
        (folder / "pyproject.toml").write_text(f'[tool.heedls.gate]\nmode = "{mode}"\n')
    client = await lsp(app, "vscode", folders=[app, lib], options={"inline": {"debounceMs": 0}})
    assert await _gate_mode(client, "stage1") == "stage1"
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        event=types.WorkspaceFoldersChangeEvent(added=[], removed=[types.WorkspaceFolder(uri=app.as_uri(), name="app")])))
    assert await _gate_mode(client, "off") == "off"
    uri = open_document(client, lib / "m.py", "def f():\n    \n")
    assert (await client.text_document_inline_completion_async(inline_request(uri, 1, 4, invoked=True))).items  # gate off: shown


async def test_a_size_cap_set_while_the_server_runs_keeps_the_store_within_it(lsp, workspace: Path, tmp_path: Path) -> None:
    """telemetry.maxSizeMb from the editor: the store opens again with the cap, its oldest
    suggestions make room as requests come, and the editor's log says so once."""
    import secrets

    base = {"gate": {"mode": "off"}, "inline": {"debounceMs": 0}}
    client = await lsp(workspace, "vscode", stub="VALUE_{line} = compute()", options=base)
    noise = "# " + secrets.token_hex(2500) + "\n"  # 5 kB that do not compress, in every prefix
    uri = open_document(client, workspace / "m.py", noise + "".join(f"def f{i}():\n    \n" for i in range(40)))
    _change(client, {**base, "telemetry": {"maxSizeMb": 0.1}})
    await until(lambda: any("size cap 0.1 MB" in m.message for m in client.log_messages), 10, "the capped store")
    for i in range(40):
        assert (await client.text_document_inline_completion_async(inline_request(uri, 2 + 2 * i, 4, invoked=True))).items
    await until(lambda: any("reached its size cap" in m.message for m in client.log_messages), 10, "the trim")
    await _shutdown(client)

    kept = sorted(int(e.suggestion.split("_")[1].split()[0]) for e in _stored(tmp_path) if e.suggestion)
    assert 0 < len(kept) < 40 and kept == list(range(kept[0], 81, 2))  # the newest, without a gap
    assert len([m for m in client.log_messages if "reached its size cap" in m.message]) == 1
