"""DESIGN.md's CLI contract, as scripts and CI of other teams rely on it (shapes, streams, defaults)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from heedls.server.cli import app
from heedls.server.telemetry import cli as telemetry_cli
from heedls.server.telemetry.paths import default_store_path
from typer.testing import CliRunner

from tests.unit.test_telemetry_cli import populate


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    return ws


def test_parquet_export_without_o_goes_to_redirected_stdout(workspace: Path) -> None:
    # `heedls telemetry export --format jsonl|csv|parquet [-o FILE]`: -o is optional for every format,
    # so `… --format parquet > events.parquet` is a valid script line.
    populate(default_store_path(workspace), 5)
    result = CliRunner().invoke(app, ["telemetry", "export", "--format", "parquet"])
    assert result.exit_code == 0, result.stderr
    assert pq.read_table(io.BytesIO(result.stdout_bytes)).column("id").to_pylist() == [f"c{i}" for i in range(5)]
    result = CliRunner().invoke(app, ["telemetry", "export", "--format", "parquet", "-o", "-"])
    assert result.exit_code == 0 and pq.read_table(io.BytesIO(result.stdout_bytes)).num_rows == 5
    assert not (workspace / "-").exists()


def test_parquet_export_refuses_a_terminal(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Binary on a terminal helps nobody (gzip and zstd refuse too): a message, exit 2, nothing written.
    populate(default_store_path(workspace), 2)
    monkeypatch.setattr(telemetry_cli, "_stdout_is_terminal", lambda: True)
    result = CliRunner().invoke(app, ["telemetry", "export", "--format", "parquet"])
    assert result.exit_code == 2 and "-o" in result.stderr and result.stdout_bytes == b""


def heedls(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process, as a script runs it (stdout and stderr apart)."""
    return subprocess.run([sys.executable, "-m", "heedls", *args], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, NO_COLOR="1"))


def test_check_puts_the_syntax_error_before_the_test_collection_it_broke(tmp_path: Path) -> None:
    # "most likely cause first per file": the unclosed bracket is the cause; "tests could not be
    # collected" at the same line is its consequence.
    (tmp_path / "stats.py").write_text("def mean(values):\n    return sum(values / len(values)\n")
    (tmp_path / "test_stats.py").write_text("from stats import mean\n\n\ndef test_mean():\n    assert mean([2]) == 2\n")
    proc = heedls("check", "stats.py", "--tests", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    found = [(d["source"], d["range"]["start"]["line"]) for d in json.loads(proc.stdout)["diagnostics"]
             if d["path"] == "stats.py"]
    assert ("pytest", 1) in found  # the collection error is reported, after its cause
    assert found[0] == ("syntax", 1), found

