"""A user's own bias, learned online from their earlier decisions: the same in the gate and in eval."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from heedls.server.acceptance.adapt import DECISION_MIN, MAX_BIAS, decision_gap, shifted, user_bias
from heedls.server.acceptance.evaluate import build_dataset, evaluate, with_decision_gap, with_user_bias
from heedls.server.acceptance.features import STAGE_FEATURES
from heedls.server.acceptance.gate import AcceptanceGate
from heedls.server.acceptance.model import AcceptanceModel, fit_stage

from tests.unit.test_acceptance_data import make_events


def test_no_decisions_no_bias_and_a_few_decisions_move_it_little() -> None:
    assert user_bias([]) == 0.0
    assert shifted(0.3, 0.0) == 0.3
    few = user_bias([(0.2, 1.0)] * 3)  # three surprising accepts
    assert 0 < few < 0.15
    assert user_bias([(0.8, 0.0)] * 3) == pytest.approx(-few)  # symmetric


def test_a_show_everything_threshold_stays_one_whatever_the_bias() -> None:
    # a stage whose training had too few accepts has threshold 0: lowering it must not raise it above 0
    assert shifted(0.0, -MAX_BIAS) == 0.0 and shifted(0.0, MAX_BIAS) == 0.0
    assert shifted(1.0, -MAX_BIAS) == 1.0
    # scores and thresholds near certainty move as the running sums see them (clipped at 1e-6)
    assert shifted(1e-12, 1.0) == pytest.approx(shifted(1e-6, 1.0))
    assert 0.0 < shifted(1e-12, -1.0) < 1e-6


def test_a_user_who_takes_more_than_predicted_is_shifted_up_more_as_evidence_grows() -> None:
    biases = [user_bias([(0.2, 1.0 if i % 2 == 0 else 0.0) for i in range(n)]) for n in (10, 50, 200)]
    assert 0 < biases[0] < biases[1] < biases[2] < MAX_BIAS
    assert shifted(0.2, biases[2]) > 0.2
    assert user_bias([(0.01, 1.0)] * 10_000) == MAX_BIAS  # bounded
    calibrated = [(0.3, 1.0 if i % 10 < 3 else 0.0) for i in range(100)]
    assert abs(user_bias(calibrated)) < 1e-9  # a user the model already predicts well is left alone


def test_eval_learns_the_bias_only_from_earlier_decisions_of_the_same_session() -> None:
    events = make_events(sessions=3, per_session=30, seed=31)
    data = build_dataset(events, "suggestion")
    p = np.full(data.y.size, 0.3)
    base = with_user_bias(data, p)
    assert base[0] == 0.3 and not np.allclose(base, 0.3)  # the first event has nothing to learn from
    for k in (5, 17, 29):  # the vectorised evaluation is adapt.user_bias over the decisions made before
        event = data.events[k]
        before = [(0.3, data.y[j]) for j, e in enumerate(data.events) if data.groups[j] == data.groups[k]
                  and j != k and e.ts + (e.decision_ms or 0) / 1000 <= event.ts]
        assert base[k] == pytest.approx(shifted(0.3, user_bias(before)))
    # Changing the last outcome of each session changes no score: no event sees a later decision.
    last = {s: max(i for i in range(len(data.events)) if data.groups[i] == s) for s in set(data.groups.tolist())}
    flipped = dataclasses.replace(data, y=data.y.copy())
    for i in last.values():
        flipped.y[i] = 1.0 - flipped.y[i]
    np.testing.assert_array_equal(with_user_bias(flipped, p), base)
    # Another session's decisions do not count either.
    first = data.groups == data.groups[0]
    alone = dataclasses.replace(data, X=data.X[first], y=data.y[first], groups=data.groups[first],
                                rows=[r for r, m in zip(data.rows, first) if m],
                                events=[e for e, m in zip(data.events, first) if m])
    np.testing.assert_array_equal(with_user_bias(alone, p[first]), base[first])


def test_eval_says_it_adapts_and_can_be_told_not_to() -> None:
    events = make_events(sessions=3, per_session=30, seed=32)
    on = evaluate(events, "suggestion", kind="logreg")
    off = evaluate(events, "suggestion", kind="logreg", adapt=False)
    assert on["model"]["user_bias"] is True and "own bias" in on["protocol"]
    assert off["model"]["user_bias"] is False and "own bias" not in off["protocol"]
    persisted = evaluate(events, "suggestion", label="persisted", kind="logreg")
    assert persisted["model"]["user_bias"] is False


def _through_the_gate(session: list) -> tuple[dict, dict, dict, AcceptanceGate]:
    """A session through the live gate as the engine drives it: (stage models, served scores,
    served thresholds, gate)."""
    train = make_events(sessions=4, per_session=50, seed=33)
    stages = {}
    for stage in ("context", "suggestion"):
        data = build_dataset(train, stage)
        stages[stage] = fit_stage(stage, STAGE_FEATURES[stage], data.X, data.y, data.groups, kind="logreg")
    model = AcceptanceModel("adapt-test", stages)
    gate = AcceptanceGate("cascade", model=model, refit=False)
    served: dict[str, list[float]] = {"context": [], "suggestion": []}
    thresholds: dict[str, list[float | None]] = {"context": [], "suggestion": []}
    history: list = []
    undecided = list(session)
    for event in session:
        # Decisions arrive (engine -> gate.observe) at shown time + decision time.
        for done in [e for e in undecided if e.ts + e.decision_ms / 1000.0 <= event.ts]:
            gate.observe(done)
            gate.observe(done)  # a persistence check reports the same decision again: counted once
            undecided.remove(done)
        pending = dataclasses.replace(event, outcome=None)
        text, pending.suggestion = pending.suggestion, None
        d1 = gate.stage1(pending, history)
        pending.suggestion = text
        d2 = gate.stage2(pending, history)
        assert d1.score is not None and d2.score is not None
        served["context"].append(d1.score)
        served["suggestion"].append(d2.score)
        thresholds["context"].append(d1.threshold)
        thresholds["suggestion"].append(d2.threshold)
        history = (history + [event])[-64:]  # what the engine passes: its last 64 events
    return stages, served, thresholds, gate


def _eval_of(session: list, stages: dict, stage: str, gate: AcceptanceGate | None = None) -> tuple:
    """(unshifted scores, shifted scores, thresholds) as `heedls eval acceptance --pretrained` has them."""
    data = build_dataset(session, stage)
    raw = np.array([stages[stage].score(row) for row in data.rows])
    if gate is not None:  # eval's rows see the same last 64 events as the engine's gate: the same scores
        np.testing.assert_allclose(raw, [gate._raw[stage][e.id] for e in data.events], atol=1e-12)
    plain = np.full(raw.size, stages[stage].threshold_for(0.95))
    return raw, with_user_bias(data, raw), with_decision_gap(data, raw, plain, 0.95)


def test_the_gate_serves_the_scores_eval_computes(tmp_path: Path) -> None:
    """Train/serve consistency: a session through the live gate gives, event by event, the scores
    and thresholds that `heedls eval acceptance --pretrained` computes for it."""
    session = make_events(sessions=1, per_session=120, seed=34)  # longer than the engine's 64-event history
    stages, served, thresholds, gate = _through_the_gate(session)
    for stage in ("context", "suggestion"):
        raw, expected, judged_by = _eval_of(session, stages, stage, gate)
        np.testing.assert_allclose(served[stage], expected, atol=1e-5)
        assert not np.allclose(expected, raw)  # the bias did move the scores
        np.testing.assert_allclose(thresholds[stage], judged_by, atol=1e-5)


def _taking_less(session: list, share: float, seed: int) -> list:
    """The same session by a user who turns down most of what the first one took."""
    rng = np.random.default_rng(seed)
    return [dataclasses.replace(e, outcome="rejected") if e.outcome == "accepted" and rng.random() < share else e
            for e in session]


def test_a_user_who_takes_less_than_predicted_is_not_hidden_more_of_what_they_take() -> None:
    """Their negative bias lowers the scores (calibration), but the decisions only as far as their own
    candidates' scores say keeps 95 % of their expected accepts: the thresholds drop with it, in the
    gate and in eval alike."""
    session = _taking_less(make_events(sessions=1, per_session=160, seed=35), 0.7, seed=1)
    stages, served, thresholds, gate = _through_the_gate(session)
    raw, shifted_p, judged_by = _eval_of(session, stages, "suggestion", gate)
    plain = stages["suggestion"].threshold_for(0.95)
    np.testing.assert_allclose(served["suggestion"], shifted_p, atol=1e-5)
    np.testing.assert_allclose(thresholds["suggestion"], judged_by, atol=1e-5)
    assert (shifted_p < raw - 1e-3).sum() > 100  # the bias is negative: this user takes less
    lowered = judged_by < plain - 1e-9
    assert lowered.sum() >= 10  # ... and the decisions do not follow it all the way
    # with the whole bias, more of this user's candidates would be hidden than with the part kept
    assert (shifted_p < plain).sum() > (shifted_p < judged_by).sum()


def test_the_decision_gap_keeps_the_target_share_of_the_expected_accepts() -> None:
    rng = np.random.default_rng(3)
    window = rng.normal(-0.5, 1.2, size=200).tolist()
    threshold = 0.15
    assert decision_gap(0.4, window, threshold, 0.95) == 0.0  # a positive bias shows more: left alone
    assert decision_gap(-1.5, window[:DECISION_MIN - 1], threshold, 0.95) == 0.0  # too few to judge by
    bias = -1.5
    gap = decision_gap(bias, window, threshold, 0.95)
    assert 0.0 < gap <= -bias
    z = np.array(window)
    expected = 1 / (1 + np.exp(-(z + bias)))  # this user's chance of taking each candidate

    def kept(decision_bias: float) -> float:
        shown = 1 / (1 + np.exp(-(z + decision_bias))) >= threshold
        return float(expected[shown].sum() / expected.sum())

    assert kept(bias) < 0.95 <= kept(bias + gap)  # the whole bias would keep too little; the part kept, enough
    assert kept(bias + gap - 0.05) < 0.95  # and no more of it is left out than that needs
    # Never more than the whole bias: where even the unshifted scores keep too little, that is all it does.
    assert decision_gap(bias, window, 0.4, 0.95) == -bias
    mild = decision_gap(-0.05, window, 0.05, 0.95)
    assert mild == 0.0  # a small bias that still keeps 95 % counts in full
