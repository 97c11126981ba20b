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
FIX_TITLE = "tests pass"  # validated fixes say so in their title


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


@pytest.fixture(scope="module")
def session(vsix: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    node, code, pw, chrome = tools.node24(), tools.code_server(), tools.playwright_dir(), tools.chromium()
    tools.require(node24=node, code_server=code, playwright_core=pw, chromium=chrome)
    assert node and code and pw and chrome
    root = tmp_path_factory.mktemp("vscode-e2e")
    workspace, data, user, exts, xdg = (root / n for n in ("workspace", "data", "user", "extensions", "xdg"))
    for d in (workspace, data, user / "User", exts, xdg):
        d.mkdir(parents=True)
    for name, text in WORKSPACE.items():
        (workspace / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (user / "User" / "settings.json").write_text(json.dumps(_settings(data), indent=2))
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
    proc = subprocess.Popen(
        [str(code), *common, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", "--disable-telemetry",
         "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override",
         "--ignore-last-opened", str(workspace)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    results_path = root / "results.json"
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc, 60)
        config = {
            "url": f"http://127.0.0.1:{port}/?folder={workspace}",
            "workspace": str(workspace),
            "typingFile": "shapes.py",
            "typing": TYPING,
            "typingSecond": TYPING_SECOND,
            # HEEDLS_E2E_QUICK=1: only the suggestion steps (for working on the extension)
            "diagnostics": None if os.environ.get("HEEDLS_E2E_QUICK") else
            {"file": "stats.py", "line": BUG_LINE, "fixTitle": FIX_TITLE},
            "artifacts": str(tools.artifacts()),
            "results": str(results_path),
            "chromium": str(chrome),
            "playwrightDir": str(pw),
            "cli": tools.heedls_cli(),
        }
        (root / "config.json").write_text(json.dumps(config))
        run = tools.run([str(node), str(E2E_SCRIPT), str(root / "config.json")], timeout=420, env=env)
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
            shutil.copy(channel, tools.artifacts() / f"vscode-{i}-{channel.name}")
        shutil.copy(root / "code-server.log", tools.artifacts() / "vscode-code-server.log")
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "fatal" in results and not results.get("steps"):
        pytest.fail(f"the browser session failed: {results['fatal'][:2000]}")
    results["workspace"] = workspace
    results["data"] = data
    return results


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


def test_server_crash_is_restarted_with_a_message(session: dict[str, Any]) -> None:
    step = _step(session, "crash_restart")
    assert step["newPid"] != step["oldPid"]
    assert "restarted" in step["message"]


@pytest.mark.xfail(reason="intermittent: after a SIGKILL restart the new server sometimes answers nothing for "
                   "~65 s (its work-done-progress create times out, pygls InvalidStateError); reported", strict=False)
def test_suggestions_come_back_after_restart(session: dict[str, Any]) -> None:
    step = _step(session, "crash_restart")
    assert step["ghostAfterRestart"], "no suggestion within 60 s of the restart"


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
