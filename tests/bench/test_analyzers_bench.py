"""`heedls bench analyzers`: the JSON shape and sane figures (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.bench
def test_analyzers_bench_times_reparsing_and_check_against_ruff_on_stdlib_code() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "heedls", "bench", "analyzers", "--json", "--bugs", "0", "--edits", "10",
         "--check-repeats", "1"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    result = json.loads(out.stdout)  # exactly one JSON object on stdout
    syntax = result["syntax"]
    assert syntax["lines"] > 1000 and 0 < syntax["reparse_cpu_ms"]["p50"] <= syntax["reparse_cpu_ms"]["p95"]
    check = result["check"]
    assert check["files"] > 100, "the stdlib packages were not found"
    # the same ruff rules for both sides: the bench's tree has findings and fixes, so patches are timed
    assert check["diagnostics"] > 100 and 0 < check["fixable"] <= check["diagnostics"]
    assert check["ruff_s"] > 0 and check["heedls_s"] > 0
    assert check["ratio"] == pytest.approx(check["heedls_s"] / check["ruff_s"], rel=0.02)
    assert result["tests"] is None  # --bugs 0
