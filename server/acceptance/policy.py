"""Thresholds for "keep at least X % of the suggestions that would be accepted".

A suggestion (stage 2) or a request (stage 1) is shown when its calibrated score is >= the
threshold, computed from out-of-fold scores of the training positives only, never from the data it
is evaluated on. It is chosen for the *next* accepted suggestion, not for the training ones: that
one falls below the k-th lowest of n training scores with probability k / (n + 1) (it is as likely
to rank anywhere among them), so k = floor((1 - keep)(n + 1)) keeps >= `keep` in expectation (the
split-conformal bound). The in-sample rule used until 2026-11-29 (keep `keep` of the training
positives) kept about 1 / (n + 1) less than asked on new data.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_KEEP = 0.95
QUANTILE_LEVELS = 201


def threshold_for_keep(positive_scores: np.ndarray, keep: float = DEFAULT_KEEP) -> float:
    """The floor((1 - keep)(n + 1))-th lowest of the n scores (0.0 = show everything, also when n is
    too small for any threshold to keep `keep` of a new positive in expectation). Defined for any
    `keep`: >= 1 or NaN (no target) shows everything; <= 0 gives the highest score."""
    scores = np.sort(np.asarray(positive_scores, dtype=float))
    if scores.size == 0 or not keep < 1.0:  # also NaN
        return 0.0
    keep = max(keep, 0.0)
    k = min(math.floor((1.0 - keep) * (scores.size + 1) + 1e-9), scores.size)
    return float(scores[k - 1]) if k > 0 else 0.0


def min_positives(keep: float = DEFAULT_KEEP) -> int:
    """The fewest training positives for which `threshold_for_keep` can hide anything (k >= 1):
    19 at keep 0.95; 0 when `keep` >= 1 asks to show everything anyway."""
    if not keep < 1.0:
        return 0
    return math.ceil(1.0 / (1.0 - max(keep, 0.0)) - 1.0 - 1e-9)


def positive_quantiles(positive_scores: np.ndarray, levels: int = QUANTILE_LEVELS) -> list[float]:
    """Scores of the positives at evenly spaced quantile levels ("lower" interpolation)."""
    scores = np.asarray(positive_scores, dtype=float)
    if scores.size == 0:
        return []
    return [float(v) for v in np.quantile(scores, np.linspace(0.0, 1.0, levels), method="lower")]


def shown(score: float, threshold: float) -> bool:
    return score >= threshold
