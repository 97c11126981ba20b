"""Unified diffs of a file before and after a change (the `patch` of a fix).

difflib compares whole files in quadratic time, so a one-line fix in a 3,000-line file cost
milliseconds, and `heedls check` on a large tree spent most of its time there. A fix touches one
region: only the lines between the first and the last that differ, with their context, are handed
to difflib, and its hunk headers are shifted back to whole-file line numbers.
"""

from __future__ import annotations

import difflib
import re

CONTEXT = 3  # lines of context around each hunk, as `diff -u` and git print them

# A last line without its newline is marked as diff and git mark it (difflib would run the next
# line on after it, and `git apply` would reject the patch).
_NO_NEWLINE = "\n\\ No newline at end of file\n"
_HUNK = re.compile(r"^@@ -(\d+)((?:,\d+)?) \+(\d+)((?:,\d+)?) @@$")


def unified_diff(old: str, new: str, path: str) -> str:
    """`old` → `new` as a unified diff of `a/path` and `b/path` ("" when they are equal)."""
    if old == new:
        return ""
    # The changed characters, found by C-level comparisons: the texts agree before `head` and
    # after their last `tail` characters.
    head = _common_prefix(old, new)
    tail = _common_suffix(old, new, min(len(old), len(new)) - head)
    # Whole lines around them, with the context difflib would show: the lines beyond that cannot
    # change its hunks. Both texts agree up to `start` and from `end` (old) / `end + grow` (new) on.
    start = old.rfind("\n", 0, head) + 1
    for _ in range(CONTEXT):
        if start == 0:
            break
        start = old.rfind("\n", 0, start - 1) + 1
    end = len(old) - tail
    if end > start and old[end - 1] != "\n":
        end = _line_end(old, end)
    for _ in range(CONTEXT):
        end = _line_end(old, end)
    grow = len(new) - len(old)
    lines = difflib.unified_diff(old[start:end].splitlines(keepends=True),
                                 new[start:end + grow].splitlines(keepends=True),
                                 fromfile=f"a/{path}", tofile=f"b/{path}", n=CONTEXT)
    skipped = old.count("\n", 0, start)
    return "".join(_shifted(line, skipped) if line.endswith("\n") else line + _NO_NEWLINE for line in lines)


def _line_end(text: str, at: int) -> int:
    """Where the line starting at `at` ends (after its newline; the text's end for the last)."""
    if at >= len(text):
        return len(text)
    nl = text.find("\n", at)
    return len(text) if nl < 0 else nl + 1


def _common_prefix(a: str, b: str) -> int:
    """How many characters `a` and `b` share at the start (a binary search of slice comparisons)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: str, b: str, limit: int) -> int:
    """How many characters `a` and `b` share at the end, at most `limit`."""
    lo, hi = 0, max(limit, 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:len(a) - lo] == b[len(b) - mid:len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _shifted(line: str, by: int) -> str:
    if not by or not line.startswith("@@"):
        return line
    m = _HUNK.match(line.rstrip("\n"))
    if m is None:  # pragma: no cover - difflib writes every header in this form
        return line
    # difflib numbers a range by its first line, or by the line before it when it is empty: either
    # way the window's number plus the lines skipped above it is the whole file's.
    return f"@@ -{int(m[1]) + by}{m[2]} +{int(m[3]) + by}{m[4]} @@\n"
