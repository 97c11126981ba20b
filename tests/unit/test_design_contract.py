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
from heedls.server import config
from heedls.server.cli import app
from heedls.server.telemetry import cli as telemetry_cli
from heedls.server.telemetry.paths import default_store_path
from typer.testing import CliRunner

from tests.unit import test_telemetry_cli
from tests.unit.test_telemetry_cli import populate

workspace = test_telemetry_cli.workspace  # the same fixture: a workspace as the cwd, its own data directory


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


def _src_layout(root: Path, pyproject: str) -> None:
    """A project whose pyproject.toml sits above the module being fixed (src/ layout)."""
    (root / "src").mkdir()
    (root / "tests").mkdir()
    (root / "src" / "m.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "tests" / "test_m.py").write_text(
        "import os, sys\nsys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'src'))\n"
        "from m import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    (root / "pyproject.toml").write_text(pyproject)


def test_fix_warns_about_bad_settings_of_the_modules_project(tmp_path: Path) -> None:
    # "bad values fall back to defaults with a logged warning": fix read the settings and said nothing
    _src_layout(tmp_path, "[tool.heedls]\nbogus = 1\n")
    proc = heedls("fix", "src/m.py", "--test", "tests/test_m.py", "--json", cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout)["status"] == "no-failing-tests", proc.stderr
    assert proc.stderr.count("bogus") == 1, proc.stderr


def test_fix_provider_config_reads_the_projects_settings(tmp_path: Path) -> None:
    # `--provider config` uses [tool.heedls] of the module's project (where heedls check and the
    # server read it), not of the module's folder: here that configuration cannot work, and says so.
    _src_layout(tmp_path, '[tool.heedls.provider]\nname = "openai"\n')
    proc = heedls("fix", "src/m.py", "--test", "tests/test_m.py", "--json", "--provider", "config", cwd=tmp_path)
    assert proc.returncode == 2 and "provider.endpoint is not set" in proc.stderr, (proc.returncode, proc.stderr)
    assert proc.stdout == ""


def _help(*command: str) -> str:
    """`heedls COMMAND --help` as one line of words (rich wraps and boxes the table)."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.replace("│", " ").split())


@pytest.mark.parametrize(
    ("command", "says"),
    [
        # the default privacy level decides whether code leaves the machine: it must be visible
        (("telemetry", "export"), f"default: the telemetry.privacy setting, {config.TelemetryConfig().privacy}"),
        (("telemetry", "push"), f"default: the telemetry.privacy setting, {config.TelemetryConfig().privacy}"),
        # a configured [tool.heedls.telemetry] path is the default store too, not the data directory
        (("telemetry", "export"), "default: this workspace's store, as heedls telemetry path prints it"),
        (("check",), f"default: the tests.timeout_s setting, {config.TestsConfig().timeout_s:g}"),
        # the project's interpreter setting comes first, as for heedls check and the server
        (("fix",), "default: the tests.python setting, else the project's .venv, venv or env, else this one"),
        (("fix",), "default: none, model-free"),
    ],
)
def test_help_states_the_defaults_that_come_from_the_configuration(command: tuple[str, ...], says: str) -> None:
    assert says in _help(*command)


@pytest.mark.parametrize(
    ("options", "budget", "jobs"),
    [([], 7.0, 3),  # not given: the project's [tool.heedls.repair], as the editor's "Search for a fix"
     (["--budget-seconds", "4", "--jobs", "1"], 4.0, 1)],  # given: the options win
)
def test_fix_takes_its_budget_and_jobs_from_the_projects_repair_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], budget: float, jobs: int) -> None:
    from heedls.analyzers.repair import engine

    _src_layout(tmp_path, "[tool.heedls.repair]\nbudget_s = 7\njobs = 3\n")
    asked: list[engine.RepairRequest] = []
    real = engine.repair

    def recording(req: engine.RepairRequest, **kwargs: object) -> engine.RepairResult:
        asked.append(req)
        return real(req, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "repair", recording)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["fix", "src/m.py", "--test", "tests/test_m.py", "--json", *options])
    assert result.exit_code == 0, result.output
    assert [(r.budget_s, r.jobs) for r in asked] == [(budget, jobs)]
