"""Unified diffs of a file before and after a change (the `patch` of a fix).

difflib compares whole files in quadratic time, so a one-line fix in a 3,000-line file cost
milliseconds, and `heedls check` on a large tree spent most of its time there. A fix touches one
region: the lines the two texts share at their start and at their end are found by comparing
slices (in C), only the lines between them are handed to difflib's matcher, and the shared lines
around them are the hunks' context, as they would be in a diff of the whole files.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence

CONTEXT = 3  # lines of context around each hunk, as `diff -u` and git print them

# A last line without its newline is marked as diff and git mark it (difflib would run the next
# line on after it, and `git apply` would reject the patch).
_NO_NEWLINE = "\n\\ No newline at end of file\n"

Opcode = tuple[str, int, int, int, int]


def unified_diff(old: str, new: str, path: str) -> str:
    """`old` → `new` as a unified diff of `a/path` and `b/path` ("" when they are equal)."""
    if old == new:
        return ""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    head = _shared_head(a, b)
    tail = _shared_tail(a, b, min(len(a), len(b)) - head)
    # The matcher sees only the lines between: it cannot place a change inside the shared lines
    # (a blank line deleted from a run of them), which would leave a hunk short of its trailing
    # context, and git takes a hunk with less context at its end as one anchored at the file's end.
    middle = difflib.SequenceMatcher(None, a[head:len(a) - tail], b[head:len(b) - tail])
    codes: list[Opcode] = [("equal", 0, head, 0, head)] if head else []
    codes += [(tag, i1 + head, i2 + head, j1 + head, j2 + head) for tag, i1, i2, j1, j2 in middle.get_opcodes()]
    if tail:
        codes.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    return "".join(_lines(a, b, _hunks(codes, CONTEXT), path))


def _hunks(codes: list[Opcode], n: int) -> Iterator[list[Opcode]]:
    """The opcodes grouped into hunks with `n` lines of context, as difflib groups them (its
    `get_grouped_opcodes` needs a matcher over the whole texts, whose indexing is a pass over both)."""
    if codes[0][0] == "equal":
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = tag, max(i1, i2 - n), i2, max(j1, j2 - n), j2
    if codes[-1][0] == "equal":
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * n:  # a long shared run: n lines end this hunk, n begin the next
            group.append((tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)))
            yield group
            group = []
            i1, j1 = max(i1, i2 - n), max(j1, j2 - n)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        yield group


def _lines(a: Sequence[str], b: Sequence[str], groups: Iterator[list[Opcode]], path: str) -> Iterator[str]:
    """difflib.unified_diff's output for these groups of opcodes."""
    for number, group in enumerate(groups):
        if number == 0:
            yield f"--- a/{path}\n+++ b/{path}\n"
        first, last = group[0], group[-1]
        yield f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n"
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                yield from (_marked(" " + line) for line in a[i1:i2])
                continue
            if tag in ("replace", "delete"):
                yield from (_marked("-" + line) for line in a[i1:i2])
            if tag in ("replace", "insert"):
                yield from (_marked("+" + line) for line in b[j1:j2])


def _marked(line: str) -> str:
    return line if line.endswith("\n") else line + _NO_NEWLINE


def _range(start: int, stop: int) -> str:
    """A hunk's line range as difflib writes it: an empty range is named by the line before it."""
    length = stop - start
    if length == 1:
        return f"{start + 1}"
    if length == 0:
        return f"{start},0"
    return f"{start + 1},{length}"


def _shared_head(a: list[str], b: list[str]) -> int:
    """How many lines `a` and `b` share at the start (a binary search of slice comparisons)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _shared_tail(a: list[str], b: list[str], limit: int) -> int:
    """How many lines `a` and `b` share at the end, at most `limit`."""
    lo, hi = 0, max(limit, 0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:len(a) - lo] == b[len(b) - mid:len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo
