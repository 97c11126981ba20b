"""Fuzzed and hostile input: the server stays up and keeps answering.

Raw frames are written to `heedls serve`'s stdin (malformed JSON, wrong shapes, bad bytes), then a
real request must still get its answer."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.processes import dead
from tests.support.raw_server import RawServer


@pytest.fixture
def raw_server(tmp_path: Path):
    server = RawServer(tmp_path)
    root = tmp_path / "ws"
    root.mkdir()
    server.initialize(root)
    yield server, root
    server.close()


def test_malformed_frames_do_not_take_the_server_down(raw_server) -> None:
    server, root = raw_server
    server.raw(b"{not json at all")
    server.raw(b'{"jsonrpc": "2.0", "id": 7, "method": "textDocument/inlineCompletion", "params": 42}')
    server.raw(b'{"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": "file:///nowhere.py", "version": 2}, "contentChanges": [{"text": "x"}]}}')
    server.raw(b'[1, 2, 3]')
    server.raw(b'{"jsonrpc": "2.0", "id": 8, "method": "no/such/method", "params": {}}')
    server.raw(b'{"jsonrpc": "2.0", "id": 9, "method": "workspace/executeCommand", "params": {"command": "heedls.accept", "arguments": [null, {}, 3]}}')
    server.raw(b'{"jsonrpc": "2.0", "method": "heedls/suggestionRejected", "params": "garbage"}')
    server.raw("{\"jsonrpc\": \"2.0\", \"method\": \"x\", \"params\": \"\xff\xfe\"}".encode("latin-1"))
    assert "error" in server.wait(7)  # params 42: answered with InvalidParams, not dropped
    assert "error" in server.wait(8)
    assert server.wait(9).get("result", {}).get("accepted") is False
    uri = (root / "a.py").as_uri()
    server.open(uri, "def f():\n    \n")
    answer = server.inline(100, uri, 1, 4)
    assert answer["result"]["items"][0]["insertText"] == "print('ok')"


def test_a_request_whose_params_cannot_be_read_is_answered_with_an_error(raw_server) -> None:
    # JSON-RPC: every request gets a response. A dropped one leaves the editor waiting forever.
    server, root = raw_server
    uri = (root / "a.py").as_uri()
    server.open(uri, "def f():\n    \n")
    bad = [
        {"textDocument": {"uri": uri}, "position": {"line": -1, "character": -5}, "context": {"triggerKind": 1}},
        {"textDocument": {"uri": uri}, "position": {"line": "a", "character": 0}, "context": {"triggerKind": 1}},
        {"textDocument": {"uri": uri}, "context": {"triggerKind": 1}},
        None,
    ]
    for i, params in enumerate(bad):
        server.send({"id": f"bad{i}", "method": "textDocument/inlineCompletion", "params": params})
    server.send({"id": "cmd", "method": "workspace/executeCommand"})
    server.send({"id": "explain", "method": "heedls/explain"})  # params absent
    server.send({"id": "explain2", "method": "heedls/explain",
                 "params": {"textDocument": {"uri": uri}, "position": {"line": "a", "character": 0}}})
    fix_file = root / "calc.py"
    fix_file.write_text("def add(a, b):\n    return a - b\n")
    (root / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    for i, position in enumerate(["x", {"line": "a"}, {"line": None}, {"line": -2}]):
        server.send({"id": f"fix{i}", "method": "heedls/fix",
                     "params": {"textDocument": {"uri": fix_file.as_uri()}, "position": position}})
    for msg_id in [f"bad{i}" for i in range(len(bad))] + ["cmd", "explain", "explain2"] + [f"fix{i}" for i in range(4)]:
        assert server.wait(msg_id)["error"]["code"] == -32602
    assert server.inline(101, uri, 1, 4)["result"]["items"]  # and it keeps serving


def test_out_of_range_positions_and_edits_are_tolerated(raw_server) -> None:
    server, root = raw_server
    uri = (root / "b.py").as_uri()
    server.open(uri, "x = 1\n")
    server.send({"method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"range": {"start": {"line": 99, "character": 5}, "end": {"line": 120, "character": 0}}, "text": "y = 2\n"}]}})
    server.send({"method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"range": {"start": {"line": 0, "character": 500}, "end": {"line": 0, "character": 2}}, "text": "z"}]}})
    answer = server.inline(1, uri, 5000, 5000)
    assert "result" in answer
    unopened = server.inline(2, (root / "never-opened.py").as_uri(), 0, 0)
    assert "result" in unopened or "error" in unopened
    assert server.inline(3, uri, 0, 0).get("result") is not None


def test_a_five_megabyte_file_and_non_utf8_bytes(raw_server, tmp_path: Path) -> None:
    server, root = raw_server
    block = "def handler_%d(request):\n    return request.value + %d\n\n"
    text = "".join(block % (i, i) for i in range(85000))
    assert len(text) > 5_000_000
    uri = (root / "big.py").as_uri()
    server.open(uri, text + "def tail():\n    \n")
    lines = text.count("\n")
    answer = server.inline(1, uri, lines + 1, 4)
    assert answer["result"] is not None
    weird = root / "latin.py"
    weird.write_bytes(b"# caf\xe9\nx = '\xff'\n")
    server.open(weird.as_uri(), weird.read_bytes().decode("latin-1"))
    assert "result" in server.inline(2, weird.as_uri(), 1, 3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)), min_size=1, max_size=8))
def test_random_bodies_never_stop_the_server(raw_server, bodies: list[bytes]) -> None:
    server, root = raw_server
    for body in bodies:
        server.raw(body)
    msg_id = random.randrange(10**9)
    server.send({"id": msg_id, "method": "heedls/status", "params": {}})
    assert "result" in server.wait(msg_id)


def test_what_goes_wrong_outside_a_request_is_logged_never_popped_up(raw_server) -> None:
    """A change to a document never opened, a notification with unreadable params, a cancel with no
    usable id: pygls would show "Error in server: …" in the editor. They go to the log."""
    server, root = raw_server
    never_opened = (root / "ghost.py").as_uri()
    server.send({"method": "textDocument/didChange", "params": {"textDocument": {"uri": never_opened, "version": 2},
                                                                  "contentChanges": [{"text": "x = 1\n"}]}})
    server.send({"method": "textDocument/didOpen", "params": {"textDocument": 7}})
    server.send({"method": "$/cancelRequest", "params": {"id": {"a": 1}}})
    server.send({"method": "$/cancelRequest", "params": None})
    uri = (root / "a.py").as_uri()
    server.open(uri, "def f():\n    \n")
    assert server.inline(102, uri, 1, 4)["result"]["items"]  # it keeps serving
    assert [m for m in server.shown if m.get("type") == 1] == []


def test_routine_bad_input_is_one_line_in_the_log_not_a_traceback(raw_server) -> None:
    """Params that do not match the protocol, a command's InvalidParams, an unknown command, a
    cancel without a usable id: the editor's log got one or two 30-line tracebacks from pygls for
    each. The client is answered with the error; the log says it in one line."""
    server, root = raw_server
    uri = (root / "a.py").as_uri()
    server.open(uri, "def f():\n    \n")
    server.send({"id": "hover", "method": "textDocument/hover",
                 "params": {"textDocument": {"uri": uri}, "position": {"line": "x"}}})
    server.send({"id": "toggle", "method": "workspace/executeCommand",
                 "params": {"command": "heedls.toggleSuggestions", "arguments": ["yes"]}})
    server.send({"id": "nope", "method": "workspace/executeCommand", "params": {"command": "nope", "arguments": []}})
    server.send({"method": "$/cancelRequest", "params": {"id": {"a": 1}}})
    server.send({"method": "$/cancelRequest", "params": {}})
    for msg_id in ("hover", "toggle", "nope"):
        assert server.wait(msg_id)["error"]["code"] == -32602
    assert server.inline(103, uri, 1, 4)["result"]["items"]  # it keeps serving
    log = server.stderr()
    assert "Traceback" not in log and "Unable to deserialize" not in log, log
    assert log.count("the argument must be true, false or left out") == 1
    assert log.count("a $/cancelRequest without a usable id was ignored") == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX")
def test_requests_for_a_path_never_opened_do_not_read_a_fifo(raw_server) -> None:
    """pygls reads an unopened URI from disk on the event loop: a FIFO there froze every request
    until something wrote to it."""
    server, root = raw_server
    fifo = root / "pipe.py"
    os.mkfifo(fifo)
    where = {"textDocument": {"uri": fifo.as_uri()}}
    server.send({"id": "ic", "method": "textDocument/inlineCompletion",
                 "params": {**where, "position": {"line": 0, "character": 0}, "context": {"triggerKind": 1}}})
    server.send({"id": "ca", "method": "textDocument/codeAction", "params": {
        **where, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
        "context": {"diagnostics": []}}})
    server.send({"id": "hv", "method": "textDocument/hover", "params": {**where, "position": {"line": 0, "character": 0}}})
    for msg_id in ("ic", "ca", "hv"):
        assert "result" in server.wait(msg_id, 10), msg_id
    server.send({"id": "st", "method": "heedls/status", "params": {}})
    assert "result" in server.wait("st", 10)


def test_exit_without_shutdown_is_status_1_and_after_it_0(tmp_path: Path) -> None:
    for shutdown, status in ((False, 1), (True, 0)):
        server = RawServer(tmp_path)
        server.initialize(tmp_path)
        if shutdown:
            server.send({"id": "down", "method": "shutdown"})
            server.wait("down")
        server.send({"method": "exit"})
        assert server.proc.wait(10) == status


def test_sigterm_takes_a_running_test_run_with_it(tmp_path: Path) -> None:
    """Editors send SIGTERM when shutdown takes too long: pytest runs in a session of its own, out
    of the signal's reach, and a hanging test used to run on forever. Nor does the run's report
    file stay in the temp folder (one did, per run cut short)."""
    root = tmp_path / "ws"
    root.mkdir()
    pid_file = tmp_path / "pytest.pid"
    (root / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "test_calc.py").write_text(
        f"import os, time\nfrom calc import add\n\n\ndef test_hangs():\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n    time.sleep(300)\n")
    server = RawServer(tmp_path)
    server.initialize(root)
    uri = (root / "calc.py").as_uri()
    server.open(uri, (root / "calc.py").read_text())
    server.send({"method": "textDocument/didSave", "params": {"textDocument": {"uri": uri}}})
    end = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < end:
        time.sleep(0.1)
    pytest_pid = int(pid_file.read_text())
    assert [p.name for p in server.tmp.iterdir() if p.name.startswith("heedls-pytest-")]  # the report, meanwhile
    server.proc.terminate()
    assert server.proc.wait(10) == 143
    assert dead(pytest_pid)
    assert not [p.name for p in server.tmp.iterdir() if p.name.startswith("heedls-pytest-")]


def test_the_server_exits_when_the_editor_process_is_gone(tmp_path: Path) -> None:
    """initialize's processId: an editor killed without closing our pipes (a wrapper holds them)."""
    editor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    server = RawServer(tmp_path)
    server.send({"id": "init", "method": "initialize",
                 "params": {"processId": editor.pid, "rootUri": tmp_path.as_uri(), "capabilities": {}}})
    server.wait("init")
    editor.wait(10)
    assert server.proc.wait(15) == 143


