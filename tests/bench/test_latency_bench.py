"""`heedls bench latency` produces the DESIGN.md shape (figures are reported, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.bench
def test_latency_bench_reports_p95_ratio_against_bare_pygls() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "heedls", "bench", "latency", "-n", "60", "--warmup", "10", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    result = json.loads(out.stdout)  # exactly one JSON object on stdout
    assert result["requests"] == 60
    assert result["p95_ratio"] == pytest.approx(result["heedls"]["p95_ms"] / result["bare_pygls"]["p95_ms"], rel=0.01)
    assert result["heedls"]["p50_ms"] > 0 and result["bare_pygls"]["p50_ms"] > 0
    print(json.dumps(result))


def test_an_unknown_gate_mode_is_a_usage_error_before_anything_is_measured() -> None:
    out = subprocess.run([sys.executable, "-m", "heedls", "bench", "latency", "--gate", "bogus", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert "bogus" in out.stderr and "cascade" in out.stderr  # what it may be
