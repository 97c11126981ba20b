"""Code actions built from diagnostics: ruff applicability respected; cached validated repairs offered."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from heedls.analyzers.model import Diagnostic, Fix, Range, TextEdit
from heedls.analyzers.repair.engine import PlausibleFix, RepairResult
from heedls.server.config import HeedlsConfig
from heedls.server.features.code_actions import RepairService, code_actions, minimal_edit
from lsprotocol import types

TEXT = "import os\nx = 1\n\n\ndef f(a):\n    return a - 1\n"


class FakeStore:
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics

    def for_uri(self, uri: str) -> list[Diagnostic]:
        return self.diagnostics


def _server(tmp_path: Path, diagnostics: list[Diagnostic]) -> tuple[Any, str]:
    path = tmp_path / "m.py"
    path.write_text(TEXT)
    uri = path.as_uri()
    document = SimpleNamespace(source=TEXT)
    workspace = SimpleNamespace(get_text_document=lambda u: document, text_documents={str(path.as_uri()): document})
    server = SimpleNamespace(services={"diagnostics": FakeStore(diagnostics)}, workspace=workspace,
                             config_for=lambda path: HeedlsConfig())
    return server, uri


def _fix(path: str, title: str, applicability: str) -> Fix:
    return Fix(title, (TextEdit(path, Range.of(0, 0, 1, 0), ""),), applicability, "ruff")  # type: ignore[arg-type]


def _params(uri: str, line: int = 0) -> types.CodeActionParams:
    return types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=line, character=0), end=types.Position(line=line, character=0)),
        context=types.CodeActionContext(diagnostics=[]),
    )


def test_ruff_fixes_respect_applicability(tmp_path: Path) -> None:
    path = str(tmp_path / "m.py")
    diag = Diagnostic(path, Range.of(0, 0, 0, 9), "warning", "ruff", "F401", "`os` imported but unused",
                      fixes=[_fix(path, "Remove unused import", "safe"), _fix(path, "Risky rewrite", "unsafe"),
                             _fix(path, "Shown only", "display-only"), _fix(path, "A guess", "hint")])
    server, uri = _server(tmp_path, [diag])
    actions = code_actions(server, RepairService(server), _params(uri))  # type: ignore[arg-type]
    titles = [a.title for a in actions]
    assert titles == ["Remove unused import", "Risky rewrite (unsafe)"]
    assert all(a.kind == types.CodeActionKind.QuickFix for a in actions)
    assert actions[0].is_preferred and not actions[1].is_preferred
    assert actions[0].edit is not None and actions[0].edit.changes is not None
    edit = actions[0].edit.changes[uri][0]
    assert (edit.range.start.line, edit.range.end.line, edit.new_text) == (0, 1, "")


def test_actions_only_for_the_requested_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "m.py")
    diag = Diagnostic(path, Range.of(0, 0, 0, 9), "warning", "ruff", "F401", "unused",
                      fixes=[_fix(path, "Remove unused import", "safe")])
    server, uri = _server(tmp_path, [diag])
    assert code_actions(server, RepairService(server), _params(uri, line=5)) == []  # type: ignore[arg-type]


def test_a_cached_validated_repair_is_offered_with_its_edit(tmp_path: Path) -> None:
    path = str(tmp_path / "m.py")
    failing = Diagnostic(path, Range.of(5, 4, 5, 16), "error", "pytest", "AssertionError", "test_f failed")
    server, uri = _server(tmp_path, [failing])
    service = RepairService(server)  # type: ignore[arg-type]
    new = TEXT.replace("a - 1", "a + 1")
    fix = PlausibleFix(new, "patch", "binary-operator", "`-` → `+`", 6, 0.9, 1, "mutation", 1.0, True)
    result = RepairResult(True, "patch", 3, 4, 1.0, "Line 6: `-` → `+`.", "fixed", [fix], 1.0, "binary-operator",
                          new_text=new)
    service.remember(uri, TEXT, result, files=[], stats=[])
    actions = code_actions(server, service, _params(uri, line=5))  # type: ignore[arg-type]
    assert actions[0].title == "Fix: `-` → `+` (tests pass)"
    assert actions[0].is_preferred and actions[0].diagnostics
    assert actions[0].edit is not None and actions[0].edit.changes is not None
    (edit,) = actions[0].edit.changes[uri]
    assert edit.range.start.line == 5 and edit.new_text == "    return a + 1\n"
    # one the budget left no time to check in a fresh process says so in its title
    unchecked = dataclasses.replace(fix, confirmed=False)
    service.remember(uri, TEXT, dataclasses.replace(result, fixes=[unchecked]), files=[], stats=[])
    late = code_actions(server, service, _params(uri, line=5))  # type: ignore[arg-type]
    assert late[0].title == "Fix: `-` → `+` (tests pass; not confirmed in a fresh process)"
    service.remember(uri, TEXT, result, files=[], stats=[])
    # a stale cache (the document changed since) offers nothing
    service.remember(uri, TEXT + "# edited\n", result, files=[], stats=[])
    assert not [a for a in code_actions(server, service, _params(uri, line=5)) if a.title.startswith("Fix:")]  # type: ignore[arg-type]


def test_minimal_edit_spans_only_the_changed_lines() -> None:
    rng, text = minimal_edit("a\nb\nc\n", "a\nB\nc\n")
    assert (rng.start.line, rng.end.line, text) == (1, 2, "B\n")
    rng, text = minimal_edit("a\nb", "a\nc")  # no trailing newline
    assert (rng.start.line, rng.end.line, rng.end.character, text) == (1, 1, 1, "c")
