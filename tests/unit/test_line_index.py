"""The local provider's line index (providers/retrieval.py): what it answers, and what it keeps.

It answers exactly as counting over the files' stripped lines would; it keeps its line
occurrences in flat arrays, so that a workspace's index is a handful of allocations rather than
one Python object per line (the index is rebuilt next to the one in use every two minutes while
the user types: a per-line tuple build left tens of MB in the allocator's arenas each time).
"""

from __future__ import annotations

import random
import tracemalloc
from collections import Counter

from heedls.server.providers.retrieval import LineIndex, lookup


def _files(seed: int, count: int = 40, lines: int = 60, distinct: int = 30) -> list[tuple[int, list[str]]]:
    rng = random.Random(seed)
    vocabulary = [f"x{i} = f({i})" for i in range(distinct)] + ["", "   ", "return x", "    return x", "pass"]
    return [(fid, [rng.choice(vocabulary) for _ in range(rng.randrange(0, lines))]) for fid in range(count)]


def _stripped(raw: list[str]) -> list[str]:
    return [line.strip() for line in raw if line.strip()]


def _following(files: list[tuple[int, list[str]]], prev: tuple[str, ...], exclude: int | None) -> Counter[str]:
    """What came after `prev` (one or two lines) in the files other than `exclude`, counted by hand."""
    out: Counter[str] = Counter()
    for fid, raw in files:
        lines = _stripped(raw)
        for i in range(len(prev), len(lines)):
            if fid != exclude and tuple(lines[i - len(prev):i]) == prev:
                out[lines[i]] += 1
    return out


def _starting(files: list[tuple[int, list[str]]], prefix: str, exclude: int | None) -> Counter[str]:
    return Counter(line for fid, raw in files if fid != exclude for line in _stripped(raw) if line.startswith(prefix))


def test_the_lines_that_followed_one_or_two_previous_lines_are_counted_as_in_the_files() -> None:
    files = _files(seed=1)
    index = LineIndex(files)
    known = sorted({line for _, raw in files for line in _stripped(raw)})
    for exclude in (None, 0, 7):
        for first in known:
            assert index.next_counts((first,), exclude) == _following(files, (first,), exclude)
            for second in known[:8]:
                assert index.next_counts((first, second), exclude) == _following(files, (first, second), exclude)


def test_lines_are_never_followed_across_the_end_of_a_file() -> None:
    index = LineIndex([(0, ["a = 1"]), (1, ["b = 2", "c = 3"]), (2, ["d = 4"])])
    assert index.next_counts(("a = 1",), None) == Counter()
    assert index.next_counts(("c = 3",), None) == Counter()
    assert index.next_counts(("a = 1", "b = 2"), None) == Counter()
    assert index.next_counts(("b = 2",), None) == Counter({"c = 3": 1})


def test_the_lines_starting_with_what_was_typed_are_counted_as_in_the_files() -> None:
    files = _files(seed=2)
    index = LineIndex(files)
    for exclude in (None, 3):
        for prefix in ("x1", "x2 = f(2", "return", "pass", "x", "nothing"):
            assert index.prefix_counts(prefix, exclude) == _starting(files, prefix, exclude)


def test_an_unknown_previous_line_and_an_empty_index_have_nothing_to_propose() -> None:
    index = LineIndex(_files(seed=3))
    assert index.next_counts(("never seen",), None) == Counter()
    assert index.next_counts(("never seen", "x1 = f(1)"), None) == Counter()
    empty = LineIndex([])
    assert empty.next_counts(("x",), None) == Counter()
    assert empty.prefix_counts("x", None) == Counter()
    assert LineIndex([(0, []), (1, ["   "])]).next_counts(("x",), None) == Counter()
    assert lookup(empty, [], "impo", ["import os"], exclude=None) == []


def test_an_index_keeps_a_few_objects_per_distinct_line_not_per_line_occurrence() -> None:
    files = _files(seed=4, count=200, lines=500, distinct=200)
    occurrences = sum(len(_stripped(raw)) for _, raw in files)
    assert occurrences > 40_000
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        index = LineIndex(files)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    kept = sum(stat.count_diff for stat in after.compare_to(before, "filename"))
    assert index.next_counts(("x1 = f(1)",), None)  # the index works
    assert kept < occurrences / 10
