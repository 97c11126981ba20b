"""A fix's edit counts lines as the editor does (only `\\r\\n`, `\\r` and `\\n` end one), and names
the document version it was made for to a client that checks versions."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from heedls.analyzers.repair.engine import RepairResult
from heedls.server.config import HeedlsConfig
from heedls.server.features.code_actions import RepairService, code_actions, minimal_edit
from lsprotocol import types


def test_a_fix_below_a_form_feed_edits_the_line_the_editor_numbers_as_that_line() -> None:
    # PEP 8 allows a form feed between sections; str.splitlines broke a line there, and the edit
    # replaced the line after the buggy one
    old = "x = 1\n\x0c\ndef f(a):\n    return a - 1\n"
    rng, text = minimal_edit(old, old.replace("a - 1", "a + 1"))
    assert (rng.start, rng.end) == (types.Position(line=3, character=0), types.Position(line=4, character=0))
    assert text == "    return a + 1\n"


def test_a_last_line_ended_by_a_carriage_return_is_replaced_with_its_line_break() -> None:
    # a range ending past the "\r" on that line is clamped before it: the old break stayed behind
    rng, text = minimal_edit("a\rb\r", "a\rc\r")
    assert (rng.start, rng.end) == (types.Position(line=1, character=0), types.Position(line=2, character=0))
    assert text == "c\r"


def test_a_proven_fix_is_offered_as_a_change_of_the_document_version_to_a_client_that_checks_versions(
        tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    old = "def f(a):\n    return a - 1\n"
    path.write_text(old)
    uri = path.as_uri()
    document = SimpleNamespace(source=old, version=7)
    caps = types.ClientCapabilities(workspace=types.WorkspaceClientCapabilities(
        workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)))
    server = SimpleNamespace(services={}, workspace=SimpleNamespace(text_documents={uri: document}),
                             config_for=lambda path: HeedlsConfig(), client_capabilities=caps)
    service = RepairService(server)
    new = old.replace("a - 1", "a + 1")
    result = RepairResult(True, "patch", 3, 4, 1.0, "Line 2: `-` → `+`.", "fixed", [], 1.0, "binary-operator",
                          new_text=new)
    service.remember(uri, old, result, files=[], stats=[])
    here = types.Range(start=types.Position(line=1, character=0), end=types.Position(line=1, character=0))
    actions = code_actions(server, service, types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=here, context=types.CodeActionContext(diagnostics=[])))

    edit = actions[0].edit
    assert actions[0].title.startswith("Fix:") and edit is not None and edit.changes is None
    [change] = edit.document_changes or []
    assert isinstance(change, types.TextDocumentEdit)
    assert change.text_document == types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=7)
    line_2 = types.Range(start=types.Position(line=1, character=0), end=types.Position(line=2, character=0))
    assert change.edits == [types.TextEdit(range=line_2, new_text="    return a + 1\n")]
