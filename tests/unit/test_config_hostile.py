"""Configuration that is wrong in every way a person or a program can get it wrong: each problem is
one warning that names the setting (and the value, unless it is a secret), the setting keeps the
value it had, and nothing crashes, hangs or floods the editor's log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, cast

from heedls.server.config import MAX_WARNINGS, HeedlsConfig, load, merge

from tests.support.framing import read_body


def test_a_pyproject_nested_thousands_deep_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    """tomllib recurses per level: 3000 nested arrays raised RecursionError out of load() (the
    server answered `initialize` with the traceback; `heedls complete` printed it)."""
    for value in ("[" * 3000 + "]" * 3000, "{a = " * 3000 + "1" + "}" * 3000):
        (tmp_path / "pyproject.toml").write_text(f"[tool.heedls]\nx = {value}\n")
        config, warnings = load(tmp_path)
        assert config == HeedlsConfig()
        assert warnings == [f"{tmp_path / 'pyproject.toml'}: cannot read [tool.heedls] (values nested too deep); "
                            "using defaults"]


def test_a_pyproject_that_is_no_regular_file_is_named_and_never_waited_on(tmp_path: Path) -> None:
    """A directory was ignored without a word; a FIFO is not opened (that would wait for a writer)."""
    for kind in ("directory", "fifo"):
        root = tmp_path / kind
        root.mkdir()
        (root / "pyproject.toml").mkdir() if kind == "directory" else os.mkfifo(root / "pyproject.toml")
        config, warnings = load(root)
        assert config == HeedlsConfig()
        assert warnings == [f"{root / 'pyproject.toml'}: not a regular file; [tool.heedls] not read, using defaults"]


def test_a_pyproject_too_large_to_be_a_project_file_is_not_parsed(tmp_path: Path) -> None:
    """It is parsed again on each settings change, on the event loop: 26 MB of keys took 9 s."""
    with (tmp_path / "pyproject.toml").open("w") as file:
        file.write("[tool.heedls.gate]\nmode = 'off'\n[tool.other]\n")
        file.writelines(f"k{i} = {i}\n" for i in range(300_000))
    started = time.monotonic()
    config, warnings = load(tmp_path)
    assert time.monotonic() - started < 0.5 and config.gate.mode == "cascade"
    assert len(warnings) == 1 and "MB is too large to be a project file (the limit is 2 MB)" in warnings[0]


def test_a_pyproject_that_is_not_utf8_still_applies_and_says_where_it_is_not(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes("[tool.heedls]\n# café\nlog_level = 'debug'\n".encode("latin-1"))
    config, warnings = load(tmp_path)
    assert config.log_level == "debug"
    assert warnings == [f"{tmp_path / 'pyproject.toml'}: not UTF-8 (byte 0xe9 on line 2); read with replacement characters"]


def test_a_bad_value_keeps_what_the_layers_before_set_not_the_default(tmp_path: Path) -> None:
    """The project says `stage1`; the editor's garbled `mode` does not set it back to `cascade`
    (docs/editors.md: each setting is the last layer's that *sets* it)."""
    (tmp_path / "pyproject.toml").write_text("[tool.heedls.gate]\nmode = 'stage1'\nkeep_accepted = 0.9\n"
                                             "[tool.heedls.inline]\nmax_lines = 3\n")
    config, warnings = load(tmp_path, None, {"heedls": {"gate": {"mode": 5, "keepAccepted": 7},
                                                        "inline": {"maxLines": [1], "debounceMs": 50}}})
    assert (config.gate.mode, config.gate.keep_accepted, config.inline.max_lines) == ("stage1", 0.9, 3)
    assert config.inline.debounce_ms == 50  # the good key beside the bad ones
    assert warnings == ["settings.gate.mode: 5 is not one of ['off', 'stage1', 'cascade']; using 'stage1'",
                        "settings.gate.keepAccepted: 7.0 must be between 0.5 and 1.0; using 0.9",
                        "settings.inline.maxLines: expected an integer from 0 to 1000000000, got [1]; using 3"]


def test_a_mistyped_api_key_is_never_echoed_into_the_log() -> None:
    config, warnings = merge(HeedlsConfig(), {"provider": {"apiKey": ["sk-live-123"], "api_key": {"k": "sk-live-456"}}},
                             "settings")
    assert config.provider.api_key == ""
    assert not [w for w in warnings if "sk-live" in w] and len(warnings) == 3, warnings
    assert "settings.provider.apiKey: expected a string, got a value of type list; using ''" in warnings


def test_a_warning_shows_a_huge_or_deep_value_by_its_start() -> None:
    deep = json.loads("[" * 900 + "]" * 900)
    config, warnings = merge(HeedlsConfig(), {"provider": {"name": "x" * 5_000_000}, "gate": {"mode": deep},
                                              "x" * 100_000: 1}, "settings")
    assert config == HeedlsConfig() and len(warnings) == 3
    assert all(len(w) < 200 for w in warnings), [w[:200] for w in warnings]


def test_a_layer_of_thousands_of_unknown_keys_warns_a_bounded_number_of_times() -> None:
    config, warnings = merge(HeedlsConfig(), {**{f"k{i}": i for i in range(5000)}, "logLevel": "debug"}, "settings")
    assert config.log_level == "debug" and len(warnings) == MAX_WARNINGS + 1
    assert warnings[-1] == f"settings: {5000 - MAX_WARNINGS} more problems like these, not listed"


def test_a_misspelt_or_doubled_setting_says_so() -> None:
    config, warnings = merge(HeedlsConfig(), {"inline": {"debounce_ms": 5, "debounceMs": 7, "debounce_sm": 9},
                                              "Gate": {"mode": "off"}}, "pyproject")
    assert config.inline.debounce_ms == 7
    assert warnings == [
        "pyproject.inline.debounceMs: 'debounce_ms' is given twice in one table (as 'debounce_ms' and 'debounceMs'); "
        "the last one counts",
        "pyproject.inline.debounce_sm: unknown setting (did you mean 'debounce_ms'?), ignored",
        "pyproject.Gate: unknown setting (did you mean 'gate'?), ignored"]


def test_keys_that_are_not_strings_and_a_max_tokens_of_zero_are_refused() -> None:
    config, warnings = merge(HeedlsConfig(), {1: 2, "inline": {None: 3}, "provider": {"maxTokens": 0}}, "x")
    assert config == HeedlsConfig()
    assert warnings == ["x.1: a setting's name must be a string; ignored",
                        "x.inline.None: a setting's name must be a string; ignored",
                        "x.provider.maxTokens: 0 is below the least value 1; using 64"]


def test_a_heedls_section_that_is_no_object_is_said_to_be_and_drops_nothing() -> None:
    """`{"heedls": 5}` (a client's broken workspace/configuration answer) was reported as an
    unknown setting named "heedls", and counted as a push: initializationOptions were dropped."""
    config, warnings = load(None, {"gate": {"keepAccepted": 0.9}}, {"heedls": 5})
    assert config.gate.keep_accepted == 0.9
    assert warnings == ["settings: expected an object of settings, got int; ignored"]


def test_the_stdio_server_keeps_good_settings_beside_bad_ones_from_every_layer(tmp_path: Path) -> None:
    """The real server: the project file, initializationOptions, a workspace/configuration answer
    and a didChangeConfiguration push each carry a bad value; each is one window/logMessage, no
    request fails, and heedls/status shows the good settings in effect."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "pyproject.toml").write_text("[tool.heedls.gate]\nmode = 'off'\nkeep_accepted = nan\n")
    env = dict(os.environ, HEEDLS_DATA_DIR=str(tmp_path / "data"), HEEDLS_CACHE_DIR=str(tmp_path / "cache"))
    server = subprocess.Popen([sys.executable, "-m", "heedls", "serve", "--stub-provider", "x"], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    received: list[dict[str, Any]] = []

    def send(message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert server.stdin is not None
        server.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        server.stdin.flush()

    def read() -> None:
        assert server.stdout is not None
        while (body := read_body(cast(BinaryIO, server.stdout))) is not None:
            message = json.loads(body)
            received.append(message)
            if message.get("method") == "workspace/configuration":  # a broken answer: no object
                send({"id": message["id"], "result": [5 for _ in message["params"]["items"]]})

    def response(ident: int) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = [m for m in received if m.get("id") == ident and "method" not in m]
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"no response {ident}")

    threading.Thread(target=read, daemon=True).start()
    try:
        send({"id": 1, "method": "initialize", "params": {
            "processId": None, "rootUri": workspace.as_uri(), "capabilities": {"workspace": {"configuration": True}},
            "initializationOptions": {"inline": {"maxLines": 2, "enabled": "yes"}}}})
        assert "result" in response(1)
        send({"method": "initialized", "params": {}})
        time.sleep(0.5)
        send({"method": "workspace/didChangeConfiguration", "params": {"settings": {"heedls": "on"}}})
        send({"id": 2, "method": "heedls/status", "params": {}})
        status = response(2)["result"]
        assert status["enabled"] is True and status["gate"]["mode"] == "off"
        logs = [m["params"]["message"] for m in received if m.get("method") == "window/logMessage"]
        assert "heedls: configuration: initializationOptions.inline.enabled: expected true/false, got 'yes'; using True" in logs
        assert any("gate.keep_accepted: expected a number from 0 to 1000000000, got nan; using 0.95" in m for m in logs)
        assert "heedls: configuration: settings: expected an object of settings, got str; ignored" in logs, logs
        send({"id": 3, "method": "shutdown"})
        response(3)
        send({"method": "exit"})
        assert server.wait(10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    stderr = server.stderr.read() if server.stderr is not None else b""
    assert b"Traceback" not in stderr, stderr[-2000:]


def test_a_deadline_too_short_to_ask_the_endpoint_is_refused() -> None:
    """`deadlineMs: 0` gave the endpoint no time at all (the local provider's reserve is 50-250 ms):
    every suggestion was the local one, without a word."""
    config, warnings = merge(HeedlsConfig(), {"provider": {"deadlineMs": 0}}, "settings")
    assert config.provider.deadline_ms == 1500
    assert warnings == ["settings.provider.deadlineMs: 0 is below the least value 100; using 1500"]
    assert merge(HeedlsConfig(), {"provider": {"deadlineMs": 100}}, "settings")[0].provider.deadline_ms == 100
