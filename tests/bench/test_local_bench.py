"""`heedls bench local`: the JSON shape and sane figures on a small held-out run (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest


@pytest.mark.bench
def test_local_bench_reports_quality_and_latency_on_held_out_stdlib_code() -> None:
    root = Path(sysconfig.get_paths()["stdlib"]) / "json"  # real code nobody here wrote
    out = subprocess.run(
        [sys.executable, "-m", "heedls", "bench", "local", "--json", "--root", str(root), "--cuts", "40",
         "--per-file", "20", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout)  # exactly one JSON object on stdout
    assert result["benchmark"] == "local"
    assert result["cut_points"] == 40 and result["files"] == 2 and result["projects"] == 1
    for key in ("shown_rate", "exact_match_of_shown", "exact_match_of_all", "correct_prefix_of_shown"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["exact_match_of_all"] <= result["shown_rate"]
    assert result["exact_match_of_shown"] <= result["correct_prefix_of_shown"]
    assert result["chars_saved_per_cut"] <= result["chars_saved_per_shown"]
    assert result["by_kind"]["start"]["cut_points"] + result["by_kind"]["mid"]["cut_points"] == 40
    assert result["shown"] > 0, "the provider suggested nothing on real code"
    lat = result["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"]
    assert 0.0 <= result["ece"] <= 1.0
    assert result["index"]["mean_files"] >= 1
    assert isinstance(result["targets_met"], bool)
    print(json.dumps(result))
