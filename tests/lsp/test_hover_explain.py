"""Hover and `heedls/explain` over the real stdio server: a saved module whose test fails gets test
diagnostics, and hovering them (or asking `heedls/explain`) gives the plain-language explanation
with the failing input and the wrong value; a syntax error is explained while typing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tests.lsp.conftest import open_document, plain, until

pytest.importorskip("heedls.analyzers.testrun", reason="the test runner is not there yet")

OPTIONS: dict[str, Any] = {"inline": {"debounceMs": 100}, "tests": {"debounceMs": 50, "timeoutS": 30}}
FILES = {
    "scores.py": "def best(scores):\n    top = 0\n    for s in scores:\n        if s < top:\n"
                 "            top = s\n    return top\n",
    "test_scores.py": "from scores import best\n\n\ndef test_best():\n    assert best([3, 9, 4]) == 9\n",
}


def _pytest_diags(client: Any, uri: str) -> list[types.Diagnostic]:
    return [d for d in client.diagnostics.get(uri, []) if "pytest" in (d.source or "")]


async def _failing_workspace(lsp: Any, workspace: Path, editor: str) -> tuple[Any, str, str]:
    for name, text in FILES.items():
        (workspace / name).write_text(text, encoding="utf-8")
    client = await lsp(workspace, editor, options=OPTIONS)
    uri = open_document(client, workspace / "scores.py", FILES["scores.py"])
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    await until(lambda: _pytest_diags(client, uri), 60, "pytest diagnostics in the code under test")
    return client, uri, (workspace / "test_scores.py").as_uri()


async def test_hover_on_a_test_diagnostic_shows_its_explanation(lsp: Any, workspace: Path, editor: str) -> None:
    client, uri, test_uri = await _failing_workspace(lsp, workspace, editor)
    diag = _pytest_diags(client, uri)[0]
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=diag.range.start.line, character=diag.range.start.character + 1)))
    assert hover is not None and isinstance(hover.contents, types.MarkupContent)
    assert hover.contents.kind == types.MarkupKind.Markdown
    text = hover.contents.value
    assert "best([3, 9, 4])" in text  # the failing input
    assert "`0`" in text and "`9`" in text  # the wrong value and the expected one
    assert hover.range is not None and hover.range.start.line == diag.range.start.line
    # the failing assertion in the test file explains too
    test_diag = await until(lambda: _pytest_diags(client, test_uri), 10, "the diagnostic at the assertion")
    hover2 = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=test_uri), position=test_diag[0].range.start))
    assert hover2 is not None and "best([3, 9, 4])" in hover2.contents.value  # type: ignore[union-attr]
    # nowhere near a diagnostic: no hover
    empty = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=0, character=0)))
    assert empty is None or "heedls" not in str(getattr(empty.contents, "value", ""))


async def test_explain_request_returns_message_explanation_and_range(lsp: Any, workspace: Path) -> None:
    client, uri, _test_uri = await _failing_workspace(lsp, workspace, "vscode")
    diag = _pytest_diags(client, uri)[0]
    result = plain(await client.protocol.send_request_async("heedls/explain", {
        "textDocument": {"uri": uri},
        "position": {"line": diag.range.start.line, "character": diag.range.start.character},
    }))
    explanations = result["explanations"]
    assert explanations, result
    first = explanations[0]
    assert set(first) >= {"message", "explanation", "range"}
    assert first["range"]["start"]["line"] == diag.range.start.line
    assert "best([3, 9, 4])" in first["explanation"] and "returned `0`" in first["explanation"]
    # a line without diagnostics has nothing to explain
    none = plain(await client.protocol.send_request_async("heedls/explain", {
        "textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}}))
    assert none == {"explanations": []} or all(e["range"]["start"]["line"] == 0 for e in none["explanations"])


async def test_a_syntax_error_is_explained_on_hover(lsp: Any, workspace: Path) -> None:
    client = await lsp(workspace, "neovim", options=OPTIONS)
    path = workspace / "broken.py"
    text = "def f(x)\n    return x\n"
    path.write_text(text, encoding="utf-8")
    uri = open_document(client, path, text)
    diags = await until(lambda: [d for d in client.diagnostics.get(uri, []) if "syntax" in (d.source or "")],
                         10, "the syntax diagnostic")
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=diags[0].range.start))
    assert hover is not None
    value = hover.contents.value  # type: ignore[union-attr]
    assert "Syntax error" in value and "colon" in value
