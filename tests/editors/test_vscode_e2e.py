"""VS Code end to end: the built .vsix in code-server, driven by Playwright in Debian's Chromium.

One browser session (module fixture, ~1 minute) runs every step of tests/editors/vscode/e2e.mjs; the
tests below assert on what it saw. The accept/reject checks read the server's own telemetry store
(`heedls telemetry export` in the workspace, with HEEDLS_DATA_DIR pointing at a temp dir), so they
prove the editor's Tab/Esc reached the acceptance model, not just that the DOM changed.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.editors import tools

pytestmark = [pytest.mark.editor, pytest.mark.slow]

VSCODE_DIR = tools.REPO / "editors" / "vscode"
E2E_SCRIPT = Path(__file__).parent / "vscode" / "e2e.mjs"

# What the person types (one string per keyboard.type call; "\n" presses Enter so the editor's own
# auto-indent applies, as it would for a person).
TYPING = ["\n", "\n", "<outdent>", "def total3(a, b, c):", "\n", "return "]
TYPING_SECOND = ["\n", "\n", "\n", "<outdent>", "def sub3(a, b, c):", "\n", "ret"]
TYPING_THIRD = ["\n", "\n", "\n", "<outdent>", "def mul3(a, b, c):", "\n", "return "]
TYPING_FOURTH = ["\n", "\n", "\n", "<outdent>", "def add4(a, b, c, d):", "\n", "return "]

WORKSPACE = {
    "shapes.py": '''\
        """Small helpers the typing test extends; their shape is what the local provider learns."""


        def add2(a, b):
            return a + b


        def add3(a, b, c):
            return a + b + c


        def mul2(a, b):
            return a * b


        def sub2(a, b):
            return a - b
        ''',
    "stats.py": '''\
        def mean(values):
            """Arithmetic mean of a non-empty list."""
            total = 0
            for v in values:
                total += v
            return total / (len(values) + 1)
        ''',
    "test_stats.py": '''\
        from stats import mean


        def test_mean_of_two():
            assert mean([2, 4]) == 3


        def test_mean_of_one():
            assert mean([5]) == 5
        ''',
}
BUG_LINE = 6  # 1-based: the return line of stats.py
FIX_TITLE = "(tests pass)"  # validated fixes say so in their title (not "Search for a fix that makes the tests pass")


def _settings(data: Path) -> dict[str, Any]:
    return {
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "workbench.enableExperiments": False,
        "workbench.secondarySideBar.defaultVisibility": "hidden",
        "chat.disableAIFeatures": True,
        "telemetry.telemetryLevel": "off",
        "update.mode": "none",
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "security.workspace.trust.enabled": False,
        "editor.inlineSuggest.enabled": True,
        # Keep the keyboard sequence deterministic: no word-completion widget, no auto-closing.
        "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
        "editor.suggestOnTriggerCharacters": False,
        "editor.autoClosingBrackets": "never",
        "editor.autoClosingQuotes": "never",
        "editor.hover.delay": 300,
        "files.autoSave": "off",
        "heedls.trace.server": "messages",
        "heedls.gate.mode": "off",  # every suggestion is shown: the test is about the editor, not the gate
    }


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"code-server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"code-server did not answer on {url} within {timeout}s")


@pytest.fixture(scope="module")
def vsix() -> Path:
    node = tools.node24()
    npm = shutil.which("npm")
    tools.require(node24=node, npm=Path(npm) if npm else None,
                  extension_node_modules=VSCODE_DIR / "node_modules" if (VSCODE_DIR / "node_modules").is_dir() else None)
    assert node is not None
    env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ['PATH']}"}
    # Lint and typecheck are part of building the extension: a broken extension fails here, clearly.
    for script in ("check", "package"):
        result = tools.run(["npm", "run", "--silent", script], timeout=180, cwd=VSCODE_DIR, env=env)
        assert result.returncode == 0, f"npm run {script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    path = VSCODE_DIR / "heedls.vsix"
    assert path.is_file()
    return path


def _run_session(vsix: Path, root: Path, *, files: dict[str, str], settings: dict[str, Any], scenario: str,
                 machine_settings: dict[str, Any] | None = None, trusted: bool = True, venv: bool = True, config: dict[str, Any] | None = None,
                 timeout: float = 420, code_workspace: str | None = None) -> dict[str, Any]:
    """Start code-server on a fresh workspace under `root` with the .vsix installed, run one scenario
    of e2e.mjs in Chromium against it, and return what the script recorded. `code_workspace`: a
    .code-workspace file among `files` to open (a multi-root window) instead of the folder."""
    node, code, pw, chrome = tools.node24(), tools.code_server(), tools.playwright_dir(), tools.chromium()
    tools.require(node24=node, code_server=code, playwright_core=pw, chromium=chrome)
    assert node and code and pw and chrome
    workspace, data, user, exts, xdg = (root / n for n in ("workspace", "data", "user", "extensions", "xdg"))
    for d in (workspace, data, user / "User", user / "Machine", exts, xdg):
        d.mkdir(parents=True)
    for name, text in files.items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(textwrap.dedent(text), encoding="utf-8")
    user_settings = user / "User" / "settings.json"
    user_settings.write_text(json.dumps({**_settings(data), **settings}, indent=2))
    # code-server is a remote window: machine-scoped settings (heedls.serverCommand, heedls.interpreter)
    # are read from the remote's Machine/settings.json ("Remote" tab of the Settings UI), not User/.
    machine = user / "Machine" / "settings.json"
    machine.write_text(json.dumps(machine_settings or {}, indent=2))
    if venv:
        # Zero configuration: the project's own .venv has heedls installed, as after `pip install heedls`
        # in a project; the extension must find it by itself. (The extension host takes PATH from the
        # user's login shell, so a PATH set here would not reach it.)
        (workspace / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)

    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(node.parent), os.environ.get("PATH", "")]),
        "HEEDLS_DATA_DIR": str(data),
        "XDG_CONFIG_HOME": str(xdg / "config"),
        "XDG_DATA_HOME": str(xdg / "data"),
        "XDG_CACHE_HOME": str(xdg / "cache"),
    }
    common = ["--user-data-dir", str(user), "--extensions-dir", str(exts)]
    installed = tools.run([str(code), *common, "--install-extension", str(vsix)], timeout=120, env=env)
    assert installed.returncode == 0, installed.stderr[-2000:]

    port = tools.free_port()
    log = (root / "code-server.log").open("wb")
    # Without --disable-workspace-trust the folder is untrusted until the user trusts it (the
    # settings then say whether trust is enforced and whether VS Code asks at start-up).
    trust = ["--disable-workspace-trust"] if trusted else []
    code_log = ["--log", os.environ["HEEDLS_E2E_CODE_LOG"]] if os.environ.get("HEEDLS_E2E_CODE_LOG") else []
    proc = subprocess.Popen(
        [str(code), *common, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", "--disable-telemetry",
         "--disable-update-check", *trust, "--disable-getting-started-override", "--ignore-last-opened",
         *code_log, str(workspace / code_workspace) if code_workspace else str(workspace)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    results_path = root / "results.json"
    prefix = "vscode" if scenario == "main" else f"vscode-{scenario}"
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc, 60)
        script_config = {
            "scenario": scenario,
            "url": f"http://127.0.0.1:{port}/?workspace={workspace / code_workspace}" if code_workspace
                   else f"http://127.0.0.1:{port}/?folder={workspace}",
            "workspace": str(workspace),
            "userDir": str(user),
            "userSettings": str(user_settings),
            "machineSettings": str(machine),
            "typingFile": "shapes.py",
            "typing": TYPING,
            "artifacts": str(tools.artifacts()),
            "results": str(results_path),
            "chromium": str(chrome),
            "playwrightDir": str(pw),
            "cli": tools.heedls_cli(),
            **(config or {}),
        }
        (root / "config.json").write_text(json.dumps(script_config))
        run = tools.run([str(node), str(E2E_SCRIPT), str(root / "config.json")], timeout=timeout, env=env)
        sys.stderr.write(run.stderr[-6000:])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        # Keep the extension's output channel (server log + LSP trace) next to the screenshots.
        for i, channel in enumerate(sorted((user / "logs").rglob("*heedls*.log"))):
            shutil.copy(channel, tools.artifacts() / f"{prefix}-{i}-{channel.name}")
        shutil.copy(root / "code-server.log", tools.artifacts() / f"{prefix}-code-server.log")
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "fatal" in results and not results.get("steps"):
        pytest.fail(f"the browser session failed: {results['fatal'][:2000]}")
    results.setdefault("steps", {})
    results["workspace"] = workspace
    results["data"] = data
    return results


@pytest.fixture(scope="module")
def session(vsix: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run_session(vsix, tmp_path_factory.mktemp("vscode-e2e"), files=WORKSPACE, settings={}, scenario="main", config={
        "typingSecond": TYPING_SECOND,
        "typingThird": TYPING_THIRD,
        "typingFourth": TYPING_FOURTH,
        # HEEDLS_E2E_QUICK=1: only the suggestion steps (for working on the extension)
        "diagnostics": None if os.environ.get("HEEDLS_E2E_QUICK") else
        {"file": "stats.py", "line": BUG_LINE, "fixTitle": FIX_TITLE, "bug": "len(values) + 1"},
    })


# An untrusted copy of the workspace: its conftest.py leaves a mark if pytest ever imports it, and
# its .vscode/settings.json asks for a server command that would leave another (workspace settings
# that choose what runs are exactly what Restricted Mode must ignore).
PYTEST_MARK = "PYTEST_RAN"
COMMAND_MARK = "WORKSPACE_COMMAND_RAN"
UNTRUSTED_FILES = {
    **WORKSPACE,
    "conftest.py": f"""\
        from pathlib import Path

        Path(__file__).with_name({PYTEST_MARK!r}).write_text("pytest imported the workspace's conftest.py")
        """,
    ".vscode/settings.json": json.dumps({"heedls.serverCommand": [
        sys.executable, "-c", f"open({COMMAND_MARK!r}, 'w').write('workspace command ran')"]}),
}
INSTALL_COMMAND = "python -m pip install /path/to/heedls"  # editors/vscode/src/server.ts INSTALL_HINT
# What vscode-languageclient shows when requests fail or the connection breaks: never in a toast.
PROTOCOL_ERRORS = ("Request ", "failed with message", "Connection to server", "Pending response rejected",
                   "couldn't create connection", "Client is not running", "Error:")


@pytest.fixture(scope="module")
def untrusted(vsix: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run_session(vsix, tmp_path_factory.mktemp("vscode-untrusted"), files=UNTRUSTED_FILES, scenario="untrusted",
                        trusted=False, timeout=180, settings={
                            "security.workspace.trust.enabled": True,
                            "security.workspace.trust.startupPrompt": "never",  # Restricted Mode, no modal
                        },
                        # The user's own setting is honoured in Restricted Mode (the workspace's .venv and
                        # its .vscode/settings.json are not).
                        machine_settings={"heedls.interpreter": sys.executable}, config={"testFile": "test_stats.py", "buggyFile": "stats.py"})


@pytest.fixture(scope="module")
def missing(vsix: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("vscode-missing")
    results = _run_session(vsix, root, files=WORKSPACE, settings={}, scenario="missing", venv=False, timeout=180,
                           config={"missingCommand": str(root / "no-such-dir" / "heedls")})
    # The extension host takes PATH from the login shell: a machine with heedls on it there has no
    # "not installed" case to show.
    login = tools.run([os.environ.get("SHELL") or "/bin/sh", "-lc", "command -v heedls"], timeout=30)
    results["heedlsOnLoginPath"] = login.stdout.strip() if login.returncode == 0 else None
    return results


# A multi-root window: two folders, each with its own pyproject.toml; the second's folder settings
# (its .vscode/settings.json) turn heedls' lint off there. The first has a module with a failing test.
UNUSED_IMPORT = "import os\n\n\ndef f():\n    return 1\n"  # F401
RUFF_F = '[tool.ruff]\nlint.select = ["F"]\n'
MULTIROOT_FILES = {
    "multi.code-workspace": json.dumps({"folders": [{"path": "app"}, {"path": "lib"}]}),
    "app/pyproject.toml": RUFF_F,
    "app/app_mod.py": UNUSED_IMPORT,
    "app/calc.py": "def double(x):\n    return x * 3\n",
    "app/test_calc.py": "from calc import double\n\n\ndef test_double():\n    assert double(2) == 4\n",
    "lib/pyproject.toml": RUFF_F,
    "lib/lib_mod.py": UNUSED_IMPORT,
    "lib/.vscode/settings.json": json.dumps({"heedls.lint.enabled": False}),
}


@pytest.fixture(scope="module")
def multiroot(vsix: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("vscode-multiroot")
    workspace = root / "workspace"
    return _run_session(vsix, root, files=MULTIROOT_FILES, scenario="multiroot", venv=False, timeout=240,
                        code_workspace="multi.code-workspace",
                        settings={"heedls.logLevel": "debug"},  # the server logs each watched-file report
                        machine_settings={"heedls.interpreter": sys.executable},
                        config={"appModule": "app_mod.py", "libModule": "lib_mod.py", "buggyModule": "calc.py",
                                "testFile": "test_calc.py", "testPath": str(workspace / "app" / "test_calc.py"),
                                "testUri": (workspace / "app" / "test_calc.py").as_uri(),
                                "buggyUri": (workspace / "app" / "calc.py").as_uri(),
                                "libSettings": str(workspace / "lib" / ".vscode" / "settings.json")})


def _step(session: dict[str, Any], name: str) -> dict[str, Any]:
    step = session["steps"].get(name)
    if step is None:
        pytest.fail(f"step {name!r} did not run (an earlier step failed: {list(session['steps'])})")
    assert step["ok"], f"step {name!r} failed: {step.get('error')}"
    return dict(step)


def _events(session: dict[str, Any]) -> list[dict[str, Any]]:
    out = tools.run([*tools.heedls_cli(), "telemetry", "export", "--format", "jsonl"], timeout=60,
                    cwd=session["workspace"], env={**os.environ, "HEEDLS_DATA_DIR": str(session["data"])})
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_extension_starts_server_with_zero_configuration(session: dict[str, Any]) -> None:
    _step(session, "workbench")
    step = _step(session, "server_running")
    assert "heedls" in step["statusLabel"]
    # The status-bar tooltip comes from heedls/status: the user setting heedls.gate.mode = "off"
    # reached the server through initializationOptions.
    assert "gate: `off`" in step["statusLabel"], step["statusLabel"]
    assert "provider: `local`" in step["statusLabel"]


def test_ghost_text_appears_while_typing(session: dict[str, Any]) -> None:
    step = _step(session, "ghost_text")
    assert step["ghost"].strip(), "ghost text element was empty"
    assert (tools.artifacts() / "vscode-ghost-text.png").stat().st_size > 10_000


def test_tab_accepts_and_server_records_accept(session: dict[str, Any]) -> None:
    step = _step(session, "tab_accepts")
    assert step["inserted"], f"accepted text not in the file:\n{step['fileAfter']}"
    accepted = [e for e in _events(session) if e["outcome"] == "accepted"]
    assert accepted and all(e["shown"] for e in accepted)
    assert accepted[0]["suggestion"] and accepted[0]["suggestion"] in step["fileAfter"]


def test_escape_dismisses_and_server_records_reject(session: dict[str, Any]) -> None:
    step = _step(session, "esc_dismisses")
    rejected = {e["id"]: e for e in _events(session) if e["outcome"] == "rejected"}
    assert step["rejectedId"] in rejected
    assert rejected[step["rejectedId"]]["shown"] is True
    # "dismissed" is the editor's Esc (the server's own supersede timeout records "superseded").
    assert rejected[step["rejectedId"]]["reason"] == "dismissed"
    assert rejected[step["rejectedId"]]["suggestion"] == step["suggestion"]


def test_typing_through_the_ghost_text_then_tab_is_one_accept(session: dict[str, Any]) -> None:
    # Typing the first characters of the suggestion is not a rejection: the server answers with the
    # same id and the rest, and Tab accepts the original suggestion, one event, its whole text.
    step = _step(session, "type_through_tab")
    assert step["typed"].strip() and step["ghostAfter"], step
    assert step["acceptedId"], step
    fresh = {e["id"]: e for e in step["fresh"]}
    accepted = fresh[step["acceptedId"]]
    # The ghost read is the suggestion's first line, or, when a slow keystroke let the request go out
    # mid-word ("ret" → "urn a + b + c"), its rest after what was typed since: typing through too.
    first = accepted["suggestion"].split("\n")[0]
    assert first.endswith(step["ghost"]) and "return ".endswith(first[:len(first) - len(step["ghost"])]), step
    assert accepted["shown"], step
    assert f"return {step['ghost']}" in step["fileAfter"]
    typed_end = "return " + step["typed"]
    minted_for_rest = [e for e in fresh.values() if e["suggestion"] and e["prefixEnd"].endswith(typed_end)]
    assert not minted_for_rest, step
    rejected_same = [e for e in fresh.values() if e["outcome"] == "rejected" and e["suggestion"] == accepted["suggestion"]]
    assert not rejected_same, step


def test_arrow_key_away_from_the_ghost_text_is_a_dismissal(session: dict[str, Any]) -> None:
    step = _step(session, "arrow_dismisses")
    assert step["rejectedId"] and step["reason"] == "dismissed", step


def test_server_crash_is_restarted_with_a_message(session: dict[str, Any]) -> None:
    step = _step(session, "crash_restart")
    assert step["newPid"] != step["oldPid"]
    assert "restarted" in step["message"]


def test_suggestions_come_back_after_restart(session: dict[str, Any]) -> None:
    # What was typed while the server restarted gets its suggestion once the new server is up,
    # without another keystroke (the extension asks again when the client is running).
    step = _step(session, "crash_restart")
    assert step["ghostAfterRestart"], f"no suggestion within 30 s of the restart (typed for {step['typedSeconds']} s)"


def test_slow_server_never_freezes_the_editor(session: dict[str, Any]) -> None:
    # The server stopped (SIGSTOP) for several seconds: typing went on at its own pace, the text is
    # in the file, no error or restart was shown, and suggestions resumed once it answered again.
    step = _step(session, "slow_server")
    assert step["typedLine"], "what was typed while the server was stopped is not in the file"
    assert step["typedSeconds"] < 10, step
    assert step["newToasts"] == [], step["newToasts"]
    assert step["samePid"], "the stopped server was restarted instead of waited for"
    assert step["ghostAfterResume"], f"no suggestion after the server answered again: {step}"


def test_failing_test_shows_diagnostic(session: dict[str, Any]) -> None:
    step = _step(session, "diagnostic")
    assert any("mean" in p or "assert" in p.lower() for p in step["problems"]), step["problems"]


def test_hover_shows_explanation(session: dict[str, Any]) -> None:
    step = _step(session, "hover")
    assert "3" in step["hover"] and len(step["hover"]) > 40, step["hover"]


def test_quick_fix_applies_validated_fix(session: dict[str, Any]) -> None:
    step = _step(session, "quick_fix")
    fixed = step["fileAfter"]
    assert "len(values) + 1" not in fixed
    workspace = session["workspace"]
    result = tools.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_stats.py"],
                       timeout=60, cwd=workspace)
    assert result.returncode == 0, result.stdout[-2000:]


def _protocol_errors(toasts: list[str]) -> list[str]:
    return [t for t in toasts if any(p in t for p in PROTOCOL_ERRORS)]


def test_untrusted_workspace_is_in_restricted_mode(untrusted: dict[str, Any]) -> None:
    step = _step(untrusted, "restricted_mode")
    assert "Restricted Mode" in step["indicator"]


def test_untrusted_workspace_ignores_workspace_server_command(untrusted: dict[str, Any]) -> None:
    _step(untrusted, "server_running")
    step = _step(untrusted, "untrusted_launch")
    # Started from the user's setting, not from the workspace's serverCommand nor its .venv.
    assert step["starting"] and all("(from setting heedls.interpreter)" in line for line in step["starting"]), step
    assert not (untrusted["workspace"] / COMMAND_MARK).exists()


def test_untrusted_workspace_still_gets_suggestions(untrusted: dict[str, Any]) -> None:
    step = _step(untrusted, "ghost_text")
    assert step["ghost"].strip()


def test_untrusted_workspace_never_runs_tests(untrusted: dict[str, Any]) -> None:
    step = _step(untrusted, "no_test_run")
    # The server got tests.trusted = false and said so when the save asked for a run.
    assert step["refused"], "the server never reported that it did not run the tests"
    # The explicit command asks for trust instead.
    assert "does not run tests in an untrusted workspace" in step["toast"], step["toast"]
    # Nothing ran: no pytest diagnostic for the failing test, and the workspace's conftest.py was
    # never imported.
    assert not [p for p in step["problems"] if "heedls/pytest" in p or "expected 3" in p], step["problems"]
    assert not (untrusted["workspace"] / PYTEST_MARK).exists()
    assert not _protocol_errors(step["toasts"]), step["toasts"]


def test_missing_server_says_how_to_install(missing: dict[str, Any]) -> None:
    if missing["heedlsOnLoginPath"]:
        pytest.skip(f"heedls is on the login shell's PATH ({missing['heedlsOnLoginPath']}): nothing is missing")
    step = _step(missing, "missing_message")
    assert "not installed" in step["message"] and INSTALL_COMMAND in step["message"], step["message"]
    assert "codicon-warning" in step["statusHtml"]


def test_editor_stays_usable_without_server(missing: dict[str, Any]) -> None:
    step = _step(missing, "missing_editor_usable")
    assert step["saved"], "typed text did not reach the file"
    assert not _protocol_errors(step["toasts"]), step["toasts"]


def test_server_command_that_does_not_exist(missing: dict[str, Any]) -> None:
    step = _step(missing, "bad_command_message")
    assert INSTALL_COMMAND in step["message"], step["message"]
    assert "heedls.serverCommand" in step["message"], step["message"]
    assert step["saved"], "typed text did not reach the file"
    assert not _protocol_errors(step["toasts"]), step["toasts"]


def test_each_folder_of_a_multi_root_window_gets_its_own_folder_settings(multiroot: dict[str, Any]) -> None:
    """heedls.lint.enabled set in one folder's .vscode/settings.json applies to that folder only,
    at start-up and when it changes while the server runs."""
    rows = _step(multiroot, "folder_settings")["rows"]
    assert any("app_mod.py" in r for r in rows) and any("imported but unused" in r for r in rows)
    assert not any("lib_mod.py" in r for r in rows), rows
    assert any("lib_mod.py" in r for r in _step(multiroot, "folder_setting_changed")["rows"])


def test_a_file_deleted_on_disk_loses_its_diagnostics_and_is_reported_by_one_watcher(multiroot: dict[str, Any]) -> None:
    """The server watches the *.py files itself (a registration VS Code honours); the extension
    adds no watcher of its own, which reported each deletion once more than the server's did:
    a deletion reaches the server no more often than a save does (VS Code itself reports each event
    of a multi-root window twice, see docs/editors.md). Not exactly as often: under load VS Code's
    own watcher sometimes folds one report of the deletion into another (two CI runs read it 3
    times against 4 saves, one of them after waiting for the log to catch up); none was seen to add
    one, and an extension watcher of its own adds at least one."""
    step = _step(multiroot, "deleted_file")
    assert any("test_calc.py" in r for r in step["before"]) and not any("test_calc.py" in r for r in step["after"])
    assert step["saved"] >= 1 and 1 <= step["deleted"] <= step["saved"], step
