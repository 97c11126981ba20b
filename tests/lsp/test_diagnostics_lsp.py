"""Diagnostics over the real stdio server: syntax errors while typing, ruff, test failures on save
with progress, cancellation by a newer save, and a hanging test killed at the time limit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tests.lsp.conftest import open_document, until

pytest.importorskip("heedls.analyzers.testrun", reason="the test runner (analyzers/testrun.py) is not there yet")

DEBOUNCE_MS = 120
OPTIONS: dict[str, Any] = {"lint": {"syntaxDebounceMs": DEBOUNCE_MS}, "tests": {"debounceMs": 50, "timeoutS": 30}}


def _open(client: Any, path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return open_document(client, path, text)


def _save(client: Any, uri: str) -> None:
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))


def _by_source(client: Any, uri: str, source: str) -> list[types.Diagnostic]:
    return [d for d in client.diagnostics.get(uri, []) if d.source == f"heedls/{source}"]


async def test_syntax_error_typed_is_reported_within_one_debounce(lsp: Any, workspace: Path) -> None:
    client = await lsp(workspace, "vscode", options=OPTIONS)
    uri = _open(client, workspace / "mod.py", "def area(w, h):\n    return w * h\n")
    await until(lambda: uri in client.diagnostics, 10, "the first publish")
    assert _by_source(client, uri, "syntax") == []

    # Type an unclosed call at the end of the function, as an editor would send it.
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(1, 16), types.Position(1, 16)), text=" + max(w"
                )
            ],
        )
    )
    sent = time.monotonic()
    found = await until(lambda: _by_source(client, uri, "syntax"), 5, "a syntax diagnostic")
    elapsed_ms = (time.monotonic() - sent) * 1000
    # One debounce plus a generous allowance for a loaded 2-core machine and the stdio round trip.
    assert elapsed_ms < DEBOUNCE_MS + 1500, elapsed_ms
    diag = found[0]
    assert diag.severity == types.DiagnosticSeverity.Error
    assert diag.message == "'(' was never closed"  # the interpreter's own words
    assert diag.range.start == types.Position(1, 22)  # the '(' of max(
    assert diag.code == "SyntaxError"
    assert diag.data["id"]

    # Fixing it clears the diagnostic.
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(1, 24), types.Position(1, 24)), text=", 0)"
                )
            ],
        )
    )
    await until(lambda: not _by_source(client, uri, "syntax"), 5, "the syntax diagnostic to clear")


async def test_ruff_findings_on_open_carry_code_link_and_fix_data(lsp: Any, workspace: Path) -> None:
    (workspace / "pyproject.toml").write_text('[tool.ruff]\nlint.select = ["F"]\n')
    client = await lsp(workspace, "neovim", options=OPTIONS)
    uri = _open(client, workspace / "lib.py", "import os\n\n\ndef f():\n    return 1\n")
    found = await until(lambda: _by_source(client, uri, "ruff"), 15, "a ruff diagnostic")
    (diag,) = found
    assert diag.code == "F401"
    assert diag.code_description is not None and "unused-import" in diag.code_description.href
    assert list(diag.tags or []) == [types.DiagnosticTag.Unnecessary]
    assert diag.data["fixable"] is True and diag.data["source"] == "ruff"


WORKSPACE_FILES = {
    "stats.py": "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / (len(xs) + 1)\n",
    "test_stats.py": "from stats import mean\n\n\ndef test_mean():\n    assert mean([2, 4]) == 3\n",
}


def _make(workspace: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (workspace / name).write_text(text, encoding="utf-8")


async def _saved_with_a_failing_test(lsp: Any, workspace: Path) -> tuple[Any, str, str]:
    """(client, stats.py's uri, test_stats.py's uri) once saving stats.py has run its failing test."""
    _make(workspace, WORKSPACE_FILES)
    client = await lsp(workspace, "vscode", options=OPTIONS)
    uri = _open(client, workspace / "stats.py", WORKSPACE_FILES["stats.py"])
    test_uri = (workspace / "test_stats.py").as_uri()
    _save(client, uri)
    await until(lambda: _by_source(client, test_uri, "pytest"), 60, "test failure diagnostics")
    return client, uri, test_uri


async def test_save_runs_related_tests_with_progress_and_diagnostics(lsp: Any, workspace: Path) -> None:
    client, uri, test_uri = await _saved_with_a_failing_test(lsp, workspace)
    at_test = _by_source(client, test_uri, "pytest")[0]
    assert at_test.severity == types.DiagnosticSeverity.Error
    assert at_test.range.start.line == 4  # the failing assert
    assert "test_mean" in at_test.message
    at_code = await until(lambda: _by_source(client, uri, "pytest"), 10, "a diagnostic in the code under test")
    # the code-side diagnostic links back to the failing test
    assert any(r.location.uri == test_uri for r in at_code[0].related_information or [])

    reports = await until(
        lambda: next((r for r in client.progress_reports.values() if r and isinstance(r[-1], types.WorkDoneProgressEnd)), None),
        10,
        "the end of the progress",
    )
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert "test_stats.py" in (reports[0].message or "")
    assert "1 failed" in (reports[-1].message or "")


SLOW_FILES = {
    "slow.py": "def value():\n    return 1\n",
    "test_slow.py": (
        "import os, time\nfrom slow import value\n\n\n"
        "def test_slow():\n"
        "    with open(os.environ['MARKS'], 'a') as f:\n        f.write('start\\n')\n"
        "    time.sleep(3)\n"
        "    with open(os.environ['MARKS'], 'a') as f:\n        f.write('end\\n')\n"
        "    assert value() == 2\n"
    ),
}


@pytest.mark.slow
async def test_newer_save_cancels_the_running_test_run(lsp: Any, workspace: Path, tmp_path: Path) -> None:
    _make(workspace, SLOW_FILES)
    marks = tmp_path / "marks.txt"
    client = await lsp(workspace, "vscode", options=OPTIONS, env={"MARKS": str(marks)})
    uri = _open(client, workspace / "slow.py", SLOW_FILES["slow.py"])
    _save(client, uri)
    await until(lambda: marks.exists() and "start" in marks.read_text(), 30, "the first run to start its test")
    _save(client, uri)  # a newer save while the first run is still sleeping
    await until(lambda: _by_source(client, uri, "pytest") or _by_source(client, (workspace / "test_slow.py").as_uri(), "pytest"), 60, "the second run's diagnostics")

    def ends() -> list[types.WorkDoneProgressEnd]:
        return [r[-1] for r in client.progress_reports.values() if r and isinstance(r[-1], types.WorkDoneProgressEnd)]

    await until(lambda: len(ends()) == 2, 10, "both progress reports to end")
    assert any("cancelled" in (e.message or "") for e in ends()), ends()
    assert any("1 failed" in (e.message or "") for e in ends()), ends()
    await asyncio.sleep(1.0)
    # two runs started the test; only the second one got to finish it (the first was killed)
    assert marks.read_text().split() == ["start", "start", "end"]


HANGING_FILES = {
    "hang.py": "def wait():\n    while True:\n        pass\n",
    "test_hang.py": "import time\nfrom hang import wait\n\n\ndef test_hang():\n    time.sleep(120)\n",
}


async def test_hanging_test_is_killed_at_the_timeout_and_reported(lsp: Any, workspace: Path) -> None:
    _make(workspace, HANGING_FILES)
    options = {**OPTIONS, "tests": {"debounceMs": 50, "timeoutS": 3}}
    client = await lsp(workspace, "vscode", options=options)
    uri = _open(client, workspace / "hang.py", HANGING_FILES["hang.py"])
    test_uri = (workspace / "test_hang.py").as_uri()
    started = time.monotonic()
    _save(client, uri)

    def timeout_diagnostic() -> list[types.Diagnostic]:
        return [d for uri_ in (uri, test_uri) for d in _by_source(client, uri_, "pytest") if d.code == "timeout"]

    (diag,) = await until(timeout_diagnostic, 40, "a timeout diagnostic")
    assert time.monotonic() - started < 30
    assert "killed" in diag.message and "3 s" in diag.message


async def test_untrusted_workspace_runs_no_tests(lsp: Any, workspace: Path) -> None:
    _make(workspace, WORKSPACE_FILES)
    client = await lsp(workspace, "vscode", options={**OPTIONS, "tests": {"trusted": False}})
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="heedls.runTests", arguments=[(workspace / "stats.py").as_uri()])
    )
    assert result["ran"] is False and "trusted" in result["reason"]


async def test_run_tests_command_runs_the_related_tests(lsp: Any, workspace: Path) -> None:
    _make(workspace, WORKSPACE_FILES)
    client = await lsp(workspace, "neovim", options=OPTIONS)
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="heedls.runTests", arguments=[(workspace / "stats.py").as_uri()])
    )
    assert result["ran"] is True and result["failed"] == 1 and result["passed"] == 0
    assert result["targets"] == [str((workspace / "test_stats.py").resolve())]


async def test_positions_are_in_utf16_code_units(lsp: Any, workspace: Path) -> None:
    client = await lsp(workspace, "neovim", options=OPTIONS)
    text = "s = '😀😀' + max(1\n"
    uri = _open(client, workspace / "emoji.py", text)
    (diag,) = await until(lambda: _by_source(client, uri, "syntax"), 10, "a syntax diagnostic")
    # '(' is Python character 14; each emoji is two UTF-16 code units
    assert text[14] == "("
    assert diag.range.start == types.Position(0, 16)


async def test_a_fix_saved_within_the_syntax_debounce_runs_the_tests(lsp: Any, workspace: Path) -> None:
    """Format-on-save or a quick Ctrl+S: the save decides on the text saved, not the verdict on
    the text of one debounce ago (a syntax error there would skip the run)."""
    _make(workspace, WORKSPACE_FILES)
    slow = {**OPTIONS, "lint": {"syntaxDebounceMs": 3000}}
    client = await lsp(workspace, "vscode", options=slow)
    text = WORKSPACE_FILES["stats.py"]
    uri = _open(client, workspace / "stats.py", text.replace("return total /", "return total /("))
    await until(lambda: _by_source(client, uri, "syntax"), 10, "the syntax error of the opened text")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
    (workspace / "stats.py").write_text(text)
    _save(client, uri)  # at once: the syntax debounce (3 s) has not run
    test_uri = (workspace / "test_stats.py").as_uri()
    await until(lambda: _by_source(client, test_uri, "pytest"), 60, "the tests run on the saved fix")
    assert not _by_source(client, uri, "syntax")


async def test_save_all_runs_the_tests_of_every_file_saved(lsp: Any, workspace: Path) -> None:
    """Two saves within the debounce (Save All): one run, of the tests of both files."""
    _make(workspace, {
        "a.py": "def one():\n    return 2\n", "test_a.py": "from a import one\n\n\ndef test_one():\n    assert one() == 1\n",
        "b.py": "def two():\n    return 3\n", "test_b.py": "from b import two\n\n\ndef test_two():\n    assert two() == 2\n",
    })
    client = await lsp(workspace, "vscode", options={**OPTIONS, "tests": {"debounceMs": 300, "timeoutS": 30}})
    uris = [_open(client, workspace / name, (workspace / name).read_text()) for name in ("a.py", "b.py")]
    for uri in uris:
        _save(client, uri)
    for name in ("test_a.py", "test_b.py"):
        await until(lambda: _by_source(client, (workspace / name).as_uri(), "pytest"), 60, f"{name}'s failure")  # noqa: B023


async def test_a_collection_error_goes_once_its_test_file_is_fixed(lsp: Any, workspace: Path) -> None:
    """The whole suite reports that test_x.py cannot be collected; fixing and saving test_x.py
    runs just that file, and its result replaces the collection error."""
    _make(workspace, {"m.py": "def f():\n    return 1\n",
                      "test_x.py": "import no_such_module\n\n\ndef test_x():\n    assert True\n"})
    client = await lsp(workspace, "vscode", options=OPTIONS)
    uri = _open(client, workspace / "m.py", "def f():\n    return 1\n")
    _save(client, uri)  # no related tests: the whole suite runs
    test_uri = (workspace / "test_x.py").as_uri()
    await until(lambda: _by_source(client, test_uri, "pytest"), 60, "the collection error")
    fixed = "def test_x():\n    assert True\n"
    _save(client, _open(client, workspace / "test_x.py", fixed))
    await until(lambda: not _by_source(client, test_uri, "pytest"), 60, "the collection error to go")


async def test_a_deleted_test_files_failures_go_with_it(lsp: Any, workspace: Path) -> None:
    """Renaming test_stats.py: its failures (and those they put on stats.py) do not stay behind."""
    client, uri, test_uri = await _saved_with_a_failing_test(lsp, workspace)
    await until(lambda: _by_source(client, uri, "pytest"), 10, "the failure in the code under test")
    (workspace / "test_stats.py").rename(workspace / "test_mean.py")
    client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
        types.FileEvent(uri=test_uri, type=types.FileChangeType.Deleted),
        types.FileEvent(uri=(workspace / "test_mean.py").as_uri(), type=types.FileChangeType.Created)]))
    await until(lambda: not _by_source(client, test_uri, "pytest") and not _by_source(client, uri, "pytest"), 10,
                "the deleted file's failures to go")
    _save(client, uri)  # the renamed file's run: each failure once
    # each file's diagnostics come in a notification of their own: wait for both files'
    await until(lambda: _by_source(client, (workspace / "test_mean.py").as_uri(), "pytest")
                and _by_source(client, uri, "pytest"), 60, "the new failures")
    messages = [d.message for d in _by_source(client, uri, "pytest")]
    assert messages and len(messages) == len(set(messages))


async def test_ruff_follows_the_buffer_as_it_is_typed(lsp: Any, workspace: Path) -> None:
    """Lines added above a finding without saving: the finding moves with its code."""
    (workspace / "pyproject.toml").write_text('[tool.ruff]\nlint.select = ["F"]\n')
    client = await lsp(workspace, "vscode", options={**OPTIONS, "lint": {"lintDebounceMs": 100}})
    text = "import os\n\n\ndef f():\n    return 1\n"
    uri = _open(client, workspace / "m.py", text)
    [first] = await until(lambda: _by_source(client, uri, "ruff"), 15, "F401")
    assert first.range.start.line == 0
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="# a\n# b\n# c\n" + text)]))
    await until(lambda: [d for d in _by_source(client, uri, "ruff") if d.range.start.line == 3], 15, "F401 on line 3")


async def _ruff_fixes(client: Any, uri: str, diagnostic: types.Diagnostic) -> list[types.CodeAction]:
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diagnostic.range,
        context=types.CodeActionContext(diagnostics=[diagnostic])))
    return [a for a in actions or [] if isinstance(a, types.CodeAction) and a.edit is not None
            and any(d.source == "heedls/ruff" for d in a.diagnostics or [])]


async def test_a_ruff_fix_is_not_offered_on_a_text_ruff_has_not_seen(lsp: Any, workspace: Path) -> None:
    """ruff reruns a debounce after an edit. In between, the fix for an unused import named the line
    the import had been on: with three lines typed above, applying it deleted a comment."""
    (workspace / "pyproject.toml").write_text('[tool.ruff]\nlint.select = ["F"]\n')
    client = await lsp(workspace, "vscode", options={**OPTIONS, "lint": {"lintDebounceMs": 3000}})
    text = "import os\n\n\ndef f():\n    return 1\n"
    uri = _open(client, workspace / "m.py", text)
    [f401] = await until(lambda: _by_source(client, uri, "ruff"), 15, "F401")
    assert await _ruff_fixes(client, uri, f401)  # on the text ruff ran on
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="# a\n# b\n# c\n" + text)]))
    assert await _ruff_fixes(client, uri, f401) == []  # line 0 is "# a" now
    [moved] = await until(lambda: [d for d in _by_source(client, uri, "ruff") if d.range.start.line == 3], 15,
                          "F401 on line 3")
    [fix] = await _ruff_fixes(client, uri, moved)
    assert fix.edit is not None and fix.edit.changes is not None
    assert [e.range.start.line for e in fix.edit.changes[uri]] == [3]


async def test_a_document_in_a_folder_with_a_space_or_an_accent_gets_its_diagnostics(lsp: Any, workspace: Path) -> None:
    """Editors send `my%20project/…` (percent-encoded); pygls keeps the document under the decoded
    URI. Results are published, on the URI the client sent."""
    (workspace / "pyproject.toml").write_text('[tool.ruff]\nlint.select = ["F"]\n')
    folder = workspace / "my project é"
    folder.mkdir()
    client = await lsp(workspace, "vscode", options=OPTIONS)
    uri = _open(client, folder / "lib.py", "import os\n\n\ndef f():\n    return 1\n")
    assert "%20" in uri and "%C3%A9" in uri
    (diag,) = await until(lambda: _by_source(client, uri, "ruff"), 15, "a ruff diagnostic")
    assert diag.code == "F401"
    bad = _open(client, folder / "bad.py", "def f(:\n    return 1\n")
    await until(lambda: _by_source(client, bad, "syntax"), 10, "a syntax diagnostic")


async def test_a_workspace_opened_through_a_symlink_gets_results_on_the_uris_it_opened(
        lsp: Any, workspace: Path, tmp_path: Path) -> None:
    """The analyzers see resolved paths; the client opened `link/stats.py`: test failures and
    quick-fix edits go to the client's URIs, not to another file it never opened."""
    real = tmp_path / "real"
    real.mkdir()
    _make(real, {**WORKSPACE_FILES, "pyproject.toml": '[tool.ruff]\nlint.select = ["F"]\n'})
    link = workspace / "link"
    link.symlink_to(real)
    client = await lsp(link, "vscode", options=OPTIONS)
    text = "import os\n" + WORKSPACE_FILES["stats.py"]
    uri = _open(client, link / "stats.py", text)
    test_uri = (link / "test_stats.py").as_uri()
    _save(client, uri)
    await until(lambda: _by_source(client, test_uri, "pytest"), 60, "test failure diagnostics on the link's URI")
    assert not [u for u in client.diagnostics if str(real.as_uri()) in u and client.diagnostics[u]]
    (f401,) = await until(lambda: _by_source(client, uri, "ruff"), 15, "F401")
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=f401.range,
        context=types.CodeActionContext(diagnostics=[f401])))
    edits = [a.edit for a in actions or [] if isinstance(a, types.CodeAction) and a.edit is not None]
    assert edits and all(set(e.changes or {}) == {uri} for e in edits), edits


