"""Editors that are slow, odd or in a hurry: a request to the editor left unanswered at shutdown,
settings answered late or as null, a file sent where a folder belongs, a test run cut short by
shutdown. The server answers as the LSP says, keeps the settings it is given and logs no traceback.

`heedls serve` is driven over stdio by hand (as tests/lsp/test_robustness.py does), so that the
editor's side can answer late, never or null, and the server's stderr can be read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.framing import read_body

Answer = Callable[[dict[str, Any]], dict[str, Any] | None]

BUGGY = "def maximum(xs):\n    best = xs[0]\n    for x in xs:\n        if x < best:\n            best = x\n    return best\n"
TESTS = "from calc import maximum\n\n\ndef test_max():\n    assert maximum([1, 3, 2]) == 3\n"
UNUSED = "import os\n\n\ndef f():\n    return 1\n"  # F401


def answer_empty(request: dict[str, Any]) -> dict[str, Any] | None:
    """An editor with no settings that answers every request at once."""
    if request["method"] == "workspace/configuration":
        return {"result": [{} for _ in request["params"]["items"]]}
    return {"result": None}


class Editor:
    """The editor's end of the stdio pipes; `answer` says what it replies to each request of the
    server's (None: it never replies)."""

    def __init__(self, tmp: Path, answer: Answer = answer_empty) -> None:
        self.answer = answer
        self.stderr_path = tmp / "server.stderr"
        env = dict(os.environ, HEEDLS_DATA_DIR=str(tmp / "data"), HEEDLS_CACHE_DIR=str(tmp / "cache"))
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen([sys.executable, "-m", "heedls", "serve"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=stderr, env=env)
        self.responses: dict[Any, Any] = {}
        self.requests: list[dict[str, Any]] = []  # the server's requests to the editor
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while (body := read_body(out)) is not None:
            message = json.loads(body)
            with self._lock:
                if "method" not in message:
                    self.responses[message["id"]] = message
                elif "id" not in message:
                    self.notifications.append(message)
                else:
                    self.requests.append(message)
            if "method" in message and "id" in message:
                reply = self.answer(message)
                if reply is not None:
                    self.send({"id": message["id"], **reply})

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        with self._write_lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()

    def send_later(self, delay_s: float, message: dict[str, Any]) -> None:
        def send() -> None:
            try:
                self.send(message)
            except (OSError, ValueError):  # the server is gone meanwhile
                pass
        timer = threading.Timer(delay_s, send)
        timer.daemon = True
        timer.start()

    def wait(self, msg_id: Any, timeout: float = 30.0) -> Any:
        return until(lambda: self.responses.get(msg_id), timeout, f"the response to {msg_id}")

    def call(self, msg_id: Any, method: str, params: Any = None, timeout: float = 30.0) -> Any:
        self.send({"id": msg_id, "method": method, "params": params})
        return self.wait(msg_id, timeout)

    def initialize(self, root: Path | str, folders: list[Path | str] | None = None, options: Any = None,
                   progress: bool = False) -> None:
        """`progress`: the editor shows work done progress (window.workDoneProgress)."""
        def uri(where: Path | str) -> str:
            return where if isinstance(where, str) else where.as_uri()

        capabilities: dict[str, Any] = {
            "workspace": {"configuration": True, "workspaceFolders": True, "applyEdit": True,
                          "didChangeWatchedFiles": {"dynamicRegistration": True}},
            "textDocument": {"synchronization": {"didSave": True}, "publishDiagnostics": {}}}
        if progress:
            capabilities["window"] = {"workDoneProgress": True}
        assert "result" in self.call("init", "initialize", {
            "processId": None, "rootUri": uri(root), "capabilities": capabilities, "initializationOptions": options,
            "workspaceFolders": [{"uri": uri(f), "name": "folder"} for f in (folders if folders is not None else [root])]})
        self.send({"method": "initialized", "params": {}})

    def open_and_save(self, path: Path, text: str) -> str:
        uri = path.as_uri()
        self.send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": text}}})
        self.send({"method": "textDocument/didSave", "params": {"textDocument": {"uri": uri}}})
        return uri

    def diagnostics(self, uri: str, source: str) -> list[Any]:
        """What was last published for `uri` by `source` (heedls/ruff, heedls/pytest)."""
        with self._lock:
            published = [n["params"] for n in self.notifications
                         if n["method"] == "textDocument/publishDiagnostics" and n["params"]["uri"] == uri]
        return [d for d in (published[-1]["diagnostics"] if published else []) if d.get("source") == source]

    def logged(self, text: str) -> list[str]:
        with self._lock:
            return [n["params"]["message"] for n in self.notifications
                    if n["method"] == "window/logMessage" and text in n["params"]["message"]]

    def status(self, msg_id: Any) -> Any:
        return self.call(msg_id, "heedls/status", {})["result"]

    def shutdown_and_exit(self) -> tuple[Any, int]:
        """The answer to `shutdown`, and the exit status after `exit`."""
        answer = self.call("down", "shutdown", timeout=15)
        self.send({"method": "exit"})
        return answer, self.proc.wait(15)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def editors(tmp_path: Path) -> Any:
    """Start editors (each its own server); every server still running at the end is killed."""
    started: list[Editor] = []

    def start(answer: Answer = answer_empty) -> Editor:
        started.append(Editor(tmp_path, answer))
        return started[-1]

    yield start
    for editor in started:
        editor.close()


def fix_workspace(root: Path) -> Path:
    """A module with a bug its test finds (the fix: `>` for `<`)."""
    root.mkdir()
    (root / "calc.py").write_text(BUGGY)
    (root / "test_calc.py").write_text(TESTS)
    (root / "pyproject.toml").write_text('[project]\nname = "calc"\nversion = "0"\n')
    return root


# -- shutdown -------------------------------------------------------------------------------------

def test_shutdown_while_the_editor_has_not_answered_a_fixs_apply_edit_is_answered_and_exit_is_status_0(
        editors, tmp_path: Path) -> None:
    """heedls.fix hands its validated fix to the editor (workspace/applyEdit); an editor that is
    closing never answers. Shutdown is answered null all the same (pygls failed it with an internal
    error, and exit was status 1) and the command is answered too."""
    root = fix_workspace(tmp_path / "ws")
    editor = editors(lambda request: None if request["method"] == "workspace/applyEdit" else answer_empty(request))
    editor.initialize(root, options={"repair": {"budget_s": 25, "jobs": 1}})
    uri = editor.open_and_save(root / "calc.py", BUGGY)
    editor.send({"id": "fix", "method": "workspace/executeCommand", "params": {"command": "heedls.fix", "arguments": [uri, 3]}})
    until(lambda: any(r["method"] == "workspace/applyEdit" for r in editor.requests), 60, "the fix's workspace/applyEdit")

    answer, status = editor.shutdown_and_exit()

    assert answer.get("result", "missing") is None and "error" not in answer
    assert status == 0
    assert "fix" in editor.responses  # the command is answered (cancelled), not left hanging
    assert "Traceback" not in editor.stderr()


def test_a_test_run_stopped_by_shutdown_tells_its_caller_the_server_is_shutting_down(editors, tmp_path: Path) -> None:
    root = fix_workspace(tmp_path / "ws")
    started = tmp_path / "started"
    (root / "test_slow.py").write_text(f"import time\n\n\ndef test_slow():\n    open({str(started)!r}, 'w').close()\n"
                                       "    time.sleep(60)\n")
    editor = editors()
    editor.initialize(root)
    editor.send({"id": "run", "method": "workspace/executeCommand", "params": {"command": "heedls.runTests", "arguments": []}})
    until(started.exists, 60, "the slow test to start")

    answer, status = editor.shutdown_and_exit()

    assert "error" not in answer and status == 0
    run = editor.wait("run")["result"]
    assert run["ran"] is False and run["outcome"] == "cancelled"
    assert "shutting down" in run["reason"]  # not "superseded by a newer run": there is none


def _slow_test(root: Path, started: Path) -> None:
    (root / "test_slow.py").write_text(f"import time\n\n\ndef test_slow():\n    open({str(started)!r}, 'w').close()\n"
                                       "    time.sleep(60)\n")


def _progress_ends(editor: Editor) -> list[str]:
    with editor._lock:
        return [n["params"]["value"].get("message", "") for n in editor.notifications
                if n["method"] == "$/progress" and n["params"]["value"].get("kind") == "end"]


def _running_slow_tests(editors: Any, tmp_path: Path, answer: Answer = answer_empty) -> Editor:
    """An editor that shows progress, whose `heedls.runTests` (id "run") is running a test that sleeps."""
    root = fix_workspace(tmp_path / "ws")
    started = tmp_path / "started"
    _slow_test(root, started)
    editor = editors(answer)
    editor.initialize(root, progress=True)
    editor.send({"id": "run", "method": "workspace/executeCommand", "params": {"command": "heedls.runTests", "arguments": []}})
    until(started.exists, 60, "the slow test to start")
    return editor


def _said_cancelled(editor: Editor, reason: str, progress: str) -> None:
    """The run's caller was told `reason`, and its progress ended with `progress`."""
    assert editor.wait("run")["result"] == {"ran": False, "outcome": "cancelled", "reason": reason}
    until(lambda: _progress_ends(editor), 10, "the run's progress to end")
    assert _progress_ends(editor) == [progress]


def test_a_test_run_stopped_because_tests_were_turned_off_says_so(editors, tmp_path: Path) -> None:
    """Not "superseded by a newer run": there is none."""
    settings: dict[str, Any] = {}

    def answer(request: dict[str, Any]) -> dict[str, Any] | None:
        if request["method"] == "workspace/configuration":
            return {"result": [settings for _ in request["params"]["items"]]}
        return {"result": None}

    editor = _running_slow_tests(editors, tmp_path, answer)

    settings["tests"] = {"enabled": False}
    editor.send({"method": "workspace/didChangeConfiguration", "params": {"settings": None}})

    _said_cancelled(editor, "tests are disabled (tests.enabled = false)",
                    "cancelled: tests are disabled (tests.enabled = false)")


def test_a_test_run_cancelled_from_its_progress_says_cancelled(editors, tmp_path: Path) -> None:
    editor = _running_slow_tests(editors, tmp_path)
    [create] = [r for r in editor.requests if r["method"] == "window/workDoneProgress/create"]

    editor.send({"method": "window/workDoneProgress/cancel", "params": {"token": create["params"]["token"]}})

    _said_cancelled(editor, "cancelled", "cancelled")


def test_the_progress_of_a_test_run_that_did_not_complete_says_so_not_0_failed(editors, tmp_path: Path) -> None:
    root = fix_workspace(tmp_path / "ws")
    (root / "conftest.py").write_text("import sys\n\nsys.exit(3)\n")
    editor = editors()
    editor.initialize(root, progress=True)

    run = editor.call("run", "workspace/executeCommand", {"command": "heedls.runTests", "arguments": []}, timeout=60)

    assert run["result"]["outcome"] == "error"
    until(lambda: _progress_ends(editor), 10, "the run's progress to end")
    [end] = _progress_ends(editor)
    assert end.startswith("did not complete: pytest exited with code 3: no output")


# -- a file where a folder belongs ----------------------------------------------------------------

def test_a_file_added_as_a_workspace_folder_is_not_taken_as_one(editors, tmp_path: Path) -> None:
    """`didChangeWorkspaceFolders` with a file's URI (an editor that opened one file on its own):
    taken as a folder, it was the folder of that very file, where ruff and pytest could not start
    (NotADirectoryError). It is said once in the editor's log, and the file is checked as before."""
    root = fix_workspace(tmp_path / "ws")
    calc = root / "calc.py"
    editor = editors()
    editor.initialize(root, options={"tests": {"debounceMs": 50}})
    editor.send({"method": "workspace/didChangeWorkspaceFolders", "params": {"event": {
        "added": [{"uri": calc.as_uri(), "name": "calc.py"}], "removed": []}}})
    until(lambda: editor.logged("not a folder"), 15, "the warning")
    calc.write_text(UNUSED + BUGGY)
    uri = editor.open_and_save(calc, UNUSED + BUGGY)

    until(lambda: editor.diagnostics(uri, "heedls/ruff"), 30, "ruff's diagnostics for the file")
    until(lambda: editor.diagnostics(uri, "heedls/pytest"), 60, "the failing test's diagnostic")
    ran = editor.call("run", "workspace/executeCommand", {"command": "heedls.runTests", "arguments": [uri]}, 60)
    assert ran["result"]["ran"] is True and ran["result"]["failed"] == 1
    assert len(editor.logged("not a folder")) == 1
    editor.shutdown_and_exit()
    assert "Traceback" not in editor.stderr()


def test_a_file_as_the_root_and_only_folder_is_as_no_root_at_all(editors, tmp_path: Path) -> None:
    root = fix_workspace(tmp_path / "ws")
    calc = root / "calc.py"
    calc.write_text(UNUSED + BUGGY)
    editor = editors()
    editor.initialize(calc)  # rootUri and workspaceFolders alike
    uri = editor.open_and_save(calc, UNUSED + BUGGY)

    until(lambda: editor.diagnostics(uri, "heedls/ruff"), 30, "ruff's diagnostics for the file")
    ran = editor.call("run", "workspace/executeCommand", {"command": "heedls.runTests", "arguments": [uri]}, 60)
    assert ran["result"]["ran"] is True and ran["result"]["failed"] == 1  # in the project pyproject.toml marks
    assert len(editor.logged("not a folder")) == 1  # once, though it came as both
    editor.shutdown_and_exit()
    assert "Traceback" not in editor.stderr()


# -- settings answered late or as null ------------------------------------------------------------

def _two_folders(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "pyproject.toml").write_text('[tool.ruff]\nlint.select = ["F"]\n')
    return a, b


def _lint_off_in(folder: Path) -> Callable[[dict[str, Any]], list[Any]]:
    """An editor's settings: lint off in `folder`, nothing set elsewhere."""
    def settings(request: dict[str, Any]) -> list[Any]:
        return [{"lint": {"enabled": False}} if item.get("scopeUri") == folder.as_uri() else {}
                for item in request["params"]["items"]]
    return settings


def test_folder_settings_the_editor_answers_after_the_timeout_still_apply(editors, tmp_path: Path) -> None:
    """An editor still starting up answers the server's requests after its 5 s: the answer to
    workspace/configuration was lost (a traceback in the log) and the folder's settings with it,
    for the session. The late answer to a request given up on (the file watcher's registration)
    is dropped quietly."""
    a, b = _two_folders(tmp_path)
    settings = _lint_off_in(b)

    def slowly(request: dict[str, Any]) -> dict[str, Any] | None:
        result = settings(request) if request["method"] == "workspace/configuration" else None
        editor.send_later(6.5, {"id": request["id"], "result": result})
        return None

    editor = editors(slowly)
    editor.initialize(a, folders=[a, b], options={"lint": {"lintDebounceMs": 0}})
    in_a, in_b = editor.open_and_save(a / "m.py", UNUSED), editor.open_and_save(b / "m.py", UNUSED)
    until(lambda: editor.diagnostics(in_b, "heedls/ruff"), 30, "F401 in b before its settings come")

    def changed_b(version: int) -> None:
        editor.send({"method": "textDocument/didChange", "params": {"textDocument": {"uri": in_b, "version": version},
                                                                   "contentChanges": [{"text": "\n" * version + UNUSED}]}})

    version = 2
    deadline = time.monotonic() + 15
    while editor.diagnostics(in_b, "heedls/ruff") and time.monotonic() < deadline:
        changed_b(version)  # each change is linted with the settings of the moment
        version += 1
        time.sleep(0.5)
    assert editor.diagnostics(in_b, "heedls/ruff") == []  # lint off in b, once the editor said so
    assert editor.diagnostics(in_a, "heedls/ruff")
    assert {"workspace/configuration", "client/registerCapability"} <= {r["method"] for r in editor.requests}
    time.sleep(1)  # every late answer is in
    editor.shutdown_and_exit()
    assert "Traceback" not in editor.stderr()


def test_a_null_answer_to_workspace_configuration_counts_as_no_settings_quietly(editors, tmp_path: Path) -> None:
    """JSON-RPC allows a null result: an editor with nothing to say. pygls could not read it as
    the array the LSP names (a traceback in the log) and the answer was lost: the folder kept
    settings the editor no longer has."""
    a, b = _two_folders(tmp_path)
    settings = _lint_off_in(b)
    answers: list[str] = ["settings"]

    def answer(request: dict[str, Any]) -> dict[str, Any] | None:
        if request["method"] != "workspace/configuration":
            return {"result": None}
        return {"result": settings(request) if answers[0] == "settings" else None}

    editor = editors(answer)
    editor.initialize(a, folders=[a, b], options={"lint": {"lintDebounceMs": 0}})
    asked = lambda: sum(r["method"] == "workspace/configuration" for r in editor.requests)  # noqa: E731
    until(asked, 15, "the first settings request")
    in_b = editor.open_and_save(b / "m.py", UNUSED)
    until(lambda: any(n["method"] == "textDocument/publishDiagnostics" and n["params"]["uri"] == in_b
                      for n in editor.notifications), 30, "b's diagnostics")
    time.sleep(0.5)
    assert editor.diagnostics(in_b, "heedls/ruff") == []  # lint off in b

    answers[0] = "null"
    editor.send({"method": "workspace/didChangeConfiguration", "params": {"settings": None}})  # pull model
    until(lambda: asked() >= 2, 15, "the second settings request")
    editor.send({"method": "textDocument/didChange", "params": {"textDocument": {"uri": in_b, "version": 2},
                                                               "contentChanges": [{"text": "\n" + UNUSED}]}})
    until(lambda: editor.diagnostics(in_b, "heedls/ruff"), 15, "F401 in b: its settings are gone")
    assert editor.status("st") is not None
    editor.shutdown_and_exit()
    assert "Traceback" not in editor.stderr() and "Unable to deserialize" not in editor.stderr()
