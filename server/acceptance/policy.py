"""Thresholds for "keep at least X % of the suggestions that would be accepted".

A suggestion (stage 2) or a request (stage 1) is shown when its calibrated score is >= the
threshold. The threshold is the highest value that still keeps >= `keep` of the *training*
positives: computed from training-fold scores only, never from the data it is evaluated on.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_KEEP = 0.95
QUANTILE_LEVELS = 201


def threshold_for_keep(positive_scores: np.ndarray, keep: float = DEFAULT_KEEP) -> float:
    """Largest t with mean(positive_scores >= t) >= keep (0.0 = show everything)."""
    scores = np.sort(np.asarray(positive_scores, dtype=float))
    if scores.size == 0 or keep >= 1.0:
        return 0.0
    keep = max(keep, 0.0)
    # At most floor((1 - keep) * n) positives may fall below t: t = the next score up.
    allowed = math.floor((1.0 - keep) * scores.size + 1e-9)
    return float(scores[min(allowed, scores.size - 1)])


def positive_quantiles(positive_scores: np.ndarray, levels: int = QUANTILE_LEVELS) -> list[float]:
    """Scores of the positives at evenly spaced quantile levels ("lower" interpolation)."""
    scores = np.asarray(positive_scores, dtype=float)
    if scores.size == 0:
        return []
    return [float(v) for v in np.quantile(scores, np.linspace(0.0, 1.0, levels), method="lower")]


def shown(score: float, threshold: float) -> bool:
    return score >= threshold
