"""Spectrum-based fault localisation combined with the failure's traceback.

Ochiai and DStar (star = 2) over per-test line coverage of the module under test, then boosted by
where the failures actually surfaced: lines in traceback frames of the module (the deepest frame
most), because with one failing test every executed line has the same spectrum score.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from heedls.analyzers.repair.workers import TestOutcome


@dataclass(frozen=True)
class LineScore:
    line: int
    score: float
    ochiai: float
    dstar: float
    in_trace: bool


def localise(tests: list[TestOutcome], module: str, all_lines: set[int] | None = None) -> list[LineScore]:
    """Rank the module's lines (1-based) by suspiciousness; best first."""
    failing = [t for t in tests if t.outcome == "failed"]
    passing = [t for t in tests if t.outcome == "passed"]
    ef: Counter[int] = Counter()
    ep: Counter[int] = Counter()
    for t in failing:
        ef.update(set(t.lines.get(module, [])))
    for t in passing:
        ep.update(set(t.lines.get(module, [])))
    trace: Counter[int] = Counter()
    deepest: Counter[int] = Counter()
    for t in failing:
        frames = [f for f in (t.failure or {}).get("frames", []) if f.get("path") == module]
        for f in frames:
            trace[int(f["line"])] += 1
        if frames:
            deepest[int(frames[-1]["line"])] += 1
    total_f = max(len(failing), 1)
    lines = set(ef) | set(ep) | set(trace) | (all_lines or set())
    raw: list[LineScore] = []
    dmax = 0.0
    scores: dict[int, tuple[float, float]] = {}
    for line in lines:
        f, p = ef[line], ep[line]
        ochiai = f / math.sqrt(total_f * (f + p)) if f else 0.0
        dstar = (f * f) / (p + (total_f - f)) if (p + (total_f - f)) > 0 else float(f * f) * 10
        dmax = max(dmax, dstar)
        scores[line] = (ochiai, dstar)
    for line, (ochiai, dstar) in scores.items():
        dnorm = dstar / dmax if dmax > 0 else 0.0
        boost = 0.0
        if trace[line]:
            boost += 0.15
        if deepest[line]:
            boost += 0.15
        # lines no failing test ran still get a little weight: the bug may be a missing statement
        # next to them, and coverage is empty when the module failed at import
        base = 0.7 * ochiai + 0.3 * dnorm if (ef or not failing) else 0.3
        # the spectrum gives at most 0.7 so that the traceback can still separate equal spectra
        score = 0.7 * base + boost if base > 0 or boost > 0 else 0.05
        raw.append(LineScore(line, score, ochiai, dstar, bool(trace[line])))
    raw.sort(key=lambda s: (-s.score, s.line))
    return raw
