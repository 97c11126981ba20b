"""The command `heedls.runTests` over the real stdio server, beside the runs on save: cancelling it
stops its pytest processes, and a save just before it (auto-save) neither cancels it nor runs the
same tests twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from tests.lsp.conftest import open_document, until

pytest.importorskip("heedls.analyzers.testrun", reason="the test runner (analyzers/testrun.py) is not there yet")

# The test under test notes each start in MARKS, with the pids of its pytest process and of a child
# process of its own, then fails after SLEEP_S (read from a file: one test can make it slow later).
SLEEPY_FILES = {
    "clock.py": "def now():\n    return 1\n",
    "test_clock.py": (
        "import os, subprocess, sys, time\nfrom clock import now\n\n\n"
        "def test_now():\n"
        "    seconds = float(open(os.environ['SLEEP_S']).read())\n"
        "    child = subprocess.Popen([sys.executable, '-c', f'import time; time.sleep({seconds})'])\n"
        "    with open(os.environ['MARKS'], 'a') as f:\n"
        "        f.write(f'start {os.getpid()} {child.pid}\\n')\n"
        "    time.sleep(seconds)\n"
        "    child.wait()\n"
        "    with open(os.environ['MARKS'], 'a') as f:\n"
        "        f.write('end\\n')\n"
        "    assert now() == 2\n"
    ),
}


class Sleepy:
    """A workspace with SLEEPY_FILES and a server on it; `starts()` are the runs of test_now so far."""

    def __init__(self, workspace: Path, tmp_path: Path) -> None:
        self.workspace = workspace
        self.marks = tmp_path / "marks.txt"
        self.sleep = tmp_path / "sleep_s.txt"
        for name, text in SLEEPY_FILES.items():
            (workspace / name).write_text(text, encoding="utf-8")
        self.module_uri = (workspace / "clock.py").as_uri()
        self.test_uri = (workspace / "test_clock.py").as_uri()

    async def client(self, lsp: Any, *, sleep_s: float, debounce_ms: int) -> Any:
        self.sleep.write_text(str(sleep_s))
        options = {"tests": {"debounceMs": debounce_ms, "timeoutS": 60}}
        client = await lsp(self.workspace, "vscode", options=options,
                           env={"MARKS": str(self.marks), "SLEEP_S": str(self.sleep)})
        open_document(client, self.workspace / "clock.py", SLEEPY_FILES["clock.py"])
        return client

    def lines(self) -> list[str]:
        return self.marks.read_text().splitlines() if self.marks.exists() else []

    def starts(self) -> list[list[int]]:
        return [[int(pid) for pid in line.split()[1:]] for line in self.lines() if line.startswith("start")]


def _save(client: Any, uri: str) -> None:
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))


def _run_tests(client: Any, uri: str, msg_id: str) -> asyncio.Future[Any]:
    params = types.ExecuteCommandParams(command="heedls.runTests", arguments=[uri])
    return asyncio.ensure_future(client.protocol.send_request_async("workspace/executeCommand", params, msg_id=msg_id))


def _cancel(client: Any, msg_id: str) -> None:
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=msg_id))


def _alive(pid: int) -> bool:
    """Is `pid` a process that still runs (a zombie has stopped: only its exit status is left)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pytest_diagnostics(client: Any, uri: str) -> list[types.Diagnostic]:
    return [d for d in client.diagnostics.get(uri, []) if d.source == "heedls/pytest"]


