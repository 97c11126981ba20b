"""An editor driving the server with unusual but legal input: document URIs that name no file of
this machine (a Windows client's `file:///c%3A/…`, a folder that is gone), positions past the end
of a line that is not ASCII. Each gets a clear answer or a graceful fallback, never an error
from deep inside, and never work done somewhere the user did not ask for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.raw_server import RawServer


@pytest.fixture
def started(tmp_path: Path):
    """An editor with workspace `ws`, the server started in `elsewhere`: another project, whose
    test writes `ran-elsewhere` when it is run."""
    elsewhere, root = tmp_path / "elsewhere", tmp_path / "ws"
    elsewhere.mkdir()
    root.mkdir()
    (elsewhere / "pyproject.toml").write_text("[project]\nname = 'elsewhere'\n")
    (elsewhere / "test_other.py").write_text(
        f"def test_other():\n    open({str(tmp_path / 'ran-elsewhere')!r}, 'w').close()\n")
    editor = RawServer(tmp_path, cwd=elsewhere)
    caps = {"textDocument": {"inlineCompletion": {}, "publishDiagnostics": {}, "hover": {}},
            "general": {"positionEncodings": ["utf-16"]}}
    assert "result" in editor.request("init", "initialize", {"processId": None, "rootUri": root.as_uri(), "capabilities": caps})
    editor.send({"method": "initialized", "params": {}})
    yield editor, root, tmp_path
    editor.close()


def test_run_tests_for_a_windows_clients_uri_never_runs_the_tests_of_the_servers_working_directory(started) -> None:
    editor, root, tmp = started
    uri = "file:///c%3A/Users/me/project/m.py"  # on this machine, a path relative to nothing
    editor.open(uri, "x = 1\n")

    answer = editor.request(1, "workspace/executeCommand", {"command": "heedls.runTests", "arguments": [uri]})

    assert "result" in answer, answer
    assert not (tmp / "ran-elsewhere").exists()  # the server's working directory's project was tested


def test_run_tests_for_a_document_whose_folder_is_not_on_disk_says_so(started) -> None:
    editor, root, tmp = started
    uri = (tmp / "gone" / "m.py").as_uri()
    editor.open(uri, "x = 1\n")

    answer = editor.request(1, "workspace/executeCommand", {"command": "heedls.runTests", "arguments": [uri]})

    assert answer.get("result") == {"ran": False, "reason": f"there is no folder {tmp / 'gone'} to run tests in"}, answer
    assert "Traceback" not in editor.stderr_path.read_text()


LINES = 'print("e", undefined_one)\nprint("é", undefined_two)\n'  # ruff F821 on each name


@pytest.mark.parametrize("line", [0, 1], ids=["ascii", "not-ascii"])
def test_hover_past_the_end_of_a_line_is_hover_at_its_end_on_any_line(started, line: int) -> None:
    editor, root, tmp = started
    uri = (root / "names.py").as_uri()
    editor.open(uri, LINES)
    undefined = [d for d in editor.diagnostics(uri) if d.get("code") == "F821"]
    assert [d["range"]["start"]["line"] for d in undefined] == [0, 1]
    end = len(LINES.splitlines()[line])

    def hover(character: int) -> Any:
        return editor.request(f"hover-{line}-{character}", "textDocument/hover",
                              {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}})["result"]

    assert hover(end - 3) is not None  # on the undefined name
    # past the end is the end, after ")": the name's diagnostic ends before it (pygls' conversion
    # took the line that is not ASCII to its last character, inside the diagnostic's range)
    assert hover(end) is None
    assert hover(end + 40) is None


def test_a_body_that_is_not_json_is_a_parse_error_and_one_line_in_the_log(started) -> None:
    editor, root, tmp = started
    editor.raw(b'{"jsonrpc": "2.0", "id": 5, "method": "heedls/status", "params": {"x": ')  # cut short
    editor.raw(b'{"jsonrpc": "2.0", "id": 6, "method": "heedls/status", "params": {"x": "\xff"}}')

    assert editor.wait(None)["error"]["code"] == -32700
    assert "result" in editor.request(7, "heedls/status", None)  # it keeps serving
    log = editor.stderr_path.read_text()
    assert "Traceback" not in log, log  # pygls' 15-line traceback for each, then heedls' line
    assert "Expecting value: line 1 column 72" in log and "can't decode byte 0xff" in log  # one line each


def test_a_change_to_a_document_never_opened_is_ignored_and_the_log_says_so(started) -> None:
    editor, root, tmp = started
    uri = (root / "never opened.py").as_uri()
    editor.send({"method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": 2},
                                                                "contentChanges": [{"text": "x = 1\n"}]}})
    editor.send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})

    assert "result" in editor.request(1, "heedls/status", None)
    log = editor.stderr_path.read_text()
    assert f"a change to {uri}, which is not open (no didOpen, or after didClose): ignored" in log, log
    assert "KeyError" not in log


def test_exit_sent_before_shutdown_is_answered_still_keeps_the_log_and_is_status_0(tmp_path: Path) -> None:
    """A client that sends `exit` right behind `shutdown` (without waiting for its answer, or after
    giving up on a slow disk): the exit interrupted shutdown's close of the telemetry stores (an
    ERROR with two tracebacks in the log) and the status was 1, though shutdown had been received.
    The exit now waits for the close: the suggestion asked for just before is on disk, status 0."""
    from heedls.server.telemetry.store import read_events

    root = tmp_path / "ws"
    root.mkdir()
    editor = RawServer(tmp_path)
    editor.initialize(root)
    uri = (root / "m.py").as_uri()
    editor.open(uri, "def f():\n    \n")
    editor.send({"method": "workspace/didChangeConfiguration",
                 "params": {"settings": {"heedls": {"inline": {"debounceMs": 0}, "gate": {"mode": "off"}}}}})
    answer = editor.inline("ask", uri, 1, 4)
    items = answer["result"]["items"] if isinstance(answer["result"], dict) else answer["result"]
    assert items, answer
    editor.send({"id": "bye", "method": "shutdown"})
    editor.send({"method": "exit"})  # at once
    assert editor.proc.wait(30) == 0, editor.stderr()
    log = editor.stderr()
    assert "Traceback" not in log and "ERROR" not in log, log
    events = [e for store in (tmp_path / "data").rglob("events.sqlite3") for e in read_events(store)]
    assert any(e.suggestion for e in events), events  # the suggestion asked for is on disk
