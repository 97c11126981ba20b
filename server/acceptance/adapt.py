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
from collections.abc import Iterable, Sequence

import numpy as np

STRENGTH = 20.0  # prior precision of the bias, in units of p(1-p) summed over decisions
MAX_BIAS = 3.0  # logits: never more than a factor ~20 in the odds
SCORE_EPS = 1e-6  # scores are clipped to [eps, 1 - eps] before they enter the sums
DECISION_WINDOW = 200  # a session's latest candidates that `decision_gap` weighs
DECISION_MIN = 20  # ... and how many it needs before it limits the bias


def session_members(groups: np.ndarray) -> list[np.ndarray]:
    """Each session's event indices (ascending), sessions in sorted order: one pass over `groups`.
    `np.flatnonzero(groups == g)` per session compared every event with every session: with
    thousands of sessions in an export that was the evaluation's slowest part (O(sessions x n))."""
    index: dict[object, list[int]] = {}
    for i, group in enumerate(groups.tolist()):
        index.setdefault(group, []).append(i)
    return [np.asarray(index[group], dtype=np.intp) for group in sorted(index)]  # type: ignore[type-var]


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
    """`score` with `bias` added to its logit (clipped as the running sums clip it). A certainty
    stays one: a threshold of 0 shows everything, whatever the bias."""
    if bias == 0.0 or score <= 0.0 or score >= 1.0:
        return score
    return 1.0 / (1.0 + math.exp(-(logit(score) + bias)))


def logit(score: float) -> float:
    p = clipped(score)
    return math.log(p / (1.0 - p))


def decision_gap(bias: float, window: Sequence[float], threshold: float, keep: float) -> float:
    """How much of a negative `bias` (logits) must not count in the show/hide decision, so that the
    suggestions this user is expected to accept are still shown at the `keep` share.

    The bias calibrates: a user who takes less than the model predicts gets lower scores. Compared
    with the same threshold, those lower scores would hide more of *this user's* accepted
    suggestions too (a simulated user who takes only exact matches, bias -1.2: 67 % of them shown).
    So the decision may lower the scores only as far as the user's recent candidates, weighted by
    their calibrated chance of acceptance σ(logit p + bias), keep ≥ `keep` of that expected mass
    above the threshold. `window`: the unshifted logits of the session's recent candidates (at
    least DECISION_MIN of them, else the whole bias counts). Returns gap ≥ 0, the part of the bias
    the decision leaves out: the shifted score is compared with `shifted(threshold, -gap)`. Only
    scores are used, no labels: the hidden candidates count as the shown ones do."""
    if bias >= 0.0 or len(window) < DECISION_MIN or not 0.0 < keep <= 1.0:
        return 0.0
    ranked = sorted(window, reverse=True)
    weights = [1.0 / (1.0 + math.exp(-(z + bias))) for z in ranked]
    wanted = keep * sum(weights)
    mass = 0.0
    cut = ranked[-1]
    for z, w in zip(ranked, weights):
        mass += w
        cut = z
        if mass >= wanted:
            break
    # shown when logit p + b' >= logit(threshold): the candidates from `cut` up carry `keep` of the mass
    lowest = logit(threshold) - cut
    allowed = min(0.0, max(bias, lowest))
    return allowed - bias if allowed > bias else 0.0


def _decided_before(members: np.ndarray, ts: np.ndarray, decided_at: np.ndarray, residual: np.ndarray,
                    information: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For a session's `members`: the members in order of decision, and per member how many of the
    session's decisions came at or before its request (shown at `ts`), whether its own is among
    them (decided instantly: its own label must never count), and the sums Σ(y − p) and Σ p(1 − p)
    over those decisions without its own. Running sums over the decisions: O(n log n)."""
    order = members[np.argsort(decided_at[members], kind="stable")]
    cum_res = np.concatenate([[0.0], np.cumsum(residual[order])])
    cum_info = np.concatenate([[0.0], np.cumsum(information[order])])
    counted = np.searchsorted(decided_at[order], ts[members], side="right")
    own = decided_at[members] <= ts[members]
    res = np.where(own, cum_res[counted] - residual[members], cum_res[counted])
    info = np.where(own, cum_info[counted] - information[members], cum_info[counted])
    return order, counted, own, res, info


def online_shift(p: np.ndarray, y: np.ndarray, groups: np.ndarray, ts: np.ndarray,
                 decided_at: np.ndarray) -> np.ndarray:
    """Each score shifted by its user's bias learned from the scores and labels of that session's
    events decided before it (shown at `ts`, decided at `decided_at`), exactly as the live gate
    learns it; an event's own label is never used."""
    out = p.astype(float).copy()
    q = np.clip(p, SCORE_EPS, 1.0 - SCORE_EPS)
    residual, information = y - q, q * (1.0 - q)
    for members in session_members(groups):
        _, counted, own, res, info = _decided_before(members, ts, decided_at, residual, information)
        for i, r, n_info, n in zip(members, res, info, counted - own):
            if n > 0:
                out[i] = shifted(float(p[i]), bias_from(float(r), float(n_info)))
    return out


def online_decision_thresholds(p: np.ndarray, y: np.ndarray, groups: np.ndarray, ts: np.ndarray,
                               decided_at: np.ndarray, thresholds: np.ndarray, keep: float) -> np.ndarray:
    """Each event's threshold as the live gate applies it to the shifted score: lowered by the
    `decision_gap` the gate worked out at the session's latest decision before the request, from
    the bias then and the unshifted scores of the session's requests made up to that decision (the
    latest DECISION_WINDOW; the gate scores them as they come). `p`: unshifted scores."""
    out = thresholds.astype(float).copy()
    q = np.clip(p, SCORE_EPS, 1.0 - SCORE_EPS)
    logits = np.log(q / (1.0 - q))
    residual, information = y - q, q * (1.0 - q)
    for members in session_members(groups):
        members = members[np.argsort(ts[members], kind="stable")]
        asked = ts[members]
        order, counted, own, res, info = _decided_before(members, ts, decided_at, residual, information)
        for i, n, mine, r, n_info in zip(members, counted.tolist(), own.tolist(), res, info):
            if n - mine <= 0:
                continue
            earlier = order[:n]
            last = earlier[-1] if earlier[-1] != i else earlier[-2]
            seen = members[: int(np.searchsorted(asked, decided_at[last], side="right"))]
            window = logits[seen[-DECISION_WINDOW:]].tolist()
            gap = decision_gap(bias_from(float(r), float(n_info)), window, float(thresholds[last]), keep)
            if gap:
                out[i] = shifted(float(thresholds[i]), -gap)
    return out


__all__ = ["DECISION_MIN", "DECISION_WINDOW", "MAX_BIAS", "SCORE_EPS", "STRENGTH", "bias_from", "clipped",
           "decision_gap", "logit", "online_decision_thresholds", "online_shift", "session_members", "shifted", "user_bias"]
