"""Inline suggestions over the real stdio server, as VS Code and Neovim would use them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import attrs
import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig

from tests.lsp.conftest import VSCODE, initialize, inline_request, nothing_to_show, plain, server_env, until

SOURCE = "def greet(name):\n    \n"


async def _open(client, root: Path, text: str = SOURCE, name: str = "demo.py") -> str:
    path = root / name
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    return uri


async def test_server_advertises_inline_completion_and_accept_command(lsp, workspace: Path, editor: str) -> None:
    client = await lsp(workspace, editor)
    uri = await _open(client, workspace)
    items = await client.text_document_inline_completion_async(inline_request(uri, 1, 4))
    assert items is not None
    item = items.items[0] if isinstance(items, types.InlineCompletionList) else items[0]
    assert item.insert_text == "print('heedls 1')"
    assert item.command is not None and item.command.command == "heedls.accept"
    assert isinstance(item.command.arguments[0], str)


async def test_show_then_accept_records_the_outcome(lsp, workspace: Path) -> None:
    client = await lsp(workspace, "vscode")
    uri = await _open(client, workspace)
    items = await client.text_document_inline_completion_async(inline_request(uri, 1, 4))
    item = items.items[0]
    suggestion_id = item.command.arguments[0]
    client.protocol.notify("heedls/suggestionShown", {"id": suggestion_id})
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="heedls.accept", arguments=[suggestion_id]))
    assert result["accepted"] is True
    again = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="heedls.accept", arguments=[suggestion_id]))
    assert again["accepted"] is False  # first decision wins
    status = plain(await client.protocol.send_request_async("heedls/status", {}))
    assert status["shown"] == 1


async def test_rejection_notification_is_accepted_and_server_keeps_serving(lsp, workspace: Path) -> None:
    client = await lsp(workspace, "neovim")
    uri = await _open(client, workspace)
    items = await client.text_document_inline_completion_async(inline_request(uri, 1, 4))
    client.protocol.notify("heedls/suggestionRejected", {"id": items.items[0].command.arguments[0], "reason": "dismissed"})
    accept = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="heedls.accept", arguments=[items.items[0].command.arguments[0]])
    )
    assert accept["accepted"] is False  # already rejected


async def test_fast_typing_cancels_superseded_requests(lsp, workspace: Path) -> None:
    client = await lsp(workspace, "vscode", options={"inline": {"debounceMs": 150}})
    uri = await _open(client, workspace)
    # five requests in quick succession: only the last survives the debounce
    tasks = [asyncio.ensure_future(client.text_document_inline_completion_async(inline_request(uri, 1, 4))) for _ in range(5)]
    results = await asyncio.gather(*tasks)
    shown = [r for r in results if r is not None and r.items]
    assert len(shown) == 1
    assert results[-1] is not None and results[-1].items


async def test_invalid_configuration_falls_back_with_a_warning(lsp, workspace: Path) -> None:
    client = await lsp(workspace, "vscode", options={"inline": {"debounceMs": "fast", "maxLines": -3}, "gate": {"mode": "sometimes"}})
    await asyncio.sleep(0.2)
    warnings = [m.message for m in client.log_messages if m.type <= types.MessageType.Warning]
    assert any("debounceMs" in w for w in warnings)
    assert any("sometimes" in w for w in warnings)
    uri = await _open(client, workspace)
    items = await client.text_document_inline_completion_async(inline_request(uri, 1, 4))
    assert items is not None and items.items  # still serving with defaults


async def test_toggle_turns_suggestions_off_and_on(lsp, workspace: Path) -> None:
    client = await lsp(workspace, "vscode")
    uri = await _open(client, workspace)
    off = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="heedls.toggleSuggestions", arguments=[False]))
    assert off == {"enabled": False}
    assert nothing_to_show(await client.text_document_inline_completion_async(inline_request(uri, 1, 4)))
    await client.workspace_execute_command_async(types.ExecuteCommandParams(command="heedls.toggleSuggestions", arguments=[True]))
    items = await client.text_document_inline_completion_async(inline_request(uri, 1, 4))
    assert items is not None and items.items


async def test_toggle_with_an_argument_that_is_no_boolean_is_refused_and_changes_nothing(lsp, workspace: Path) -> None:
    """"yes", 0, "false": a guess either way could turn suggestions the wrong way (it toggled)."""
    from pygls.exceptions import JsonRpcInvalidParams

    client = await lsp(workspace, "vscode")
    uri = await _open(client, workspace)
    for wrong in ("yes", 0, "false"):
        with pytest.raises(JsonRpcInvalidParams, match="must be true, false or left out"):
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="heedls.toggleSuggestions", arguments=[wrong]))
    items = await client.text_document_inline_completion_async(inline_request(uri, 1, 4))
    assert items is not None and items.items  # still on


async def test_notification_fields_are_read_by_name_whatever_their_order(lsp, workspace: Path) -> None:
    # Neovim serialises Lua tables in no fixed order: {"reason": …, "id": …} must work too.
    client = await lsp(workspace, "neovim")
    uri = await _open(client, workspace)
    items = await client.text_document_inline_completion_async(inline_request(uri, 1, 4))
    suggestion_id = items.items[0].command.arguments[0]
    client.protocol.notify("heedls/suggestionRejected", {"reason": "dismissed", "id": suggestion_id})
    await asyncio.sleep(0.2)
    accept = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="heedls.accept", arguments=[suggestion_id]))
    assert accept["accepted"] is False  # the reject was applied to the right suggestion


async def test_a_reject_reason_outside_the_protocol_is_stored_as_unknown(lsp, workspace: Path, tmp_path: Path) -> None:
    from heedls.server.telemetry.store import read_events

    client = await lsp(workspace, "vscode", options={"inline": {"debounceMs": 0}, "gate": {"mode": "off"}})
    uri = await _open(client, workspace, "def f():\n    \n\ndef g():\n    \n\ndef h():\n    \n")
    reasons = {}
    for line, reason in ((1, "typed-over"), (4, 42), (7, "SECRET_TOKEN = 1")):
        items = await client.text_document_inline_completion_async(inline_request(uri, line, 4))
        sid = items.items[0].command.arguments[0]
        client.protocol.notify("heedls/suggestionRejected", {"id": sid, "reason": reason})
        reasons[sid] = reason
    await asyncio.sleep(0.3)
    await client.shutdown_session()
    stored = {e.id: e for store in (tmp_path / "data").rglob("events.sqlite3") for e in read_events(store)}
    assert {stored[sid].outcome for sid in reasons} == {"rejected"}
    assert [stored[sid].extra.get("reason") for sid in reasons] == ["typed-over", None, None]


async def test_status_counts_what_the_store_counts_and_the_share_leaves_empty_answers_out(lsp, workspace: Path) -> None:
    # keep 100 %: the gate holds nothing back. A provider with nothing to say is not the gate's doing.
    empty = await lsp(workspace, "vscode", stub="", options={"inline": {"debounceMs": 0}, "gate": {"keepAccepted": 1.0}})
    uri = await _open(empty, workspace)
    for _ in range(2):
        assert nothing_to_show(await empty.text_document_inline_completion_async(inline_request(uri, 1, 4)))
    gate = plain(await empty.protocol.send_request_async("heedls/status", {}))["gate"]
    assert (gate["requests"], gate["empty"], gate["shown"], gate["skipped"], gate["hidden"]) == (2, 2, 0, 0, 0)
    assert gate["hidden_share"] == 0.0

    shown = await lsp(workspace, "neovim", options={"inline": {"debounceMs": 0}, "gate": {"keepAccepted": 1.0}})
    uri = await _open(shown, workspace, name="other.py")
    assert (await shown.text_document_inline_completion_async(inline_request(uri, 1, 4))).items
    gate = plain(await shown.protocol.send_request_async("heedls/status", {}))["gate"]
    assert (gate["requests"], gate["shown"], gate["hidden_share"]) == (1, 1, 0.0)

    off = await lsp(workspace, "vscode", options={"inline": {"debounceMs": 0}, "gate": {"mode": "off"}})
    uri = await _open(off, workspace, name="third.py")
    assert (await off.text_document_inline_completion_async(inline_request(uri, 1, 4))).items
    gate = plain(await off.protocol.send_request_async("heedls/status", {}))["gate"]
    assert gate["shown"] == 1 and gate["hidden_share"] is None  # no gate, no share to show


async def test_the_server_asks_a_client_that_can_watch_files_for_the_python_files(lsp, workspace: Path, tmp_path: Path) -> None:
    """A git checkout or a formatter changes files no buffer shows: VS Code registers watchers on
    request, so the server asks it for **/*.py and the local provider's index hears of them."""
    command = [sys.executable, "-m", "heedls", "serve", "--stub-provider", "x"]
    client = await ClientServerConfig(server_command=command, server_env=server_env(tmp_path)).start()
    lsp.clients.append(client)
    asked: list[types.Registration] = []

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def on_register(params: types.RegistrationParams) -> None:
        asked.extend(params.registrations)

    watching = attrs.evolve(VSCODE, workspace=attrs.evolve(
        VSCODE.workspace, did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True)))
    await initialize(client, workspace, watching)
    await until(lambda: asked, 10.0, "client/registerCapability")
    [registration] = asked
    assert registration.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
    assert [w["globPattern"] for w in registration.register_options["watchers"]] == ["**/*.py"]
