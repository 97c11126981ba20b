"""The bench's scoring rules: special-casing test inputs is not a fix; bug sets are read in place."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from heedls.server.bench.fix import load_bugs, run_bug, special_cases_tests

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


def test_a_bug_json_that_cannot_be_used_is_a_bug_that_says_why(tmp_path: Path) -> None:
    """An unseen set may have a broken bug.json. It still counts in the total, as an error that
    names the problem, and nothing is run for it; before, invalid JSON dropped the bug silently,
    and a missing module or a timeout like "soon" ran the whole search to end in a bare KeyError
    or ValueError."""
    metas = {
        "bad_json": "{not json",
        "no_module": json.dumps({"id": "no_module", "test": "test_m.py"}),
        "odd_timeout": json.dumps({"id": "odd_timeout", "module": "m.py", "test": "test_m.py", "timeout_s": "soon"}),
        "text_timeout": json.dumps({"id": "text_timeout", "module": "m.py", "test": "test_m.py", "timeout_s": "7"}),
        "no_timeout": json.dumps({"id": "no_timeout", "module": "m.py", "test": "test_m.py", "extra": [1]}),
    }
    for name, text in metas.items():
        (tmp_path / "set" / name).mkdir(parents=True)
        (tmp_path / "set" / name / "bug.json").write_text(text)
        (tmp_path / "set" / name / "m.py").write_text("def f():\n    return 1\n")
        (tmp_path / "set" / name / "test_m.py").write_text("from m import f\n\n\ndef test_f():\n    assert f() == 2\n")
    bugs = {b["id"]: b for b in load_bugs(tmp_path / "set")}
    assert sorted(bugs) == sorted(metas)
    assert "bug.json is not valid JSON" in bugs["bad_json"]["error"]
    assert "'module'" in bugs["no_module"]["error"]
    assert "timeout_s" in bugs["odd_timeout"]["error"] and "'soon'" in bugs["odd_timeout"]["error"]
    assert "error" not in bugs["text_timeout"] and bugs["text_timeout"]["timeout_s"] == 7.0
    assert "error" not in bugs["no_timeout"] and bugs["no_timeout"]["timeout_s"] == 30.0
    start = time.monotonic()
    row = run_bug(bugs["odd_timeout"], budget_s=20, workers=1, python=sys.executable)
    assert time.monotonic() - start < 1.0  # nothing ran
    assert row["fixed"] is False and row["status"] == "error" and "'soon'" in row["error"]
