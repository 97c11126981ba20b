"""DESIGN.md's CLI contract, as scripts and CI of other teams rely on it (shapes, streams, defaults)."""

from __future__ import annotations

import io
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
