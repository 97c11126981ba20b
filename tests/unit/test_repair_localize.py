"""Spectrum-based localisation (Ochiai/DStar) combined with the traceback."""

from __future__ import annotations

from heedls.analyzers.repair.localize import localise
from heedls.analyzers.repair.workers import TestOutcome


def _t(nodeid: str, outcome: str, lines: list[int], frames: list[int] | None = None) -> TestOutcome:
    failure = None
    if frames is not None:
        failure = {"type": "AssertionError", "message": "", "frames": [{"path": "m.py", "line": ln} for ln in frames]}
    return TestOutcome(nodeid, outcome, lines={"m.py": lines}, failure=failure)


def test_lines_run_only_by_failing_tests_rank_first() -> None:
    tests = [
        _t("a", "passed", [1, 2, 3, 5]),
        _t("b", "passed", [1, 2, 3, 5]),
        _t("c", "failed", [1, 2, 4, 5]),
        _t("d", "failed", [1, 2, 4, 5]),
    ]
    ranked = localise(tests, "m.py")
    assert ranked[0].line == 4
    assert ranked[0].ochiai == 1.0
    by_line = {s.line: s for s in ranked}
    assert by_line[3].score < by_line[1].score < by_line[4].score
    assert by_line[3].ochiai == 0.0


def test_traceback_frames_break_ties_when_every_line_has_the_same_spectrum() -> None:
    tests = [_t("only", "failed", [1, 2, 3, 4], frames=[2, 3])]
    ranked = localise(tests, "m.py")
    assert ranked[0].line == 3  # deepest frame
    assert ranked[1].line == 2
    assert {s.line for s in ranked[2:]} == {1, 4}


def test_uncovered_lines_get_a_small_nonzero_score() -> None:
    tests = [_t("a", "failed", [1, 2])]
    ranked = localise(tests, "m.py", all_lines={1, 2, 3})
    by_line = {s.line: s.score for s in ranked}
    assert 0 < by_line[3] < by_line[1]


def test_other_files_are_ignored() -> None:
    t = TestOutcome("a", "failed", lines={"other.py": [7]})
    assert all(s.line != 7 for s in localise([t], "m.py"))
