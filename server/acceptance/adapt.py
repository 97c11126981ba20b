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


__all__ = ["MAX_BIAS", "SCORE_EPS", "STRENGTH", "bias_from", "clipped", "shifted", "user_bias"]
