"""`heedls fix MODULE [--test TEST_FILE] [--write] [--json] [--budget-seconds N]`: the CLI contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

MODULE = "def mean(xs):\n    # average of a non-empty list\n    return sum(xs) / (len(xs) - 1)\n"
TESTS = "from stats import mean\n\n\ndef test_mean():\n    assert mean([2, 4, 6]) == 4\n\n\ndef test_one():\n    assert mean([5]) == 5\n"


def _heedls(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heedls", *args], cwd=cwd, capture_output=True, text=True,  # noqa: PLW1510
                          timeout=120, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **(env or {})))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "stats.py").write_text(MODULE)
    (tmp_path / "test_stats.py").write_text(TESTS)
    return tmp_path


def test_json_without_write_touches_nothing(ws: Path) -> None:
    run = _heedls("fix", "stats.py", "--test", "test_stats.py", "--json", "--budget-seconds", "30", cwd=ws)
    assert run.returncode == 0, run.stderr
    lines = [ln for ln in run.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1  # one JSON object, nothing else on stdout
    data = json.loads(lines[0])
    assert {"fixed", "patch", "candidates_tried", "test_runs", "seconds", "explanation"} <= set(data)
    assert data["fixed"] is True
    assert isinstance(data["candidates_tried"], int) and isinstance(data["test_runs"], int)
    assert isinstance(data["seconds"], float) and data["seconds"] <= 30 * 1.1
    assert "-    return sum(xs) / (len(xs) - 1)" in data["patch"]
    added = [ln for ln in data["patch"].splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert len(added) == 1 and "len(xs) - 1" not in added[0] and "- 0" not in added[0]
    assert (ws / "stats.py").read_text() == MODULE
    assert data["written"] is False
    assert data["tests"] == ["test_stats.py"]


def test_write_applies_the_fix_and_tests_pass(ws: Path) -> None:
    test_before = (ws / "test_stats.py").read_bytes()
    run = _heedls("fix", "stats.py", "--test", "test_stats.py", "--json", "--write", "--budget-seconds", "30", cwd=ws)
    data = json.loads(run.stdout)
    assert data["fixed"] is True and data["written"] is True
    assert (ws / "stats.py").read_text() != MODULE
    assert "# average of a non-empty list" in (ws / "stats.py").read_text()
    assert (ws / "test_stats.py").read_bytes() == test_before
    check = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_stats.py"], cwd=ws,  # noqa: PLW1510
                           capture_output=True, timeout=60, env=dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert check.returncode == 0


def test_no_fix_found_exits_1_with_fixed_false(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("def f():\n    return 'abc'\n")
    (tmp_path / "test_m.py").write_text("from m import f\n\n\ndef test_f():\n    assert f() == 'a totally different string'\n")
    run = _heedls("fix", "m.py", "--test", "test_m.py", "--json", "--budget-seconds", "5", "--write", cwd=tmp_path)
    assert run.returncode == 1
    data = json.loads(run.stdout)
    assert data["fixed"] is False and data["patch"] == "" and data["explanation"]
    assert (tmp_path / "m.py").read_text() == "def f():\n    return 'abc'\n"


def test_without_test_the_test_files_that_import_the_module_are_used(tmp_path: Path) -> None:
    # a package and its tests in separate folders, a fixture in conftest.py, no project marker
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "stats.py").write_text(MODULE)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text("import pytest\n\n\n@pytest.fixture\ndef xs():\n    return [2, 4, 6]\n")
    (tmp_path / "tests" / "test_averages.py").write_text("from pkg.stats import mean\n\n\ndef test_mean(xs):\n    assert mean(xs) == 4\n")
    (tmp_path / "tests" / "test_other.py").write_text("def test_unrelated():\n    assert True\n")
    run = _heedls("fix", "pkg/stats.py", "--budget-seconds", "30", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "testing with tests/test_averages.py\n" in run.stderr  # said, and only the importing file
    assert "+    return sum(xs) / len(xs)" in run.stdout


def test_without_test_and_no_test_file_found_says_to_name_them(tmp_path: Path) -> None:
    (tmp_path / "stats.py").write_text(MODULE)
    run = _heedls("fix", "stats.py", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == ("heedls fix: no test file imports stats.py or is named test_stats.py; "
                                  "name the tests that must pass with --test")
    (tmp_path / "test_stats.py").write_text(TESTS)
    run = _heedls("fix", "test_stats.py", cwd=tmp_path)  # a test file is not repaired against itself
    assert run.returncode == 2 and "test_stats.py is a test file" in run.stderr
    assert (tmp_path / "test_stats.py").read_text() == TESTS


def test_missing_module_is_a_usage_error(tmp_path: Path) -> None:
    run = _heedls("fix", "nope.py", "--test", "test_nope.py", "--json", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stdout == ""


def test_text_output_prints_the_patch(ws: Path) -> None:
    run = _heedls("fix", "stats.py", "--test", "test_stats.py", "--budget-seconds", "30", cwd=ws)
    assert run.returncode == 0
    assert run.stdout.startswith("--- a/stats.py")
    assert "test runs" in run.stderr


def test_write_keeps_the_files_crlf_line_endings(ws: Path) -> None:
    crlf = MODULE.replace("\n", "\r\n").encode()
    (ws / "stats.py").write_bytes(crlf)
    run = _heedls("fix", "stats.py", "--test", "test_stats.py", "--json", "--write", "--budget-seconds", "30", cwd=ws)
    assert json.loads(run.stdout)["written"] is True, run.stderr
    after = (ws / "stats.py").read_bytes()
    assert after != crlf and after.count(b"\r\n") == crlf.count(b"\r\n") and b"\n" not in after.replace(b"\r\n", b"")


def test_write_never_overwrites_an_edit_saved_while_the_fix_was_searched_for(ws: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The user saves the module while the search runs: here, while the tests' first run waits
    (the test runs themselves see the project read-only, so the save comes from outside them)."""
    outside = tmp_path_factory.mktemp("signals")
    started, saved_flag = outside / "started", outside / "saved"
    saved = MODULE + "\n\n# the user's edit\n"
    (ws / "test_stats.py").write_text(
        "import pathlib, time\n"
        f"started, saved = pathlib.Path({str(started)!r}), pathlib.Path({str(saved_flag)!r})\n"
        "if not started.exists():\n"
        "    started.touch()\n"
        "    for _ in range(200):  # until the user has saved (at most 10 s)\n"
        "        if saved.exists():\n"
        "            break\n"
        "        time.sleep(0.05)\n" + TESTS)
    fix = subprocess.Popen([sys.executable, "-m", "heedls", "fix", "stats.py", "--test", "test_stats.py", "--json",
                            "--write", "--budget-seconds", "30"], cwd=ws, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    try:
        for _ in range(1200):
            if started.exists() or fix.poll() is not None:
                break
            time.sleep(0.05)
        (ws / "stats.py").write_text(saved)
        saved_flag.touch()
        stdout, stderr = fix.communicate(timeout=120)
    finally:
        fix.kill()
    data = json.loads(stdout)
    assert data["fixed"] is True and data["written"] is False and fix.returncode == 2, stderr
    assert "was saved while the fix was searched for: not written" in stderr
    assert (ws / "stats.py").read_text() == saved


def test_a_module_that_is_not_utf8_is_a_one_line_error(ws: Path) -> None:
    latin1 = "# -*- coding: latin-1 -*-\n# café\n".encode("latin-1") + MODULE.encode()
    (ws / "stats.py").write_bytes(latin1)
    run = _heedls("fix", "stats.py", "--test", "test_stats.py", "--json", "--write", cwd=ws)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.startswith("heedls fix: stats.py is not UTF-8 text (byte 0xe9 at offset") and run.stderr.count("\n") == 1
    assert (ws / "stats.py").read_bytes() == latin1


def test_the_projects_configured_interpreter_runs_the_tests(ws: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """An interpreter that cannot start is an error naming it, and the runners' copies of the
    workspace do not stay behind (they did: two per call, in the temp folder)."""
    (ws / "pyproject.toml").write_text('[tool.heedls.tests]\npython = "/nonexistent/python3"\n')
    scratch = tmp_path_factory.mktemp("scratch")
    run = _heedls("fix", "stats.py", "--test", "test_stats.py", "--json", cwd=ws, env={"TMPDIR": str(scratch)})
    assert json.loads(run.stdout)["status"] == "error" and "/nonexistent/python3" in run.stdout + run.stderr
    assert not list(scratch.iterdir())


def test_sigterm_cleans_up_like_ctrl_c(ws: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """`timeout`, a cancelled CI job or `kill` send SIGTERM: no temporary workspace copy stays."""
    import signal
    import time

    scratch = tmp_path_factory.mktemp("scratch")  # outside the workspace the copies are made of
    (ws / "test_stats.py").write_text(TESTS.replace("def test_mean():", "def test_mean():\n    import time; time.sleep(1)"))
    child = subprocess.Popen([sys.executable, "-m", "heedls", "fix", "stats.py", "--test", "test_stats.py",
                              "--budget-seconds", "60"], cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, TMPDIR=str(scratch), PYTHONDONTWRITEBYTECODE="1"))
    deadline = time.monotonic() + 30
    while not list(scratch.glob("heedls-repair-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(scratch.glob("heedls-repair-*")), "the search never started"
    child.send_signal(signal.SIGTERM)
    child.wait(30)
    assert not list(scratch.glob("heedls-repair-*"))


def _as_a_user(args: list[str]) -> list[str]:
    """The command as an ordinary user sees file modes: root reads and writes read-only files
    anyway, so as root it runs without the capabilities that let it (setpriv)."""
    if os.geteuid() != 0:
        return args
    if not shutil.which("setpriv"):
        pytest.skip("root without setpriv cannot run with file modes enforced")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *args]


def _read_only(root: Path) -> None:
    for path in [*root.rglob("*"), root]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def test_a_read_only_project_is_repaired_in_its_copy_and_left_as_it_was(ws: Path) -> None:
    """Bug sets are often read-only (a checkout, a mounted folder). The search writes candidates
    only into its own copy; before, that copy kept the modes, and every candidate failed to be
    written ("could not run ... PermissionError")."""
    _read_only(ws)
    try:
        run = subprocess.run(_as_a_user([sys.executable, "-m", "heedls", "fix", "stats.py", "--test", "test_stats.py",
                                         "--json", "--budget-seconds", "30"]), cwd=ws, capture_output=True, text=True,
                             timeout=120, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        data = json.loads(run.stdout)
        assert data["fixed"] is True, data["explanation"]
        assert (ws / "stats.py").read_text() == MODULE and sorted(p.name for p in ws.iterdir()) == ["stats.py", "test_stats.py"]
    finally:
        for path in [ws, *ws.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_the_bench_repairs_a_read_only_bug_set(tmp_path: Path) -> None:
    bug = tmp_path / "set" / "mean_bug"
    bug.mkdir(parents=True)
    (bug / "stats.py").write_text(MODULE)
    (bug / "test_stats.py").write_text(TESTS)
    (bug / "bug.json").write_text(json.dumps({"id": "mean_bug", "source": "spec", "module": "stats.py",
                                              "test": "test_stats.py", "timeout_s": 30}))
    _read_only(tmp_path / "set")
    try:
        run = subprocess.run(_as_a_user([sys.executable, "-m", "heedls", "bench", "fix", str(tmp_path / "set"), "--json",
                                         "--budget-seconds", "20"]), capture_output=True, text=True, timeout=120,
                             cwd=tmp_path, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        summary = json.loads(run.stdout)
        assert summary["fixed"] == 1, summary["bugs"]
        assert (bug / "stats.py").read_text() == MODULE
    finally:
        for path in [tmp_path / "set", *(tmp_path / "set").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_an_unknown_provider_is_a_usage_error_not_a_silent_model_free_search(ws: Path) -> None:
    run = _heedls("fix", "stats.py", "--test", "test_stats.py", "--provider", "bogus", cwd=ws)
    assert run.returncode == 2 and "'bogus' is none of none, llamacpp," in run.stderr
    assert (ws / "stats.py").read_text() == MODULE


def test_the_lines_named_most_suspicious_are_lines_of_the_module(tmp_path: Path) -> None:
    """A 2-line module read "Most suspicious: line 1, line 2, line 3": the line after the final line
    break was counted as one."""
    (tmp_path / "m.py").write_text("def f():\n    return 1\n")
    (tmp_path / "test_m.py").write_text("import time\nfrom m import f\n\n\ndef test_f():\n    time.sleep(3)\n"
                                        "    assert f() == 2\n")
    run = _heedls("fix", "m.py", "--budget-seconds", "2", "--json", cwd=tmp_path)
    explanation = json.loads(run.stdout)["explanation"]
    assert "Most suspicious: line 1, line 2." in explanation or "Most suspicious: line 2, line 1." in explanation, \
        explanation
