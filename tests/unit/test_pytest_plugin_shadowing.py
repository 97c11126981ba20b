"""heedls' pytest plugin runs in the workspace's interpreter under `python -m pytest`, which puts the
workspace's folder first on sys.path: a project's own module named like a standard one must not
take that module's place in the plugin."""

from __future__ import annotations

from pathlib import Path

from heedls.analyzers.testrun import run_tests


def test_a_project_with_its_own_json_module_gets_its_test_outcomes(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (tmp_path / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
                                           "def test_zero():\n    assert add(0, 0) == 0\n")
    # pytest imports json before the plugin: the project's, which was then the plugin's too
    (tmp_path / "json.py").write_text("def dumps(x, **k):\n    return 'x'\n\n\ndef loads(s, **k):\n    return None\n")
    (tmp_path / "test_uses_own_json.py").write_text("import json\n\n\ndef test_own():\n    assert json.dumps(1) == 'x'\n")
    run = run_tests(tmp_path, None, timeout_s=60)
    assert (run.passed, len(run.failures), run.collect_errors) == (2, 1, [])  # and what the tests see stays theirs
    assert run.failures[0].test_id == "test_calc.py::test_add"
