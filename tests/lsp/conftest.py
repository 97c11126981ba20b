"""Shared pytest-lsp fixtures: the real `heedls serve` over stdio, driven by clients that declare
VS Code-like or Neovim-like capabilities (both declare inlineCompletion: pytest-lsp doesn't)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

VSCODE = types.ClientCapabilities(
    workspace=types.WorkspaceClientCapabilities(
        configuration=True,
        did_change_configuration=types.DidChangeConfigurationClientCapabilities(dynamic_registration=True),
        workspace_folders=True,
        execute_command=types.ExecuteCommandClientCapabilities(dynamic_registration=True),
    ),
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True, dynamic_registration=True),
        inline_completion=types.InlineCompletionClientCapabilities(dynamic_registration=True),
        publish_diagnostics=types.PublishDiagnosticsClientCapabilities(related_information=True, code_description_support=True, data_support=True),
        hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown, types.MarkupKind.PlainText]),
        code_action=types.CodeActionClientCapabilities(
            code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(value_set=[types.CodeActionKind.QuickFix, types.CodeActionKind.Refactor])
            ),
            data_support=True,
            resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]),
        ),
    ),
    window=types.WindowClientCapabilities(work_done_progress=True, show_message=types.ShowMessageRequestClientCapabilities()),
    general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
)

# Neovim 0.11 declares less: no dynamic registration of sync, plain-text-first hover, utf-16.
NEOVIM = types.ClientCapabilities(
    workspace=types.WorkspaceClientCapabilities(configuration=True, workspace_folders=True, did_change_configuration=types.DidChangeConfigurationClientCapabilities(dynamic_registration=False)),
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True, will_save=True),
        inline_completion=types.InlineCompletionClientCapabilities(dynamic_registration=False),
        publish_diagnostics=types.PublishDiagnosticsClientCapabilities(related_information=True, tag_support=types.ClientDiagnosticsTagOptions(value_set=[types.DiagnosticTag.Unnecessary])),
        hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown, types.MarkupKind.PlainText]),
        code_action=types.CodeActionClientCapabilities(
            code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(value_set=["", "quickfix", "refactor", "source"])
            ),
        ),
    ),
    window=types.WindowClientCapabilities(work_done_progress=True),
    general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
)

CAPABILITIES = {"vscode": VSCODE, "neovim": NEOVIM}


def server_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HEEDLS_DATA_DIR"] = str(tmp / "data")
    env["HEEDLS_CACHE_DIR"] = str(tmp / "cache")
    return env


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


async def initialize(client: LanguageClient, root: Path, capabilities: types.ClientCapabilities, options: Any = None,
                     folders: list[Path] | None = None) -> types.InitializeResult:
    """`folders`: the workspace folders of a multi-root workspace (default: `root` alone)."""
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities,
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in folders or [root]],
            initialization_options=options,
        )
    )
    return result


class ClientFactory:
    """Starts `heedls serve` with a per-test data/cache dir; stops every client it made."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clients: list[LanguageClient] = []

    async def __call__(
        self,
        root: Path,
        capabilities: str | types.ClientCapabilities = "vscode",
        *,
        stub: str | None = "print('heedls {line}')",
        options: Any = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        folders: list[Path] | None = None,
        configuration: dict[str, Any] | None = None,
    ) -> LanguageClient:
        """`configuration`: what the client answers to workspace/configuration from the start,
        keyed by scopeUri ("" for the window), each the `heedls` section of that scope."""
        command = [sys.executable, "-m", "heedls", "serve", *(extra_args or [])]
        if stub is not None:
            command += ["--stub-provider", stub]
        environment = server_env(self.tmp)
        environment.update(env or {})
        client = await ClientServerConfig(server_command=command, server_env=environment).start()
        self.clients.append(client)
        for scope, settings in (configuration or {}).items():
            client.set_configuration(settings, section="heedls", scope_uri=scope or None)
        chosen = CAPABILITIES[capabilities] if isinstance(capabilities, str) else capabilities
        await initialize(client, root, chosen, options, folders)
        return client


@pytest.fixture
async def lsp(tmp_path: Path) -> Any:
    factory = ClientFactory(tmp_path)
    yield factory
    for client in factory.clients:
        try:
            await client.shutdown_session()
        except Exception:
            pass
        await client.stop()


@pytest.fixture(params=["vscode", "neovim"])
def editor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def plain(value: Any) -> Any:
    """pygls turns custom-method results into namedtuples; compare them as plain JSON values."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def inline_request(uri: str, line: int, character: int, invoked: bool = False) -> types.InlineCompletionParams:
    """textDocument/inlineCompletion at (line, character), as typing triggers it (or as an explicit
    "show suggestion" command does: `invoked`)."""
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=kind),
    )


def open_document(client: Any, path: Path, text: str) -> str:
    """didOpen of `path` with `text` (as a Python document, version 1); returns its uri."""
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text))
    )
    return uri


def nothing_to_show(result: Any) -> bool:
    """An inline-completion answer with nothing to show: an empty list, not null, so that a client
    clears the ghost text it still draws."""
    return isinstance(result, types.InlineCompletionList) and len(result.items) == 0