def test_the_lifecycle_is_kept_before_initialize_twice_and_after_shutdown(tmp_path: Path) -> None:
    server = RawServer(tmp_path)
    try:
        server.send({"id": "early", "method": "heedls/status", "params": {}})
        assert server.wait("early")["error"]["code"] == -32002  # ServerNotInitialized
        server.send({"method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": (tmp_path / "a.py").as_uri(), "languageId": "python", "version": 1, "text": "x = 1\n"}}})
        server.initialize(tmp_path)
        server.send({"id": "again", "method": "initialize", "params": {"processId": None, "rootUri": None,
                                                                       "capabilities": {}}})
        assert server.wait("again")["error"]["code"] == -32600
        server.send({"id": "down", "method": "shutdown"})
        server.wait("down")
        server.send({"id": "late", "method": "heedls/status", "params": {}})
        assert server.wait("late")["error"]["code"] == -32600
        server.send({"method": "exit"})
        assert server.proc.wait(10) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def test_a_badly_framed_message_costs_that_message_not_the_session(raw_server) -> None:
    """A lower-case or oddly spaced header, LF-only lines, a Content-Length that is too short or
    too long: pygls lost every message after one of these, the server alive but silent."""
    server, root = raw_server
    uri = (root / "a.py").as_uri()
    server.open(uri, "def f():\n    \n")
    status = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "heedls/status", "params": {}}).encode()
    frames = [
        b"content-length: %d\r\n\r\n" % len(status),
        b"Content-Length:%d\r\n\r\n" % len(status),
        b"Content-Length:  %d\n\n" % len(status),
        b"Content-Length: %d\r\n\r\n" % (len(status) - 5),
        b"Content-Length: %d\r\n\r\n" % (len(status) + 10),
    ]
    assert server.proc.stdin is not None
    for i, header in enumerate(frames):
        server.proc.stdin.write(header + status.replace(b'"id": 0', b'"id": %d' % (i + 1)))
        server.proc.stdin.flush()
        time.sleep(0.2)
        # a length too long swallows the start of the next message: that one is lost, not the rest
        server.send({"method": "$/heedls/sacrificed"})
        answer = server.inline(f"after{i}", uri, 1, 4)  # the next well-formed request is answered
        assert answer["result"]["items"], (header, answer)
    for i in range(3):  # the headers that were only spelt differently were read as they are
        assert "result" in server.wait(i + 1)


