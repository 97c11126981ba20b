"""VS Code in hostile situations: the .vsix in code-server (as tests/editors/test_vscode_e2e.py) with
a stand-in server (tests/editors/vscode/fake_server.py) that exits at once, hangs at initialize or
answers heedls/status with odd values, switched by rewriting heedls.serverCommand while the window
is open; tests/editors/vscode/hostile.mjs does what the user would and records what VS Code showed.
One browser session (~3 minutes) for every test here. Screenshots: test-artifacts/vscode-hostile-*.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.editors import test_vscode_e2e as base
from tests.editors.test_vscode_e2e import vsix  # noqa: F401 - the fixture that builds the .vsix

pytestmark = [pytest.mark.editor, pytest.mark.slow]

HERE = Path(__file__).parent / "vscode"
FILES = {"shapes.py": "def add2(a, b):\n    return a + b\n"}
# A JavaScript error or stack in a message (the server's own last stderr line may name a Python one).
STACK = re.compile(r"\bat \S+ \(|TypeError|is not a function|Pending response|Client is not running")


@pytest.fixture(scope="module")
def hostile(vsix: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # noqa: F811
    root = tmp_path_factory.mktemp("vscode-hostile")
    script = base.E2E_SCRIPT
    base.E2E_SCRIPT = HERE / "hostile.mjs"
    try:
        return base._run_session(
            vsix, root, files=FILES, scenario="hostile", venv=False, timeout=480,
            settings={"heedls.inline.debounceMs": "fast", "heedls.gate.keepAccepted": 5},
            machine_settings={"heedls.serverCommand": 42},
            config={"python": sys.executable, "fakeServer": str(HERE / "fake_server.py"),
                    "fakeLog": str(root / "fake.jsonl"),
                    "realServer": [sys.executable, "-P", "-m", "heedls", "serve"]})
    finally:
        base.E2E_SCRIPT = script


def _step(session: dict[str, Any], name: str) -> dict[str, Any]:
    return base._step(session, name)


def _heedls(messages: list[str]) -> list[str]:
    return [m for m in messages if "heedls" in m]


def test_server_command_of_the_wrong_type_says_so(hostile: dict[str, Any]) -> None:
    # "heedls.serverCommand": 42 used to throw in the extension (command.includes is not a
    # function): activation failed and the status item spun for ever, with no message.
    step = _step(hostile, "bad_type_command")
    assert not step["activationFailed"], step
    assert not step["spinning"], step["status"]
    assert any("heedls.serverCommand" in t for t in step["toasts"]), step["toasts"]
    assert not [t for t in step["toasts"] if STACK.search(t)], step["toasts"]


def test_a_server_that_exits_at_once_is_not_restarted_for_ever(hostile: dict[str, Any]) -> None:
    step = _step(hostile, "crash_loop")
    # Started, and a few restarts at most, then left alone.
    assert 1 <= step["spawns"] <= 5, step
    assert step["spawns"] == step["spawnsAt30"], step
    assert "codicon-error" in step["status"]["html"] or "codicon-warning" in step["status"]["html"], step["status"]
    # One message that says what happened, with what the server printed: not a toast per attempt.
    shown = _heedls(step["notifications"])
    assert len(shown) == 1, shown
    assert "exit" in shown[0] and "ImportError" in shown[0], shown
    assert not [t for t in step["notifications"] if STACK.search(t)], step["notifications"]


def test_a_server_hanging_at_initialize_is_reported_and_not_left_behind(hostile: dict[str, Any]) -> None:
    step = _step(hostile, "hang_at_initialize")
    assert step["hungPids"], step
    assert any(re.search("not answered", t) for t in step["toasts"]), step["toasts"]
    replaced = _step(hostile, "hang_replaced")
    assert replaced["hung"] and not replaced["hungAlive"], replaced
    # The replaced client did not start the hanging command again behind the new one.
    assert replaced["everyHung"] == replaced["hung"], replaced
    # Ending it is no error of the user's: no protocol error, no "stopped unexpectedly".
    assert not [t for t in replaced["notifications"] if STACK.search(t) or "unexpectedly" in t], replaced["notifications"]


def test_odd_gate_numbers_never_reach_the_status_bar(hostile: dict[str, Any]) -> None:
    step = _step(hostile, "odd_status")
    text = step["status"]["text"] + " " + step["status"]["label"]
    assert "heedls" in text
    assert not re.search(r"NaN|Infinity|e\+|-\d|\d{4,}%", text), text
    assert not re.search(r"NaN|Infinity|e\+\d|-\d", step["hover"]), step["hover"]


def test_suggestions_toggled_off_stay_off_after_a_restart(hostile: dict[str, Any]) -> None:
    step = _step(hostile, "toggle_survives_restart")
    assert step["off"], step["status"]
    told_off = (step["initInline"] or {}).get("enabled") is False or [False] in step["toggles"]
    assert told_off, step


def test_toggling_while_the_server_is_down_keeps_a_truthful_status(hostile: dict[str, Any]) -> None:
    step = _step(hostile, "toggle_while_down")
    assert re.search("codicon-(error|warning)", step["status"]["html"]), step["status"]
    assert not [t for t in step["toasts"] if STACK.search(t)], step["toasts"]


def test_settings_of_the_wrong_type_are_named_by_the_server(hostile: dict[str, Any]) -> None:
    step = _step(hostile, "real_server_bad_settings")
    assert any("debounce" in line.lower() for line in step["output"]), step["output"]
    # a warning, in the log and on the server's stderr alike (languageclient filed all stderr as errors)
    assert any("[warning]" in line for line in step["output"]), step["output"]
    assert not [line for line in step["output"] if "[error]" in line], step["output"]
    assert not [t for t in step["toasts"] if STACK.search(t)], step["toasts"]


def test_a_request_in_flight_when_the_server_dies_is_no_protocol_error(hostile: dict[str, Any]) -> None:
    step = _step(hostile, "request_in_flight")
    assert not [t for t in step["notifications"] if STACK.search(t) or "connection got disposed" in t], step["notifications"]
