"""What killed runs left in the temp folder is swept by the next process: old entries only."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from heedls.analyzers import tempfiles


@pytest.fixture
def tmpdir_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # gettempdir() answers this folder
    tempfiles.sweep_stale.cache_clear()
    yield tmp_path
    tempfiles.sweep_stale.cache_clear()


def _aged(path: Path, seconds: float) -> Path:
    """`path` (a file written here unless it is a folder) last modified `seconds` ago."""
    if not path.exists():
        path.write_text("{}")
    when = time.time() - seconds
    os.utime(path, (when, when))
    return path


def test_entries_older_than_any_run_go_and_fresh_ones_stay(tmpdir_here: Path) -> None:
    _aged(tmpdir_here / "heedls-pytest-abc.jsonl", 2 * 86400)
    old_copy = tmpdir_here / "heedls-pytest-dir"
    (old_copy / "ws").mkdir(parents=True)
    _aged(old_copy, 2 * 86400)
    fresh = _aged(tmpdir_here / "heedls-pytest-new.jsonl", 60)
    other = _aged(tmpdir_here / "someone-else.jsonl", 2 * 86400)
    assert tempfiles.sweep_stale("heedls-pytest-") == 2
    assert sorted(p.name for p in tmpdir_here.iterdir()) == ["heedls-pytest-new.jsonl", "someone-else.jsonl"]
    _aged(fresh, 2 * 86400)
    assert tempfiles.sweep_stale("heedls-pytest-") == 2  # once per process: the cached answer
    assert fresh.exists() and other.exists()


def test_a_test_run_sweeps_the_reports_a_killed_server_left(tmpdir_here: Path) -> None:
    from heedls.analyzers import testrun

    left = tmpdir_here / f"{testrun.REPORT_PREFIX}killed.jsonl"
    left.write_text('{"event": "session"}\n')
    _aged(left, 3 * 86400)
    report = testrun._report_path()
    try:
        assert not left.exists() and report.parent == tmpdir_here
    finally:
        testrun._remove_report(report)