def test_bodies_that_are_no_message_are_answered_with_json_rpc_errors(raw_server) -> None:
    """JSON-RPC 2.0: a body that is not JSON is a Parse error, one that is no message object an
    Invalid Request, each answered (id null when there is none), not only logged."""
    server, root = raw_server
    server.raw(b"{not json at all")
    assert server.wait(None)["error"]["code"] == -32700
    with server._lock:
        server.responses.pop(None)
    server.raw(b"[1, 2, 3]")
    assert server.wait(None)["error"]["code"] == -32600
    server.raw(b'{"id": 5, "method": "heedls/status", "params": {}}')  # no "jsonrpc"
    assert server.wait(5)["error"]["code"] == -32600
    uri = (root / "a.py").as_uri()
    server.open(uri, "def f():\n    \n")
    assert server.inline(103, uri, 1, 4)["result"]["items"]  # and it keeps serving


def test_an_object_in_params_shaped_like_a_message_is_data_not_a_message(raw_server) -> None:
    """Only the body is a message. A setting or a command argument that happens to carry
    "jsonrpc", "id" and "method" keys is passed on as it is: pygls made each such object a message
    of its own, answered it (id 5 here) and lost the message around it."""
    server, root = raw_server
    lookalike = {"jsonrpc": "2.0", "id": 5, "method": "textDocument/hover"}
    server.send({"method": "workspace/didChangeConfiguration",
                 "params": {"settings": {"heedls": {"inline": {"enabled": False}}, "other": {"saved": lookalike}}}})
    for attempt in range(50):  # the settings around it were read (the change applies asynchronously)
        server.send({"id": f"st{attempt}", "method": "heedls/status", "params": {}})
        if server.wait(f"st{attempt}")["result"]["enabled"] is False:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the settings holding the look-alike were lost")
    server.send({"id": "cmd", "method": "workspace/executeCommand",
                 "params": {"command": "heedls.accept", "arguments": [{**lookalike, "id": 6, "method": "x"}]}})
    assert server.wait("cmd")["result"]["accepted"] is False  # a plain argument: no suggestion id
    reply = {"jsonrpc": "2.0", "id": 7, "result": None}
    server.send({"id": "echo", "method": "heedls/status", "params": {"echo": reply}})
    assert "result" in server.wait("echo")
    with server._lock:
        assert not {5, 6, 7} & set(server.responses)  # nothing answered a nested object


