"""The bench's scoring rules: special-casing test inputs is not a fix; bug sets are read in place."""

from __future__ import annotations

import json
from pathlib import Path

from heedls.server.bench.fix import load_bugs, special_cases_tests

TEST = "testdata = [([3005], 9), ([127], 7), (['hello world'], 2)]\n"


def test_a_patch_that_branches_on_a_test_input_is_a_special_case() -> None:
    assert special_cases_tests("+    if n == 3005:\n+        return 9\n", TEST, "def f(n):\n    return 0\n")
    assert special_cases_tests("+    if s == 'hello world': return 2\n", TEST, "def f(s):\n    return 0\n")


def test_ordinary_edits_are_not_special_cases() -> None:
    assert not special_cases_tests("-    if n < 0:\n+    if n <= 0:\n", TEST, "def f(n):\n    if n < 0:\n")
    assert not special_cases_tests("+    elif i % 4 == 0:\n", TEST + "x = 4\n", "def f(i):\n    pass\n")
    # a literal the module already had is not taken from the tests
    assert not special_cases_tests("+    if n == 3005:\n", TEST, "LIMIT = 3005\n")


def test_load_bugs_reads_the_layout_and_skips_references(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "set" / name).mkdir(parents=True)
        (tmp_path / "set" / name / "bug.json").write_text(json.dumps(
            {"id": name, "source": "x", "module": "m.py", "test": "test_m.py", "timeout_s": 30}))
    (tmp_path / "set" / "README.md").write_text("no bug here")
    bugs = load_bugs(tmp_path / "set")
    assert [b["id"] for b in bugs] == ["a", "b"]
    assert all(Path(b["dir"]).parent == tmp_path / "set" for b in bugs)
