"""A user's own bias, learned online: the score of the next suggestion is shifted by how much more
(or less) this user has accepted so far than the model predicted for them.

People differ a lot in how much they take (on cups-dev, 27 % to 56 % of suggestions per person),
and a model fitted on other people cannot know where a new one stands; the session features
(recent acceptance rate, previous outcome) tell it only through weights learned on others. This is
the random intercept of a grouped logistic model, fitted online: one Newton step from 0 of the
logistic likelihood of the user's decided events under the model's own (unshifted) scores, with a
Gaussian prior worth `STRENGTH` in the denominator, so that a handful of decisions moves it little.
Used the same way by the live gate and by `heedls eval acceptance` (label `accepted`: persistence
is known too late to adapt on).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

STRENGTH = 20.0  # prior precision of the bias, in units of p(1-p) summed over decisions
MAX_BIAS = 3.0  # logits: never more than a factor ~20 in the odds
SCORE_EPS = 1e-6  # scores are clipped to [eps, 1 - eps] before they enter the sums


def clipped(score: float) -> float:
    return min(max(score, SCORE_EPS), 1.0 - SCORE_EPS)


def bias_from(residual: float, information: float) -> float:
    """The bias for the running sums Σ(y − p) and Σ p(1 − p) of a user's decisions so far."""
    return max(-MAX_BIAS, min(MAX_BIAS, residual / (STRENGTH + information)))


def user_bias(decided: Iterable[tuple[float, float]]) -> float:
    """Bias (logits) from (unshifted model score, label) pairs of the user's earlier decisions."""
    residual = information = 0.0
    for score, label in decided:
        p = clipped(score)
        residual += label - p
        information += p * (1.0 - p)
    return bias_from(residual, information)


def shifted(score: float, bias: float) -> float:
    """`score` with `bias` added to its logit."""
    if bias == 0.0:
        return score
    p = min(max(score, 1e-9), 1.0 - 1e-9)
    z = math.log(p / (1.0 - p)) + bias
    return 1.0 / (1.0 + math.exp(-z))


def online_shift(p: np.ndarray, y: np.ndarray, groups: np.ndarray, ts: np.ndarray,
                 decided_at: np.ndarray) -> np.ndarray:
    """Each score shifted by its user's bias learned from the scores and labels of that session's
    events decided before it (shown at `ts`, decided at `decided_at`), exactly as the live gate
    learns it; an event's own label is never used. O(n log n) per session: running sums over the
    events in order of decision."""
    out = p.astype(float).copy()
    q = np.clip(p, SCORE_EPS, 1.0 - SCORE_EPS)
    residual, information = y - q, q * (1.0 - q)
    for session in set(groups.tolist()):
        members = np.flatnonzero(groups == session)
        order = members[np.argsort(decided_at[members], kind="stable")]
        done = decided_at[order]
        cum_res = np.concatenate([[0.0], np.cumsum(residual[order])])
        cum_info = np.concatenate([[0.0], np.cumsum(information[order])])
        counted = np.searchsorted(done, ts[members], side="right")  # decided at or before each request
        res, info = cum_res[counted], cum_info[counted]
        own = decided_at[members] <= ts[members]  # decided instantly: its own label must not count
        res = np.where(own, res - residual[members], res)
        info = np.where(own, info - information[members], info)
        for i, r, n_info, n in zip(members, res, info, counted - own):
            if n > 0:
                out[i] = shifted(float(p[i]), bias_from(float(r), float(n_info)))
    return out


__all__ = ["MAX_BIAS", "SCORE_EPS", "STRENGTH", "bias_from", "clipped", "online_shift", "shifted", "user_bias"]