@pytest.mark.parametrize("length", [99_999_999_999, 3_000_000_000])
def test_a_content_length_of_gigabytes_is_refused_and_reading_goes_on(raw_server, length: int) -> None:
    """`Content-Length: 99999999999` ended the server with a MemoryError, and 3 GB left it waiting
    for bytes that never come, answering nothing more."""
    server, root = raw_server
    server.raw(b"{}", length=length)
    server.send({"id": "after", "method": "heedls/status", "params": {}})
    assert "result" in server.wait("after")
    assert server.proc.poll() is None


def test_a_length_too_long_gives_the_next_message_back(raw_server) -> None:
    """A body read with a length 30 bytes too long holds the start of the next message: it is read
    as the next frame, so both requests are answered (the next one was lost)."""
    server, root = raw_server
    first = json.dumps({"jsonrpc": "2.0", "id": 900, "method": "heedls/status", "params": {}}).encode()
    nxt = json.dumps({"jsonrpc": "2.0", "id": 901, "method": "heedls/status", "params": {}}).encode()
    last = json.dumps({"jsonrpc": "2.0", "id": 902, "method": "heedls/status", "params": {}}).encode()
    assert server.proc.stdin is not None
    server.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % (len(first) + 30) + first
                            + b"Content-Length: %d\r\n\r\n" % len(nxt) + nxt
                            + b"Content-Length: %d\r\n\r\n" % len(last) + last)
    server.proc.stdin.flush()
    for ident in (900, 901, 902):
        assert "result" in server.wait(ident), ident