@pytest.mark.slow
async def test_cancelling_the_command_kills_its_pytest_process_tree_and_keeps_the_earlier_results(
    lsp: Any, workspace: Path, tmp_path: Path
) -> None:
    sleepy = Sleepy(workspace, tmp_path)
    client = await sleepy.client(lsp, sleep_s=0, debounce_ms=400)
    first = await asyncio.wait_for(_run_tests(client, sleepy.module_uri, "run-1"), 60)
    assert first["ran"] is True and first["failed"] == 1
    earlier = await until(lambda: _pytest_diagnostics(client, sleepy.test_uri), 10, "the first run's diagnostics")

    sleepy.sleep.write_text("25")
    request = _run_tests(client, sleepy.module_uri, "run-2")
    await until(lambda: len(sleepy.starts()) == 2, 30, "the second run to start its test")
    pids = sleepy.starts()[1]
    assert all(_alive(pid) for pid in pids)
    _cancel(client, "run-2")
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(request, 10)
    await until(lambda: not any(_alive(pid) for pid in pids), 2, "pytest and its child to be killed")

    await asyncio.sleep(1.0)
    assert sleepy.lines()[-1].startswith("start")  # the test never got to its end
    # the cancelled run published nothing: the failure found by the first run stays as it was
    assert _pytest_diagnostics(client, sleepy.test_uri) == earlier


@pytest.mark.slow
async def test_cancelling_the_command_does_not_stop_the_run_a_save_also_waits_for(
    lsp: Any, workspace: Path, tmp_path: Path
) -> None:
    sleepy = Sleepy(workspace, tmp_path)
    client = await sleepy.client(lsp, sleep_s=4, debounce_ms=300)
    _save(client, sleepy.module_uri)
    request = _run_tests(client, sleepy.module_uri, "run-1")  # before the save's debounce ends
    await until(lambda: sleepy.starts(), 30, "the run to start its test")
    await asyncio.sleep(0.5)  # the save's run, due long since, waits for the same run
    _cancel(client, "run-1")
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(request, 10)

    # the run goes on for the save and reports its failure; it was the only run
    await until(lambda: _pytest_diagnostics(client, sleepy.test_uri), 30, "the run's diagnostics")
    assert [line.split()[0] for line in sleepy.lines()] == ["start", "end"]


@pytest.mark.parametrize("command_on", ["the saved module", "its test file"])
async def test_run_tests_right_after_a_save_returns_the_outcome_of_the_tests_run_once(
    lsp: Any, workspace: Path, tmp_path: Path, command_on: str
) -> None:
    """With auto-save a save precedes nearly every "Run Related Tests"; the save's debounced run,
    starting while the command's run tests the same code, joins it instead of superseding it."""
    sleepy = Sleepy(workspace, tmp_path)
    client = await sleepy.client(lsp, sleep_s=1, debounce_ms=200)
    _save(client, sleepy.module_uri)
    await asyncio.sleep(0.1)
    uri = sleepy.module_uri if command_on == "the saved module" else sleepy.test_uri
    result = await asyncio.wait_for(_run_tests(client, uri, "run-1"), 60)

    assert result["ran"] is True, result
    assert (result["outcome"], result["failed"], result["passed"]) == ("failed", 1, 0)
    await asyncio.sleep(1.0)  # a second run, had the save started one, would have begun by now
    assert [line.split()[0] for line in sleepy.lines()] == ["start", "end"]


async def test_a_save_just_before_the_command_on_other_tests_runs_its_own_tests_after_them(
    lsp: Any, workspace: Path, tmp_path: Path
) -> None:
    sleepy = Sleepy(workspace, tmp_path)
    (workspace / "other.py").write_text("def one():\n    return 1\n")
    (workspace / "test_other.py").write_text(
        "import time\nfrom other import one\n\n\ndef test_one():\n    time.sleep(1)\n    assert one() == 1\n")
    client = await sleepy.client(lsp, sleep_s=0, debounce_ms=200)
    _save(client, sleepy.module_uri)
    await asyncio.sleep(0.1)
    result = await asyncio.wait_for(_run_tests(client, (workspace / "other.py").as_uri(), "run-1"), 60)

    assert result["ran"] is True and (result["passed"], result["failed"]) == (1, 0), result
    assert [Path(t).name for t in result["targets"]] == ["test_other.py"]
    # the saved module's tests run once the command's run is over
    await until(lambda: _pytest_diagnostics(client, sleepy.test_uri), 60, "the saved module's test failure")