async def test_a_document_above_the_size_limit_is_not_analysed_and_that_is_said_once(lsp: Any, workspace: Path) -> None:
    """compile() and tree-sitter of a 10 MB buffer cost gigabytes: above `lint.maxFileKb` an open
    document gets no syntax or ruff diagnostics, and the log says so once; one under the limit is
    analysed as ever, the same document too once it is back under it."""
    (workspace / "pyproject.toml").write_text('[tool.ruff]\nlint.select = ["F"]\n')
    client = await lsp(workspace, "vscode", options={**OPTIONS, "lint": {"maxFileKb": 1, "lintDebounceMs": 50}})
    unused = "import os\n\n\ndef f():\n    return 1\n"  # F401
    broken = "def f(:\n    return 1\n"
    padding = "".join(f"# line {i} of a generated table\n" for i in range(60))  # ~2 kB
    big = _open(client, workspace / "big.py", padding + unused)
    small = _open(client, workspace / "small.py", unused)
    await until(lambda: _by_source(client, small, "ruff"), 15, "the small file's F401")
    await until(lambda: big in client.diagnostics, 15, "the large file's publish")

    def said() -> list[str]:
        return [m.message for m in client.log_messages if "above lint.maxFileKb" in m.message]

    await until(said, 10, "the log message")

    def change(version: int, text: str) -> None:
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=big, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))

    change(2, padding + broken)
    await asyncio.sleep(1.0)  # two debounces and a ruff run
    assert _by_source(client, big, "syntax") == [] and _by_source(client, big, "ruff") == []
    assert len(said()) == 1 and "big.py" in said()[0]
    assert not [m for m in client.log_messages if "unknown setting" in m.message]

    change(3, broken)
    (error,) = await until(lambda: _by_source(client, big, "syntax"), 10, "the syntax error under the limit")
    assert error.range.start.line == 0
    change(4, unused)
    await until(lambda: _by_source(client, big, "ruff"), 15, "F401 under the limit")