def test_bodies_json_cannot_read_or_that_are_no_json_rpc_2_request_are_answered(raw_server) -> None:
    """Each request gets an answer, never silence: bytes that are not UTF-8 and nesting too deep
    for the decoder are Parse errors (id null); another "jsonrpc" version, a method that is no
    string or an id that is no string or number are Invalid Request, with the id when it is one."""
    server, root = raw_server

    def null_answer() -> dict[str, Any]:
        answer = server.wait(None)
        with server._lock:
            server.responses.pop(None)
        return answer["error"]

    server.raw(b'{"jsonrpc":"2.0","id":700,"method":"heedls/status","params":{"x":"\xff"}}')
    assert null_answer()["code"] == -32700
    server.raw(b'{"jsonrpc":"2.0","id":701,"method":"heedls/status","params":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}")
    assert null_answer()["code"] == -32700
    server.raw(b'{"jsonrpc":"1.0","id":702,"method":"heedls/status","params":{}}')
    assert server.wait(702)["error"]["code"] == -32600
    server.raw(b'{"jsonrpc":"2.0","id":703,"method":5,"params":{}}')
    answer = server.wait(703)["error"]
    assert answer["code"] == -32600 and "traceback" not in json.dumps(answer)
    server.raw(b'{"jsonrpc":"2.0","id":{"a":1},"method":"heedls/status","params":{}}')
    assert null_answer()["code"] == -32600
    server.raw(b'{"jsonrpc":"2.0","id":true,"method":"heedls/status","params":{}}')
    assert null_answer()["code"] == -32600
    uri = (root / "a.py").as_uri()
    server.open(uri, "def f():\n    \n")
    assert server.inline(704, uri, 1, 4)["result"]["items"]  # and it keeps serving


def test_params_may_be_left_out(raw_server) -> None:
    """JSON-RPC lets a request leave `params` out: `heedls/status` is answered, and a method the
    server does not know is MethodNotFound (both were InvalidParams)."""
    server, root = raw_server
    server.send({"id": "st", "method": "heedls/status"})
    assert "enabled" in server.wait("st")["result"]
    server.send({"id": "unknown", "method": "foo/unknown"})
    assert server.wait("unknown")["error"]["code"] == -32601


def test_over_tcp_a_lower_case_header_costs_nothing(tmp_path: Path) -> None:
    """`heedls serve --tcp` reads frames as leniently as stdio: pygls' own reader lost every
    message after one with a lower-case header, the connection open and silent."""
    import socket

    env = dict(os.environ, HEEDLS_DATA_DIR=str(tmp_path / "data"), HEEDLS_CACHE_DIR=str(tmp_path / "cache"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "heedls", "serve", "--tcp", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the TCP server did not start"
                time.sleep(0.1)
        with conn:
            conn.settimeout(20)

            def send(message: dict[str, Any], header: bytes = b"Content-Length") -> None:
                body = json.dumps({"jsonrpc": "2.0", **message}).encode()
                conn.sendall(header + b": %d\r\n\r\n" % len(body) + body)

            received = [b""]

            def answer(ident: Any) -> dict[str, Any]:
                while True:
                    while b"\r\n\r\n" not in received[0]:
                        received[0] += conn.recv(65536)
                    head, _, rest = received[0].partition(b"\r\n\r\n")
                    headers = dict(line.lower().split(b":", 1) for line in head.split(b"\r\n"))
                    size = int(headers[b"content-length"])
                    while len(rest) < size:
                        rest += conn.recv(65536)
                    body, received[0] = rest[:size], rest[size:]
                    message = json.loads(body)
                    if message.get("id") == ident and "method" not in message:
                        return message

            send({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}})
            assert "result" in answer(1)
            send({"method": "initialized", "params": {}})
            send({"id": 2, "method": "heedls/status", "params": {}}, header=b"content-length")
            assert "result" in answer(2)
            send({"id": 3, "method": "heedls/status", "params": {}})
            assert "result" in answer(3)
    finally:
        proc.kill()
        proc.wait(10)
