"""A fix's patch: the unified diff `diff -u`/git would print, computed around the change only."""

from __future__ import annotations

import difflib
import random
import subprocess
from pathlib import Path

import pytest
from heedls.analyzers.patches import unified_diff


def whole_file_diff(old: str, new: str, path: str) -> str:
    """difflib over the whole files: what the patch must equal where the change's place is
    unambiguous (and the file under the 200 lines from which difflib's popularity heuristic acts)."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=f"a/{path}", tofile=f"b/{path}"))


def apply_patch(old: str, patch: str) -> str:
    """Apply a unified diff by its hunk headers' line numbers: a patch with wrong numbers fails."""
    lines = old.splitlines(keepends=True)
    body = patch.splitlines(keepends=True)[2:]
    # "\\ No newline at end of file" says the line before it has none
    marked = [(b[0], b[1:][:-1] if i + 1 < len(body) and body[i + 1].startswith("\\") else b[1:])
              for i, b in enumerate(body) if not b.startswith("\\")]
    out: list[str] = []
    at = 0
    for kind, text in marked:
        if kind == "@":
            old_range = text.split()[1]  # "-start[,count]"
            start, _, count = old_range[1:].partition(",")
            first = int(start) - 1 if count != "0" else int(start)
            out += lines[at:first]
            at = first
            continue
        if kind in " -":
            assert lines[at] == text, (at, lines[at], text)
            at += 1
        if kind in " +":
            out.append(text)
    return "".join(out + lines[at:])


def big_file(lines: int) -> str:
    return "".join(f"def f{i}(x):\n    return x + {i}\n\n" if i % 7 else "\n" for i in range(lines))


def test_a_one_line_fix_deep_in_a_large_file_has_whole_file_line_numbers() -> None:
    old = big_file(3000)
    lines = old.splitlines(keepends=True)
    lines[4000] = "    return x - 1\n"
    new = "".join(lines)
    patch = unified_diff(old, new, "m.py")
    assert patch.splitlines()[:3] == ["--- a/m.py", "+++ b/m.py", "@@ -3998,7 +3998,7 @@"]
    assert apply_patch(old, patch) == new


@pytest.mark.parametrize("where", ["start", "middle", "end"])
@pytest.mark.parametrize("change", ["replace", "insert", "delete"])
def test_the_patch_is_the_whole_file_diff_and_applies(where: str, change: str) -> None:
    old = "".join(f"line {i}\n" for i in range(120))  # short of difflib's 200-line heuristic
    at = {"start": 0, "middle": 60, "end": 119}[where]
    lines = old.splitlines(keepends=True)
    if change == "replace":
        lines[at] = "changed\n"
    elif change == "insert":
        lines[at:at] = ["new a\n", "new b\n"]
    else:
        del lines[at]
    new = "".join(lines)
    patch = unified_diff(old, new, "m.py")
    assert patch == whole_file_diff(old, new, "m.py")
    assert apply_patch(old, patch) == new


def test_edits_far_apart_give_two_hunks_and_near_ones_one() -> None:
    old = "".join(f"line {i}\n" for i in range(100))
    far = old.replace("line 10\n", "ten\n").replace("line 80\n", "eighty\n")
    near = old.replace("line 10\n", "ten\n").replace("line 15\n", "fifteen\n")
    assert unified_diff(old, far, "m.py").count("\n@@ ") == 2
    assert unified_diff(old, near, "m.py").count("\n@@ ") == 1
    assert unified_diff(old, far, "m.py") == whole_file_diff(old, far, "m.py")


def test_equal_texts_give_no_patch() -> None:
    assert unified_diff("a\nb\n", "a\nb\n", "m.py") == ""


@pytest.mark.parametrize(("old", "new"), [("a\nb\nc", "a\nb\nd"), ("a\nb\n", "a\nb"), ("a\nb", "a\nb\nc\n")])
def test_a_missing_final_newline_is_marked_as_git_marks_it(tmp_path: Path, old: str, new: str) -> None:
    patch = unified_diff(old, new, "m.py")
    assert "\\ No newline at end of file\n" in patch
    assert apply_patch(old, patch) == new
    (tmp_path / "m.py").write_text(old)
    (tmp_path / "fix.patch").write_text(patch)
    subprocess.run(["git", "apply", "fix.patch"], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "m.py").read_text() == new


def test_git_applies_a_patch_deep_in_a_large_file(tmp_path: Path) -> None:
    old = big_file(3000)
    new = old.replace("    return x + 2500\n", "    return x + 2501\n")
    (tmp_path / "m.py").write_text(old)
    (tmp_path / "fix.patch").write_text(unified_diff(old, new, "m.py"))
    subprocess.run(["git", "apply", "fix.patch"], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "m.py").read_text() == new


def git_applies(tmp_path: Path, old: str, new: str, patch: str) -> bool:
    (tmp_path / "m.py").write_text(old, newline="")
    (tmp_path / "fix.patch").write_text(patch, newline="")
    done = subprocess.run(["git", "apply", "fix.patch"], cwd=tmp_path, capture_output=True)
    return done.returncode == 0 and (tmp_path / "m.py").read_bytes().decode() == new


def test_a_blank_line_taken_from_a_run_of_them_keeps_its_trailing_context(tmp_path: Path) -> None:
    """ruff's import sorting on a real file: the run of blank lines after the imports loses one.
    Placed at the run's last line with no context after it, the hunk would read as anchored at the
    file's end, and git would refuse it."""
    rest = "".join(f"def f{i}():\n    pass\n\n\n" for i in range(60))
    old = '"Test rpc."\n\nfrom idlelib import rpc\nimport unittest\n\n\n\nclass X:\n    pass\n' + rest
    new = '"Test rpc."\n\nimport unittest\nfrom idlelib import rpc\n\n\nclass X:\n    pass\n' + rest
    patch = unified_diff(old, new, "m.py")
    hunk = patch.splitlines()[3:]
    assert [line[:1] for line in hunk[-3:]] == [" ", " ", " "]  # three lines of context after the change
    assert git_applies(tmp_path, old, new, patch)


def test_random_edits_always_apply(tmp_path: Path) -> None:
    """Where lines repeat, which copy a change is placed at is a choice (difflib over the whole
    file may choose another equally valid one); the patch always gives the new text, by our
    reading of its numbers and by git's."""
    rng = random.Random(7)
    for case in range(200):
        lines = [f"{rng.choice(['x', 'y', 'pass', ''])}\n" for _ in range(rng.randint(0, 60))]
        new = list(lines)
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(new))
            if new and rng.random() < 0.5:
                del new[min(at, len(new) - 1)]
            else:
                new.insert(at, f"{rng.choice(['x', 'z', 'return'])}\n")
        old_text, new_text = "".join(lines), "".join(new)
        patch = unified_diff(old_text, new_text, "m.py")
        assert apply_patch(old_text, patch) == new_text
        if patch and case % 4 == 0:  # git's reading too, on a quarter of them (a process each)
            assert git_applies(tmp_path, old_text, new_text, patch), patch
