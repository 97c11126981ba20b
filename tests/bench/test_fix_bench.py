"""Repair benchmark on a few QuixBugs bugs (read in place), plus the runner's speed trade-off:
fork-server runs (fast path and re-collecting path) against a fresh `python -m pytest` per run,
measured in the same session (ratios, not absolute times)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import pytest
from heedls.analyzers import proc
from heedls.analyzers.repair.workers import Worker
from heedls.server.bench.fix import load_bugs, run_bug, summarise

from tests.support.shared_data import QUIXBUGS

FEW = ["gcd", "knapsack", "quicksort", "pascal", "flatten"]

pytestmark = [pytest.mark.bench, pytest.mark.skipif(not QUIXBUGS.is_dir(), reason="bug set not available")]


@pytest.mark.slow
def test_a_few_quixbugs_are_fixed_without_a_model() -> None:
    bugs = [b for b in load_bugs(QUIXBUGS) if b["id"] in FEW]
    assert len(bugs) == len(FEW)
    rows = [run_bug(b, budget_s=20, workers=2, python=sys.executable) for b in bugs]
    summary = summarise(rows, QUIXBUGS, 20, 1, os.getloadavg())
    print(json.dumps({k: v for k, v in summary.items() if k != "bugs"}))
    for r in rows:
        print(r["id"], r["fixed"], r["operator"], r["first_plausible_s"], r["test_runs"])
    assert summary["fixed"] >= 4
    assert all(r["test_unchanged"] for r in rows if "test_unchanged" in r)


def test_fork_server_is_much_cheaper_than_a_fresh_pytest_per_run() -> None:
    bug = QUIXBUGS / "quicksort"
    text = (bug / "quicksort.py").read_text()
    worker = Worker(bug, sys.executable, tests=["test_quicksort.py"])
    try:
        worker.start()
        assert worker.fast

        def timed(fast: bool) -> float:
            times = []
            for i in range(8):
                start = time.perf_counter()
                res = worker.run("quicksort.py", text + f"\n# {i}\n", ["test_quicksort.py"], exitfirst=True,
                                 timeout_s=30, fast=fast)
                times.append(time.perf_counter() - start)
                assert res.status == "ok"
            return statistics.median(times)

        fast, slow = timed(True), timed(False)
        fresh_times = []
        env = dict(worker.env)
        for _ in range(4):
            start = time.perf_counter()
            proc.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "test_quicksort.py"],
                     cwd=worker.copy, timeout_s=60, env=env)
            fresh_times.append(time.perf_counter() - start)
        fresh = statistics.median(fresh_times)
    finally:
        worker.close()
    print(f"median per run: fast {fast * 1000:.0f} ms, re-collect {slow * 1000:.0f} ms, fresh pytest {fresh * 1000:.0f} ms,"
          f" load {os.getloadavg()[0]:.1f}")
    assert fast / fresh < 0.5
    assert slow / fresh < 0.8
