"""ruff as a subprocess: the workspace's configuration, buffers vs files, fixes with their
applicability, and trouble (missing, broken, misconfigured ruff) reported instead of raised."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from heedls.analyzers import check, lint

CONFIG = """\
[tool.ruff]
extend-exclude = ["generated"]

[tool.ruff.lint]
select = ["F", "E711"]
ignore = ["F841"]
"""

SOURCE = """\
import os
import sys

print(sys.argv)


def f(x):
    unused = 1
    if x == None:
        return 1
    return undefined_name
"""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(CONFIG)
    return tmp_path


def _codes(result: lint.LintResult) -> list[str]:
    return sorted(d.code or "" for d in result.diagnostics)


def test_workspace_configuration_is_respected(ws: Path) -> None:
    result = lint.lint_text(SOURCE, ws / "mod.py", workspace=ws)
    assert result.problem is None
    # F401 (os), E711 (== None, selected only by the config), F821; F841 ignored by the config.
    assert _codes(result) == ["E711", "F401", "F821"]
    by_code = {d.code: d for d in result.diagnostics}
    assert by_code["F821"].severity == "error"  # a NameError waiting to happen
    assert by_code["F401"].severity == "warning"
    assert by_code["F401"].url is not None and by_code["F401"].url.endswith("/unused-import")
    assert by_code["F401"].data["tags"] == ["unnecessary"]
    assert by_code["F401"].path == str((ws / "mod.py").resolve())
    assert (by_code["F401"].range.start.line, by_code["F401"].range.start.character) == (0, 7)


def test_the_buffer_is_linted_not_the_file_on_disk(ws: Path) -> None:
    (ws / "mod.py").write_text("print('clean')\n")
    result = lint.lint_text("import json\n", ws / "mod.py", workspace=ws)
    assert _codes(result) == ["F401"]


def test_fixes_carry_edits_and_applicability(ws: Path) -> None:
    result = lint.lint_text(SOURCE, ws / "mod.py", workspace=ws)
    by_code = {d.code: d for d in result.diagnostics}
    (safe,) = by_code["F401"].fixes
    assert safe.applicability == "safe" and safe.source == "ruff"
    fixed = check.apply_edits(SOURCE, safe, by_code["F401"].path)
    assert fixed.startswith("import sys\n") and "import os" not in fixed
    (unsafe,) = by_code["E711"].fixes
    assert unsafe.applicability == "unsafe"
    assert "x is None" in check.apply_edits(SOURCE, unsafe, by_code["E711"].path)
    assert by_code["F821"].fixes == []


def test_excluded_paths_are_not_linted(ws: Path) -> None:
    (ws / "generated").mkdir()
    result = lint.lint_text("import os\n", ws / "generated" / "out.py", workspace=ws)
    assert result.diagnostics == [] and result.problem is None


def test_columns_are_characters(ws: Path) -> None:
    result = lint.lint_text("s = '😀é'; import os\nprint(s)\n", ws / "u.py", workspace=ws)
    (d,) = result.diagnostics
    assert "s = '😀é'; import os"[d.range.start.character :].startswith("os")


def test_a_buffer_with_a_byte_order_mark_gets_columns_that_count_it(ws: Path) -> None:
    text = "\ufeffy = f'abc'\n"  # F541, fixable: the fix's edit is placed the same way
    (d,) = lint.lint_text(text, ws / "b.py", workspace=ws).diagnostics
    assert d.code == "F541" and text[d.range.start.character:d.range.end.character] == "f'abc'"
    (edit,) = d.fixes[0].edits
    assert text[edit.range.start.character:edit.range.end.character] == "f'abc'"


def test_syntax_errors_are_left_to_the_syntax_analyzer(ws: Path) -> None:
    result = lint.lint_text("x = (\n", ws / "broken.py", workspace=ws)
    assert result.problem is None
    assert result.diagnostics == []


def test_paths_mode_walks_directories(ws: Path) -> None:
    (ws / "pkg").mkdir()
    (ws / "pkg" / "a.py").write_text("import os\n")
    (ws / "pkg" / "b.py").write_text("import sys\nprint(sys)\n")
    (ws / "pkg" / "c.py").write_text("print(name)\n")
    result = lint.lint_paths([ws / "pkg"], workspace=ws)
    assert sorted((Path(d.path).name, d.code) for d in result.diagnostics) == [("a.py", "F401"), ("c.py", "F821")]


def test_a_report_over_a_mebibyte_keeps_every_finding(ws: Path) -> None:
    """~700 bytes of JSON a finding: 4,000 findings are ~3 MB of report (a 1 MiB cap on ruff's
    output lost all of them, and `heedls check` said the code was clean)."""
    for i in range(40):
        (ws / f"m{i}.py").write_text("".join(f"import mod{j}\n" for j in range(100)))
    result = lint.lint_paths([ws], workspace=ws)
    assert result.problem is None and len(result.diagnostics) == 4000


def test_broken_configuration_is_one_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.ruff]\nline-length = "wide"\n')
    result = lint.lint_text("import os\n", tmp_path / "m.py", workspace=tmp_path)
    assert result.diagnostics == []
    assert result.problem is not None and "ruff failed" in result.problem


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_broken_ruff_binary_is_reported(tmp_path: Path) -> None:
    garbage = _script(tmp_path / "ruff-garbage", "echo 'this is not json'\n")
    result = lint.lint_text("import os\n", tmp_path / "m.py", workspace=tmp_path, ruff=garbage)
    assert result.problem is not None and "not JSON" in result.problem
    crashing = _script(tmp_path / "ruff-crash", "echo 'panic: something' >&2\nexit 101\n")
    result = lint.lint_text("import os\n", tmp_path / "m.py", workspace=tmp_path, ruff=crashing)
    assert result.problem is not None and "exit 101" in result.problem and "panic" in result.problem


def test_missing_ruff_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lint, "find_ruff", lambda workspace=None, configured="": None)
    result = lint.lint_paths([tmp_path], workspace=tmp_path)
    assert result.diagnostics == []
    assert result.problem is not None and "not found" in result.problem


def test_ruff_is_found_in_the_workspace_venv_first(tmp_path: Path) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    fake = _script(tmp_path / ".venv" / "bin" / "ruff", "echo '[]'\n")
    assert lint.find_ruff(tmp_path) == fake
    assert lint.find_ruff(tmp_path, configured=fake) == fake
    assert lint.find_ruff(Path("/nonexistent")) is not None  # PATH or the bundled one


def test_an_untrusted_workspaces_own_ruff_is_never_run(tmp_path: Path) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    marker = tmp_path / "ran"
    _script(tmp_path / ".venv" / "bin" / "ruff", f"touch {marker}\necho '[]'\n")
    lint.lint_text("import os\n", tmp_path / "m.py", workspace=tmp_path, trusted=False)
    assert not marker.exists()
    lint.lint_text("import os\n", tmp_path / "m.py", workspace=tmp_path)  # trusted: its .venv's ruff first
    assert marker.exists()


def test_a_configured_ruff_path_expands_home_and_variables_and_is_relative_to_the_project(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tools").mkdir()
    tool = _script(tmp_path / "tools" / "ruff", "echo '[]'\n")
    monkeypatch.setenv("TOOLS", str(tmp_path / "tools"))
    monkeypatch.chdir("/")  # the server's working directory is not the project
    assert lint.find_ruff(tmp_path, "tools/ruff") == tool
    assert lint.find_ruff(tmp_path, "$TOOLS/ruff") == tool


@pytest.mark.parametrize(("text", "expected"), [
    # after the docstring and __future__ imports
    ('"""Doc."""\nfrom __future__ import annotations\n\n\ndef f(a):\n    return math.sqrt(a)\n',
     '"""Doc."""\nfrom __future__ import annotations\nimport math\n\n\ndef f(a):\n    return math.sqrt(a)\n'),
    # beside the other imports
    ("import os\n\nx = math.pi + len(os.sep)\n", "import math\nimport os\n\nx = math.pi + len(os.sep)\n"),
    # before a first def, two blank lines apart; the comment above it stays above the import
    ("# tools\ndef f(a):\n    return math.sqrt(a)\n", "# tools\nimport math\n\n\ndef f(a):\n    return math.sqrt(a)\n"),
    # a byte-order mark stays first; a CRLF file gets CRLF lines
    ("\ufeffx = math.pi\r\n", "\ufeffimport math\r\n\r\nx = math.pi\r\n"),
    # a docstring that ends the file without a line break
    ('"""Doc."""\nx = math.pi', '"""Doc."""\nimport math\nx = math.pi'),
])
def test_an_undefined_standard_module_gets_an_add_import_fix(ws: Path, text: str, expected: str) -> None:
    (d,) = [d for d in lint.lint_text(text, ws / "geo.py", workspace=ws).diagnostics if d.code == "F821"]
    (fix,) = d.fixes
    assert fix.title == "Add `import math`" and fix.applicability == "unsafe"  # offered, never applied unasked
    assert check.apply_edits(text, fix, d.path) == expected


def test_a_name_one_standard_module_exports_gets_its_from_import_and_others_get_none(ws: Path) -> None:
    text = "def tally(xs):\n    return Counter(xs), numpy.zeros(3), frobnicate(xs), math\n"
    fixes = {d.message: [f.title for f in d.fixes]
             for d in lint.lint_text(text, ws / "t.py", workspace=ws).diagnostics if d.code == "F821"}
    assert fixes == {
        "Undefined name `Counter`": ["Add `from collections import Counter`"],
        "Undefined name `numpy`": [],  # not the standard library's: it may come from anywhere
        "Undefined name `frobnicate`": [],
        "Undefined name `math`": [],  # read bare, not used as a module
    }


@pytest.mark.parametrize(("text", "expected"), [
    # the everyday names of typing, time, contextlib … are known, not only collections'
    ("def f(x: Optional[int]):\n    sleep(x)\n",
     "from time import sleep\nfrom typing import Optional\n\n\ndef f(x: Optional[int]):\n    sleep(x)\n"),
    # a module already imported from at the top level gets the name in that statement, as isort would
    ("from typing import Any\n\nx: Optional[Any] = None\n", "from typing import Any, Optional\n\nx: Optional[Any] = None\n"),
    ("from typing import (\n    Any,\n)\n\nx: Optional[Any] = None\n",
     "from typing import (\n    Any, Optional,\n)\n\nx: Optional[Any] = None\n"),
    # after a comment, a byte-order mark and a non-ASCII module name on the line (columns are bytes to ast)
    ("\ufefffrom typing import Any  # é\r\nx: Optional[Any] = None\r\n",
     "\ufefffrom typing import Any, Optional  # é\r\nx: Optional[Any] = None\r\n"),
    # a module whose member has its name: the attribute read tells which one is meant
    ("t = datetime.now()\n", "from datetime import datetime\n\nt = datetime.now()\n"),
    ("d = datetime.date.today()\n", "import datetime\n\nd = datetime.date.today()\n"),
    ("t = time.time()\n", "import time\n\nt = time.time()\n"),
    # a star import, or one inside a block, is left alone: a new statement goes at the top
    ("if True:\n    from typing import Any\nx: Optional[int] = None\n",
     "from typing import Optional\n\nif True:\n    from typing import Any\nx: Optional[int] = None\n"),
])
def test_a_standard_name_gets_its_from_import_merged_into_the_modules_own(ws: Path, text: str, expected: str) -> None:
    for _ in range(2):  # one fix at a time, each offered on the text as it then is (as in an editor)
        found = [d for d in lint.lint_text(text, ws / "m.py", workspace=ws).diagnostics if d.code == "F821"]
        if found:
            (fix,) = found[0].fixes
            assert fix.applicability == "unsafe"
            text = check.apply_edits(text, fix, found[0].path)
    assert text == expected


def test_files_on_disk_get_the_fix_too(ws: Path) -> None:
    (ws / "geo.py").write_text("def f(a):\n    return math.sqrt(a)\n")
    (d,) = [d for d in lint.lint_paths([ws], workspace=ws).diagnostics if d.code == "F821"]
    assert [f.title for f in d.fixes] == ["Add `import math`"]


def test_a_file_ruff_cannot_read_as_utf8_is_a_note_not_an_error() -> None:
    """`# -*- coding: latin-1 -*-` files are valid Python; ruff reads only UTF-8 (E902): heedls said
    "error" about code that has none. A file that is really broken gets its syntax error elsewhere."""
    from heedls.analyzers.lint import to_diagnostics

    finding = {"code": "E902", "message": "stream did not contain valid UTF-8", "filename": "/w/lat.py",
               "location": {"row": 1, "column": 1}, "end_location": {"row": 1, "column": 1}}
    [diagnostic] = to_diagnostics([finding])
    assert diagnostic.severity == "information"
    assert diagnostic.message == "not linted: ruff reads only UTF-8 files (stream did not contain valid UTF-8)"
    other = {**finding, "message": "Permission denied (os error 13)"}
    assert to_diagnostics([other])[0].severity == "error"  # other I/O errors stay errors


def test_when_ruff_fails_the_problem_says_why(tmp_path: Path) -> None:
    """ruff's stderr opens with "ruff failed"; the reason is on its "Cause:" lines, which the
    problem left out (`ruff failed (exit 2): ruff failed`)."""
    from heedls.analyzers.lint import find_ruff, lint_paths

    (tmp_path / "pyproject.toml").write_text("[tool.heedls\nlog_level = \n")
    (tmp_path / "a.py").write_text("x = 1\n")
    ruff = find_ruff(tmp_path)
    assert ruff is not None
    result = lint_paths([str(tmp_path / "a.py")], workspace=tmp_path, ruff=ruff)
    assert result.problem is not None and f"Failed to parse {tmp_path / 'pyproject.toml'}" in result.problem


def test_a_broken_symbolic_link_is_named_as_such_at_the_link_not_at_its_missing_target(tmp_path: Path) -> None:
    """ruff reports a dangling `x.py` link as E902 "No such file or directory"; resolved, its path
    was the missing target (`../../nonexistent:1:1: error`), a file the project does not have."""
    ws = tmp_path  # ruff's default rules (E902 is not among those `ws` selects)
    (ws / "ok.py").write_text("x = 1\n")
    (ws / "gone.py").symlink_to(ws / "nowhere" / "gone.py")
    (d,) = [d for d in lint.lint_paths([ws], workspace=ws).diagnostics if d.code == "E902"]
    assert Path(d.path) == ws / "gone.py"
    assert d.severity == "warning"
    assert d.message == f"not linted: a broken symbolic link (its target {ws / 'nowhere' / 'gone.py'} does not exist)"