async def test_a_document_with_more_findings_than_the_limit_gets_the_first_and_a_count_of_the_rest(
    lsp: Any, workspace: Path
) -> None:
    """`from x import *` and a name used on every line is one F405 per use: tens of thousands in a
    long module, a notification of megabytes that held the server for seconds. At most
    `lint.maxDiagnostics` are published, the first in the file's order, and one more says how many
    are not shown and how to list them all."""
    (workspace / "pyproject.toml").write_text('[tool.ruff]\nlint.select = ["F"]\n')
    client = await lsp(workspace, "vscode", options={**OPTIONS, "lint": {"maxDiagnostics": 10, "lintDebounceMs": 50}})
    uri = _open(client, workspace / "many.py", "".join(f"value_{i} = undefined_{i}\n" for i in range(30)))
    await until(lambda: _by_source(client, uri, "ruff"), 15, "the ruff findings")
    published = client.diagnostics[uri]
    assert len(published) == 11
    assert [d.range.start.line for d in published[:10]] == list(range(10))  # the first ten, in order
    rest = published[10]
    assert rest.severity == types.DiagnosticSeverity.Information and rest.range.start.line == 10
    assert rest.message.startswith("20 more diagnostics in this file are not shown (lint.maxDiagnostics = 10)")
    assert "heedls check many.py" in rest.message
