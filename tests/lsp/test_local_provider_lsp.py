"""The embedded `local` provider behind the real stdio server: what it knows of a multi-root
workspace, and the first request in a freshly opened large file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from lsprotocol import types

from tests.lsp.conftest import inline_request, open_document

OPTIONS = {"inline": {"debounceMs": 0}, "gate": {"mode": "off"}}
APP = "import os\n\n\ndef main():\n    return os.getcwd()\n"
LIB = "def zebras(herd):\n    zebra_count = count_the_zebras(herd)\n    return zebra_count\n"


async def _suggested(client, uri: str, line: int, character: int, text: str, timeout: float) -> bool:
    """Ask at the place until `text` is suggested (the index builds in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = await client.text_document_inline_completion_async(inline_request(uri, line, character))
        if answer is not None and any(item.insert_text == text for item in answer.items):
            return True
        await asyncio.sleep(0.2)
    return False


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    app, lib = tmp_path / "app", tmp_path / "lib"
    (app / "app").mkdir(parents=True)
    (app / "app" / "main.py").write_text(APP)
    (lib / "zoo").mkdir(parents=True)
    (lib / "zoo" / "herd.py").write_text(LIB)
    return app, lib


async def test_a_name_defined_only_in_the_second_workspace_folder_is_suggested(lsp, tmp_path: Path) -> None:
    app, lib = _folders(tmp_path)
    client = await lsp(app, "vscode", stub=None, options=OPTIONS, folders=[app, lib])
    text = "zebra_count = cou"
    uri = open_document(client, app / "app" / "new.py", text)
    assert await _suggested(client, uri, 0, len(text), "nt_the_zebras(herd)", 30.0)


async def test_a_workspace_folder_added_later_is_indexed_at_once(lsp, tmp_path: Path) -> None:
    app, lib = _folders(tmp_path)
    client = await lsp(app, "neovim", stub=None, options=OPTIONS, folders=[app])
    text = "import \nzebra_count = cou"
    uri = open_document(client, app / "app" / "new.py", text)
    assert await _suggested(client, uri, 0, len("import "), "os", 30.0)  # the first folder's index is built
    client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(
        event=types.WorkspaceFoldersChangeEvent(added=[types.WorkspaceFolder(uri=lib.as_uri(), name="lib")], removed=[])))
    # the rebuild after a change of folders does not wait the two minutes that space out rebuilds
    assert await _suggested(client, uri, 1, len("zebra_count = cou"), "nt_the_zebras(herd)", 30.0)


def _long_document(lines: int = 4000) -> str:
    """A long module that ruff finds clean: 44,000 undefined names made the server's diagnostics
    (a 10 MB notification) the work priming waited on, on a busy host for more than 3 s."""
    fields = ", ".join(f"field_{j}" for j in range(10))
    header = (f"from data import compute_total, factor, record, rows, {fields}\n\n"
              "__all__ = [\"total\"]\n")
    body = "".join(f"row_{i} = record({i}, {fields})\n" if i % 10 else "total = compute_total(rows, factor)\n"
                   for i in range(lines - header.count("\n")))
    return header + body + "total = comp"


async def test_the_first_request_in_a_freshly_opened_4000_line_file_gets_a_suggestion(lsp, workspace: Path) -> None:
    """The first request used to spend the provider's budget (45 ms) tokenizing the thousands of
    lines above the cursor and answer nothing; the document is now tokenized when it is opened,
    while the user has not typed yet, so the first request after a moment answers."""
    client = await lsp(workspace, "vscode", stub=None, options=OPTIONS)
    text = _long_document()
    uri = open_document(client, workspace / "long.py", text)
    await asyncio.sleep(3.0)  # the moment before the first keystroke; nothing is asked meanwhile
    answer = await client.text_document_inline_completion_async(inline_request(uri, 4000, len("total = comp")))
    assert answer is not None and [item.insert_text for item in answer.items] == ["ute_total(rows, factor)"]
