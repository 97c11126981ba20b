"""The leave-one-session-out protocol: shape of the JSON, thresholds from training folds only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from heedls.server.acceptance import evaluate as ev
from heedls.server.acceptance import folds as folds_module
from heedls.server.cli import app
from heedls.server.events import write_jsonl
from typer.testing import CliRunner

from tests.unit.test_acceptance_data import make_events

KEYS = {"n", "positives", "auc", "hidden_rejected_at_95", "accepted_kept", "ece", "requests_avoided", "protocol"}


def test_json_shape_from_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = make_events(sessions=4, per_session=30)
    events.append(dataclasses.replace(events[0], id="undecided", outcome=None, ts=events[-1].ts + 1))
    write_jsonl(events, path)
    with path.open("a") as fh:
        fh.write("this is not json\n")
    for stage in ("context", "suggestion"):
        result = CliRunner().invoke(app, ["eval", "acceptance", str(path), "--stage", stage, "--json",
                                          "--baselines", "--model", "logreg"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert KEYS <= set(data)
        assert data["n"] == 120  # the undecided event is not an example; the bad line is skipped
        assert data["positives"] == sum(e.outcome == "accepted" for e in events)
        assert set(data["baselines"]) >= {"always_show", "copilot_filter"}
        assert (data["requests_avoided"] is None) == (stage == "suggestion")
        assert "leave-one-session-out" in data["protocol"]


def test_a_label_no_event_can_have_is_explained_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = make_events(sessions=3, per_session=20, seed=8)  # decisions, no persistence checks
    write_jsonl([dataclasses.replace(e, persisted_30s=None, persisted_120s=None, persisted_600s=None)
                 for e in events], path)
    result = CliRunner().invoke(app, ["eval", "acceptance", str(path), "--stage", "suggestion", "--json",
                                      "--label", "persisted", "--model", "logreg"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stdout stays one JSON object
    assert data["positives"] == 0 and data["auc"] is None
    accepted = sum(e.outcome == "accepted" for e in events)
    assert f"none of the {accepted} accepted events carries a persistence check" in result.stderr
    plain = CliRunner().invoke(app, ["eval", "acceptance", str(path), "--stage", "suggestion", "--json",
                                     "--model", "logreg"])
    assert plain.exit_code == 0 and "heedls:" not in plain.stderr  # both classes: nothing to explain


def test_thresholds_come_only_from_training_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    events = make_events(sessions=5, per_session=40, seed=7)
    seen: list[set[str]] = []
    real_fit = folds_module.fit_stage

    def spy(stage, features, X, y, groups, **kw):  # type: ignore[no-untyped-def]
        seen.append(set(groups.tolist()))
        return real_fit(stage, features, X, y, groups, **kw)

    monkeypatch.setattr(folds_module, "fit_stage", spy)
    base = ev.evaluate(events, "suggestion", kind="logreg")
    sessions = sorted({e.session for e in events})
    assert [sorted(s) for s in seen] == [[t for t in sessions if t != held] for held in sessions]

    # Flipping every label of one session cannot move that session's own threshold.
    held = sessions[2]
    flipped = [dataclasses.replace(e, outcome="rejected" if e.outcome == "accepted" else "accepted")
               if e.session == held else e for e in events]
    other = ev.evaluate(flipped, "suggestion", kind="logreg")
    before = {f["session"]: f["threshold"] for f in base["folds"]}
    after = {f["session"]: f["threshold"] for f in other["folds"]}
    assert before[held] == after[held]
    assert any(before[s] != after[s] for s in sessions if s != held)


def test_metrics_definitions() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.4, 0.5, 0.3, 0.2, 0.1])
    assert ev.auc(y, p) == pytest.approx(11 / 12)
    m = ev.metrics(y, p, np.full(7, 0.35), "context")
    assert m["accepted_kept"] == 1.0
    assert m["hidden_rejected_at_95"] == 0.75
    assert m["requests_avoided"] == round(3 / 7, 4)
    assert ev.ece(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.0)
    assert ev.auc(np.array([1, 1]), np.array([0.2, 0.3])) is None


def test_learns_the_synthetic_signal() -> None:
    result = ev.evaluate(make_events(sessions=6, per_session=50, seed=5), "suggestion", kind="blend")
    assert result["auc"] > 0.7
    assert result["accepted_kept"] >= 0.85  # target 0.95 is set on training folds; held out it varies
    assert 0.0 <= result["ece"] <= 0.2


def test_figures_come_with_session_bootstrap_intervals() -> None:
    result = ev.evaluate(make_events(sessions=6, per_session=50, seed=5), "context", kind="logreg")
    intervals = result["intervals"]
    assert set(intervals) == {"auc", "hidden_rejected_at_95", "accepted_kept", "ece", "requests_avoided"}
    for key, (low, high) in intervals.items():
        assert low <= high
        assert low - 1e-4 <= result[key] <= high + 1e-4 or key == "ece"  # ECE's bootstrap is biased upwards

    # sessions are resampled whole: two sessions that disagree give a wide interval, reproducibly
    y = np.array([1.0] * 10 + [0.0] * 10 + [1.0] * 10 + [0.0] * 10)
    p = np.array([0.9] * 10 + [0.1] * 10 + [0.2] * 10 + [0.8] * 10)
    groups = np.array(["a"] * 20 + ["b"] * 20, dtype=object)
    wide = ev.session_intervals(y, p, np.full(40, 0.5), groups, "suggestion", seed=3)
    assert wide is not None and wide["accepted_kept"] == [0.0, 1.0]
    assert wide == ev.session_intervals(y, p, np.full(40, 0.5), groups, "suggestion", seed=3)
    assert ev.session_intervals(y[:20], p[:20], np.full(20, 0.5), groups[:20], "suggestion") is None


def test_ece_is_reported_beside_what_a_calibrated_model_shows_by_chance() -> None:
    # One score for everyone: a calibrated model's ECE is the gap between the bin's mean outcome
    # and its score, about 0.8 standard errors of a proportion.
    flat = ev.ece_by_chance(np.full(400, 0.3), seed=1)
    assert flat is not None and flat["mean"] == pytest.approx(0.8 * np.sqrt(0.3 * 0.7 / 400), rel=0.15)
    assert flat["p90"] > flat["mean"]
    # Scores over several bins and a few hundred events: chance alone is near the 0.05 target.
    rng = np.random.default_rng(2)
    p = rng.uniform(0.1, 0.7, 464)
    spread = ev.ece_by_chance(p, seed=1)
    assert spread is not None and 0.035 < spread["mean"] < 0.06
    assert spread == ev.ece_by_chance(p, seed=1)  # seeded
    assert ev.ece_by_chance(rng.uniform(0.1, 0.7, 100_000), seed=1)["mean"] < 0.005  # type: ignore[index]
    assert ev.ece_by_chance(np.array([])) is None
    # ... and the evaluation carries it, for the held-out scores it judged
    result = ev.evaluate(make_events(sessions=4, per_session=40, seed=6), "suggestion", kind="logreg")
    assert 0.0 < result["ece_chance"]["mean"] <= result["ece_chance"]["p90"] < 0.2


def test_worker_processes_give_exactly_the_serial_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    events = make_events(sessions=4, per_session=30, seed=12)
    serial = ev.evaluate(events, "suggestion", kind="logreg", jobs=1)
    parallel = ev.evaluate(events, "suggestion", kind="logreg", jobs=2)
    assert parallel == serial  # every fold seeded and independent: same scores, thresholds, figures
    # workers that cannot start: the folds are fitted in this process instead, with the same result
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("no processes here")

    monkeypatch.setattr(folds_module, "_fit_in_workers", broken)
    assert ev.evaluate(events, "suggestion", kind="logreg", jobs=2) == serial
    # small data stays in-process by default; a big file gets up to one worker per core
    assert folds_module.auto_jobs(464, 10) == 1
    assert 1 <= folds_module.auto_jobs(20_000, 200) <= folds_module.MAX_AUTO_JOBS


def test_single_session_is_reported_not_crashed() -> None:
    result = ev.evaluate(make_events(sessions=1, per_session=20), "context")
    assert result["auc"] is None and "two sessions" in result["protocol"]


def test_pretrained_scores_without_fitting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from heedls.server.acceptance.features import STAGE_FEATURES
    from heedls.server.acceptance.model import AcceptanceModel, fit_stage

    events = make_events(sessions=3, per_session=30, seed=9)
    stages = {}
    for stage in ("context", "suggestion"):
        data = ev.build_dataset(events, stage)
        stages[stage] = fit_stage(stage, STAGE_FEATURES[stage], data.X, data.y, data.groups, kind="logreg")
    model = AcceptanceModel("t-1", stages)
    monkeypatch.setattr(folds_module, "fit_stage", lambda *a, **k: pytest.fail("--pretrained must not fit"))
    result = ev.evaluate(events, "suggestion", pretrained=model)
    assert result["model"]["version"] == "t-1" and result["auc"] is not None
    path = tmp_path / "m.json"
    model.save(path)
    write_jsonl(events, tmp_path / "e.jsonl")
    out = CliRunner().invoke(app, ["eval", "acceptance", str(tmp_path / "e.jsonl"), "--pretrained",
                                   "--model-file", str(path), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["model"]["version"] == "t-1"
