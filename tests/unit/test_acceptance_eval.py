"""The leave-one-session-out protocol: shape of the JSON, thresholds from training folds only."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

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


def _pretrained_with_baselines(tmp_path: Path, sessions: int) -> Any:
    path = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=sessions, per_session=30, seed=5), path)
    result = _eval(str(path), "--stage", "suggestion", "--json", "--pretrained", "--baselines")
    assert result.exit_code == 0, result.output
    return result


def test_baselines_are_reported_beside_the_shipped_model_too(tmp_path: Path) -> None:
    result = _pretrained_with_baselines(tmp_path, sessions=4)
    data = json.loads(result.stdout)
    assert set(data["baselines"]) == {"always_show", "copilot_filter", "suggestion_length"}
    assert data["baselines"]["always_show"]["hidden_rejected_at_95"] == 0.0
    assert "the baselines beside it are fitted leave-one-session-out" in data["protocol"]


def test_baselines_asked_of_one_session_are_explained_not_dropped_silently(tmp_path: Path) -> None:
    result = _pretrained_with_baselines(tmp_path, sessions=1)
    assert "baselines" not in json.loads(result.stdout)
    assert "--baselines needs labelled events in two sessions" in result.stderr
    assert "this file has 1: none reported" in result.stderr


def test_seed_reproduces_and_moves_the_sampled_parts(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=4, per_session=30, seed=3), path)

    def run(*extra: str) -> dict[str, object]:
        result = CliRunner().invoke(app, ["eval", "acceptance", str(path), "--stage", "suggestion", "--json",
                                          "--jobs", "1", "--model", "logreg", "--prior", "none", *extra])
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    default, zero, one = run(), run("--seed", "0"), run("--seed", "1")
    assert default == zero  # 0 is the default: the documented figures
    assert one["ece_chance"] != zero["ece_chance"] and one["intervals"] != zero["intervals"]


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


@pytest.mark.slow
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


@pytest.mark.parametrize("stage", ["context", "suggestion"])
def test_a_bootstrap_draw_has_the_figures_of_its_sessions_events_put_together(stage: str) -> None:
    """The intervals are weighted sums (a session drawn k times weighs k); they read as the figures of
    each resample built event by event, up to a last digit of rounding. Tied scores, and a session
    of one class, included."""
    rng = np.random.default_rng(11)
    n, sessions = 400, 12
    groups = np.array([f"s{int(g)}" for g in rng.integers(0, sessions, n)], dtype=object)
    y = (rng.random(n) < 0.35).astype(float)
    y[groups == "s3"] = 1.0
    p = np.round(rng.random(n), 1)  # many ties
    thresholds = np.full(n, 0.3)
    members = [np.flatnonzero(groups == g) for g in sorted(set(groups.tolist()))]
    draw = np.random.default_rng(4)
    built: dict[str, list[float]] = {}
    for _ in range(300):
        idx = np.concatenate([members[i] for i in draw.integers(0, len(members), len(members))])
        for key, value in ev.metrics(y[idx], p[idx], thresholds[idx], stage).items():
            if value is not None and key != "shown_share":
                built.setdefault(key, []).append(value)
    expected = {key: [float(np.percentile(values, q)) for q in (5.0, 95.0)] for key, values in built.items()}
    got = ev.session_intervals(y, p, thresholds, groups, stage, reps=300, seed=4)
    assert got is not None and set(got) == set(expected)
    for key, bounds in expected.items():
        assert got[key] == pytest.approx(bounds, abs=1.5e-4), key


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


def test_pretrained_on_the_models_own_training_events_says_the_figures_are_in_sample(tmp_path: Path) -> None:
    """cups-dev with --pretrained reads AUC 0.87 (0.76 left out session by session): the shipped
    model was trained on it. The model file names its sources by sha256, so the command says so."""
    from heedls.server.acceptance.features import STAGE_FEATURES
    from heedls.server.acceptance.model import AcceptanceModel, fit_stage

    events = make_events(sessions=3, per_session=30, seed=9)
    write_jsonl(events, tmp_path / "train.jsonl")
    write_jsonl(make_events(sessions=3, per_session=30, seed=10), tmp_path / "other.jsonl")
    data = ev.build_dataset(events, "suggestion")
    stage = fit_stage("suggestion", STAGE_FEATURES["suggestion"], data.X, data.y, data.groups, kind="logreg")
    digest = hashlib.sha256((tmp_path / "train.jsonl").read_bytes()).hexdigest()[:16]
    AcceptanceModel("t-1", {"suggestion": stage},
                    meta={"sources": [{"name": "team-log", "sha256": digest}]}).save(tmp_path / "m.json")
    note = "the model was trained on these events (team-log): the figures are in-sample"
    for name, said in (("train.jsonl", True), ("other.jsonl", False)):
        out = _eval(str(tmp_path / name), "--pretrained", "--model-file", str(tmp_path / "m.json"), "--json")
        assert out.exit_code == 0 and (note in out.stderr) == said, out.stderr


# --------------------------------------------------------------------------- reading files, arguments


def _eval(*args: str) -> Any:
    return CliRunner().invoke(app, ["eval", "acceptance", *args])


def test_figures_do_not_depend_on_the_order_of_the_lines() -> None:
    events = make_events(sessions=4, per_session=30, seed=11)
    shuffled = list(events)
    random.Random(3).shuffle(shuffled)
    assert ev.evaluate(shuffled, "suggestion", kind="blend") == ev.evaluate(events, "suggestion", kind="blend")
    # the canonical order is (session, ts, id); make_events (like cups-dev and replays) is already in it
    assert ev.canonical_order(shuffled) == events
    twins = [dataclasses.replace(events[0], outcome="rejected"), dataclasses.replace(events[0], outcome="accepted")]
    assert ev.canonical_order(twins) == ev.canonical_order(twins[::-1])  # a duplicated id too


def test_a_badly_typed_field_is_unknown_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    events = make_events(sessions=3, per_session=15, seed=4)
    rows = [e.to_dict() for e in events]
    rows[3]["prefix"] = 12345
    rows[4]["suggestion"] = ["a", "b"]
    rows[5]["language"] = 7
    for row in rows:
        row["decision_ms"] = "1200"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for stage in ("context", "suggestion"):
        result = _eval(str(path), "--stage", stage, "--json", "--model", "logreg", "--prior", "none", "--jobs", "1")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["n"] == 45  # every event read, none skipped


def test_the_keep_target_is_named_beside_the_figures_it_sets(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=3, per_session=30, seed=2), path)
    base = ["--stage", "suggestion", "--model", "logreg", "--prior", "none", "--jobs", "1"]
    default = json.loads(_eval(str(path), *base, "--json").stdout)
    looser = json.loads(_eval(str(path), *base, "--json", "--keep", "0.8").stdout)
    assert default["keep"] == 0.95 and looser["keep"] == 0.8
    assert looser["hidden_rejected_at_95"] >= default["hidden_rejected_at_95"]  # same key, the looser target
    table = _eval(str(path), *base, "--keep", "0.8")
    assert table.exit_code == 0 and "at keep >= 0.8" in " ".join(table.stdout.split())


@pytest.mark.parametrize("keep", ["0", "-1", "nan", "1.5", "inf"])
def test_a_keep_outside_zero_to_one_is_refused(tmp_path: Path, keep: str) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=2, per_session=10), path)
    for extra in ([], ["--pretrained"]):
        result = _eval(str(path), "--json", f"--keep={keep}", *extra)
        assert result.exit_code == 2 and "--keep" in result.stderr and "(0, 1]" in result.stderr
    with pytest.raises(ValueError, match="keep must be in"):
        ev.evaluate(make_events(sessions=2, per_session=10), "suggestion", keep=float(keep))


def test_threshold_for_keep_is_defined_for_any_keep() -> None:
    from heedls.server.acceptance.policy import threshold_for_keep

    scores = np.array([0.1, 0.2, 0.3, 0.4])
    assert threshold_for_keep(scores, 0.0) == 0.4 and threshold_for_keep(scores, -1.0) == 0.4  # keep nothing more
    assert threshold_for_keep(scores, math.nan) == 0.0 and threshold_for_keep(scores, 1.5) == 0.0  # show all
    assert threshold_for_keep(scores, 0.6) == 0.2  # floor(0.4 * 5) = 2nd lowest, as before


def test_input_files_that_cannot_be_evaluated_are_one_line_errors(tmp_path: Path) -> None:
    result = _eval(str(tmp_path), "--json")
    assert result.exit_code == 2 and result.stderr.strip() == f"heedls: {tmp_path}: not a file"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = _eval(str(empty), "--json")
    assert result.exit_code == 1 and "no event to evaluate" in result.stderr and result.stdout == ""
    bad = tmp_path / "bad.jsonl"
    row = make_events(sessions=1, per_session=1)[0].to_dict()
    bad.write_text("\n".join(["not json", json.dumps({**row, "outcome": "maybe"}), "[1]"]) + "\n")
    result = _eval(str(bad), "--json")
    assert result.exit_code == 1
    assert "all 3 non-blank line(s) are malformed; the first, line 1: not JSON" in result.stderr


def test_skipped_lines_are_explained_and_a_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [e.to_dict() for e in make_events(sessions=2, per_session=10, seed=3)]
    lines = [json.dumps(r) for r in rows]
    lines[2] = json.dumps({**rows[2], "outcome": "maybe"})
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # as some Windows tools write
    loaded = ev.read_events(path)
    assert len(loaded.events) == 19 and loaded.skipped == 1
    assert loaded.first_reason == "line 3: unknown outcome 'maybe'"
    result = _eval(str(path), "--json", "--model", "logreg", "--prior", "none", "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped_lines"] == 1
    assert "skipped 1 malformed line(s); the first, line 3: unknown outcome 'maybe'" in result.stderr


def test_model_and_prior_files_that_cannot_be_used_are_one_line_errors(tmp_path: Path) -> None:
    from heedls.server.acceptance.gate import default_model_path

    events = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=2, per_session=10), events)
    shipped = json.loads(default_model_path().read_text())
    files = {
        "ctx_only.json": ({**shipped, "stages": {k: v for k, v in shipped["stages"].items() if "context" in k}},
                          "it has no 'suggestion' stage (it has: context, context@local)"),
        "list.json": ([1, 2], "a JSON array, not a model object"),
        "partial.json": ({"format": shipped["format"], "version": "x", "stages": {"suggestion": {"stage": "s"}}},
                         "stage 'suggestion' has no 'features', 'kind', 'keep_accepted', 'threshold'"),
    }
    for name, (content, reason) in files.items():
        (tmp_path / name).write_text(json.dumps(content))
        result = _eval(str(events), "--json", "--pretrained", "--model-file", str(tmp_path / name))
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == f"heedls: cannot load model {tmp_path / name}: {reason}"
    (tmp_path / "garbage.json").write_bytes(b"\xff\xfe\x00garbage")
    result = _eval(str(events), "--json", "--pretrained", "--model-file", str(tmp_path / "garbage.json"))
    assert result.exit_code == 2 and "cannot load model" in result.stderr
    prior = tmp_path / "p.json.gz"
    with gzip.open(prior, "wt") as fh:
        fh.write("[1, 2]")
    result = _eval(str(events), "--json", "--prior", str(prior))
    assert result.exit_code == 2 and result.stderr.startswith(f"heedls: cannot load prior {prior}: malformed")


def test_options_that_do_nothing_together_say_so(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=2, per_session=10), events)
    result = _eval(str(events), "--json", "--model-file", "m.json", "--model", "logreg", "--prior", "none")
    assert result.exit_code == 0 and "--model-file is ignored without --pretrained" in result.stderr
    result = _eval(str(events), "--json", "--pretrained", "--prior", "none")
    assert result.exit_code == 0 and "--prior is ignored with --pretrained" in result.stderr


def test_an_id_on_several_lines_is_one_suggestion_in_its_last_state(tmp_path: Path) -> None:
    """Two exports (or push payloads) put one after another repeat every id: the figures are those
    of the file once, with a note, not of each suggestion counted twice."""
    once, twice = tmp_path / "once.jsonl", tmp_path / "twice.jsonl"
    events = make_events(sessions=3, per_session=20, seed=5)
    write_jsonl(events, once)
    twice.write_text(once.read_text() * 2)
    args = ("--stage", "suggestion", "--json", "--model", "logreg", "--prior", "none", "--jobs", "1")
    first, second = _eval(str(once), *args), _eval(str(twice), *args)
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert "60 line(s) repeat an earlier event's id" in second.stderr


def test_nothing_to_evaluate_is_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl([dataclasses.replace(e, outcome=None) for e in make_events(sessions=2, per_session=10)], path)
    result = _eval(str(path), "--stage", "suggestion", "--json", "--model", "logreg", "--prior", "none")
    assert result.exit_code == 1 and json.loads(result.stdout)["n"] == 0
    assert "nothing to evaluate" in result.stderr
