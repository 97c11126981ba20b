"""A dead, hanging or healthy HTTP provider behind the real server: the editor always gets an
answer within the deadline and never an error."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from lsprotocol import types

from tests.lsp.conftest import plain
from tests.support.fake_llm_server import FakeLLMServer

TEXT = "import os\n\n\ndef walk(root):\n    for i in range(len(\n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ask(client, workspace: Path) -> tuple[types.InlineCompletionList | None, float]:
    path = workspace / "walker.py"
    path.write_text(TEXT)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, TEXT)))
    start = time.monotonic()
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri),
            position=types.Position(4, len("    for i in range(len(")),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    return result, time.monotonic() - start


async def test_a_dead_endpoint_falls_back_to_local_within_the_deadline(lsp, workspace: Path) -> None:
    options = {"provider": {"name": "openai", "endpoint": f"http://127.0.0.1:{_closed_port()}", "deadlineMs": 800}, "gate": {"mode": "off"}}
    client = await lsp(workspace, "vscode", stub=None, options=options)
    result, seconds = await _ask(client, workspace)
    # Without the deadline this would wait for the connection error or forever; the bound is loose
    # because the first request also warms up the local engine on a shared 2-core machine.
    assert seconds < 5.0
    assert result is not None and result.items  # local answered
    status = plain(await client.protocol.send_request_async("heedls/status", {}))
    assert status["provider"] == "openai"


async def test_a_hanging_endpoint_is_abandoned_at_the_deadline(lsp, workspace: Path) -> None:
    with FakeLLMServer() as fake:
        fake.set_behaviour("hang")
        options = {"provider": {"name": "openai", "endpoint": fake.url, "deadlineMs": 600}, "gate": {"mode": "off"}}
        client = await lsp(workspace, "neovim", stub=None, options=options)
        result, seconds = await _ask(client, workspace)
        assert seconds < 5.0  # the endpoint never answers: only the deadline ends the wait
        assert result is not None and result.items


async def test_a_healthy_endpoint_provides_the_suggestion(lsp, workspace: Path) -> None:
    with FakeLLMServer() as fake:
        fake.script_completions("items)):")
        options = {"provider": {"name": "openai", "endpoint": fake.url, "model": "tiny-coder", "deadlineMs": 3000}, "gate": {"mode": "off"}}
        client = await lsp(workspace, "vscode", stub=None, options=options)
        result, _ = await _ask(client, workspace)
        assert result is not None and result.items[0].insert_text == "items)):"
        assert fake.requests_to("/v1/completions")
