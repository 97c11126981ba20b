"""Calibration of the local provider's confidence: P(the suggestion is exactly the rest of the line).

Each source's raw score (the n-gram sequence probability, the retrieval frequency, a flat prior for
an unambiguous jedi name) is mapped through a small logistic regression over features known at
serving time. The coefficients below are fitted by `main()` from `heedls bench local --dump` output
on a seed that is *not* the one reported (reproduce with
`heedls bench local --seed 1 --min-confidence 0 --dump dev.jsonl` then
`python -m heedls.server.providers.local_calibration dev.jsonl`; the floor must be off so that the
dump holds every candidate, not only those the current calibration lets through).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence

FEATURES = ("bias", "logit_raw", "line_start", "log_len", "order", "complete", "kind_next", "kind_next2",
            "log_support")

# Fitted coefficients per source (see the module docstring); missing sources use the identity.
# Fitted on `bench local --seed 1 --min-confidence 0` (2,000 cut points, all candidates labelled).
COEFFICIENTS: dict[str, list[float]] = {
    "ngram": [0.5461, 0.49, -0.3801, -0.8937, -0.0792, 0.1538, 0.0, 0.0, 0.0],
    "retrieval": [0.7078, 1.4232, -0.2652, -0.7016, 0.0, 0.0, 0.0887, 2.3087, -0.3827],
}


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def features(source: str, raw: float, meta: Mapping[str, object], line_start: bool, text: str) -> list[float]:
    order = meta.get("order", 0)
    support = meta.get("support", 0)
    kind = meta.get("kind", "")
    return [
        1.0,
        _logit(raw),
        1.0 if line_start else 0.0,
        math.log1p(len(text)),
        min(float(order), 10.0) / 10.0 if isinstance(order, (int, float)) else 0.0,
        1.0 if meta.get("complete", True) else 0.0,
        1.0 if kind == "next" else 0.0,
        1.0 if kind == "next2" else 0.0,
        math.log1p(float(support)) if isinstance(support, (int, float)) else 0.0,
    ]


def confidence(source: str, raw: float, meta: Mapping[str, object], line_start: bool, text: str) -> float:
    coef = COEFFICIENTS.get(source)
    if coef is None:
        return min(max(raw, 0.0), 1.0)
    z = sum(c * x for c, x in zip(coef, features(source, raw, meta, line_start, text)))
    return 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))


def fit_logistic(x: Sequence[Sequence[float]], y: Sequence[float], l2: float = 1.0) -> list[float]:
    """L2-regularised logistic regression by Newton's method (small, dependency-free apart from numpy)."""
    import numpy as np

    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    w = np.zeros(xa.shape[1])
    reg = np.eye(xa.shape[1]) * l2
    reg[0, 0] = 0.0  # the bias is not shrunk
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(xa @ w, -30, 30)))
        grad = xa.T @ (p - ya) + reg @ w
        hess = (xa * (p * (1 - p))[:, None]).T @ xa + reg + np.eye(len(w)) * 1e-9
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return [round(float(v), 4) for v in w]


def main(argv: list[str] | None = None) -> None:
    """Fit COEFFICIENTS from bench dumps (one JSON line per cut point, all candidates labelled)."""
    paths = (argv if argv is not None else sys.argv[1:])
    data: dict[str, tuple[list[list[float]], list[float]]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for raw_line in fh:
                row = json.loads(raw_line)
                for cand in row.get("candidates", []):
                    if not cand.get("text") or cand.get("meta", {}).get("partial"):
                        continue  # partial lines are never the whole rest of the line
                    meta = cand.get("meta", {})
                    xs, ys = data.setdefault(cand["source"], ([], []))
                    xs.append(features(cand["source"], float(meta.get("raw", 0.0)), meta,
                                       bool(row.get("line_start")), cand["text"]))
                    ys.append(1.0 if cand["exact"] else 0.0)
    out = {source: fit_logistic(xs, ys) for source, (xs, ys) in sorted(data.items()) if len(set(ys)) == 2}
    sys.stdout.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
