"""The benches with input they cannot use: a note or a one-line error, never a traceback, and never
after minutes of work that the error then throws away."""

from __future__ import annotations

from pathlib import Path

import pytest
from heedls.server.bench.analyzers import bench_tests
from heedls.server.cli import app
from typer.testing import CliRunner


def test_a_bug_whose_bug_json_is_broken_is_skipped_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, text in (("x", "{bad"), ("y", "[1, 2]")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bug.json").write_text(text)
    result = bench_tests(tmp_path, bugs=2, repeats=1)  # a JSONDecodeError / AttributeError traceback before
    assert result["bugs"] == [] and result["meets_target"] is False  # nothing timed is no pass
    err = capsys.readouterr().err
    assert "x/bug.json skipped" in err and "y/bug.json skipped" in err


def test_an_html_page_that_cannot_be_written_is_refused_before_the_bench_runs(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(app, ["bench", "fix", str(tmp_path), "--json", "--html", str(tmp_path / "a-file" / "x.html")])
    assert result.exit_code == 2 and "cannot write" in result.stderr  # the whole bench ran, then a traceback
    assert result.stdout == ""
