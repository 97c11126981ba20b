"""`heedls bench gate` times each acceptance decision (figures are reported, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.bench
def test_gate_bench_times_the_model_and_each_whole_gate_call() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "heedls", "bench", "gate", "-n", "200", "--json"],
        capture_output=True, text=True, timeout=240, check=True,
    )
    result = json.loads(out.stdout)  # exactly one JSON object on stdout
    assert result["decisions"] == 200
    assert result["provider"] == "local"  # the embedded default engine's regime unless --provider says otherwise
    assert set(result["model_ms"]) == {"context", "suggestion"}
    assert set(result["gate_ms"]) == {"stage1", "stage2", "both"}
    for figures in (*result["model_ms"].values(), *result["gate_ms"].values()):
        assert 0 < figures["p50_ms"] <= figures["p95_ms"]
    # the whole call includes the model: it can never be cheaper than scoring alone
    assert result["gate_ms"]["stage1"]["p50_ms"] > result["model_ms"]["context"]["p50_ms"]
    stage_p95 = max(result["gate_ms"][k]["p95_ms"] for k in ("stage1", "stage2"))
    assert result["decision_within_target"] == (stage_p95 <= result["target_p95_ms"])
    # the host's speed, timed beside it, puts each p95 in units that compare across hosts
    assert result["host_reference_us"] > 0
    for stage in ("stage1", "stage2"):
        in_units = result["gate_ms"][stage]["p95_ms"] * 1000 / result["host_reference_us"]
        assert result["gate_p95_in_reference"][stage] == pytest.approx(in_units, rel=0.01)
    print(json.dumps(result))


@pytest.mark.bench
def test_gate_bench_times_the_llm_regime_on_request() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "heedls", "bench", "gate", "-n", "100", "--provider", "openai", "--json"],
        capture_output=True, text=True, timeout=240, check=True,
    )
    result = json.loads(out.stdout)
    assert result["provider"] == "openai" and result["decisions"] == 100
    assert all(figures["p50_ms"] > 0 for figures in result["gate_ms"].values())
