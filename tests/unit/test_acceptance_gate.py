"""The live gate: modes, decisions carry scores/threshold/version, status, bad files, refit."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from heedls.server.acceptance.evaluate import build_dataset
from heedls.server.acceptance.features import STAGE_FEATURES, session_histories
from heedls.server.acceptance.gate import ROWS_FILE, USER_MODEL, AcceptanceGate, build_gate
from heedls.server.acceptance.model import AcceptanceModel, StageModel, fit_stage
from heedls.server.config import GateConfig
from heedls.server.events import SuggestionEvent
from heedls.server.pipeline.gate import Gate

from tests.unit.test_acceptance_data import make_events


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events = make_events(sessions=4, per_session=50, seed=11)
    stages = {}
    for stage in ("context", "suggestion"):
        data = build_dataset(events, stage)
        stages[stage] = fit_stage(stage, STAGE_FEATURES[stage], data.X, data.y, data.groups, kind="logreg")
    path = tmp_path_factory.mktemp("model") / "m.json"
    AcceptanceModel("gate-test-1", stages).save(path)
    return path


def _run(gate: AcceptanceGate, n: int = 60) -> list[tuple[bool, bool]]:
    out = []
    history: list = []
    for event in make_events(sessions=1, per_session=n, seed=12):
        pending, event.suggestion = event.suggestion, None
        d1 = gate.stage1(event, history)
        event.suggestion = pending
        d2 = gate.stage2(event, history)
        if gate.mode != "off" and gate.model is not None:
            assert d1.model_version == "gate-test-1" and d1.score is not None and d1.threshold is not None
            assert d2.score is not None
        out.append((d1.show, d2.show))
        history.append(event)
    return out


def test_modes(model_file: Path) -> None:
    off = build_gate(GateConfig(mode="off"), None, model_path=model_file)
    assert isinstance(off, Gate)
    assert all(a and b for a, b in _run(off))
    assert off.status()["hidden_share"] == 0.0

    stage1 = build_gate(GateConfig(mode="stage1"), None, model_path=model_file)
    decisions = _run(stage1)
    assert all(b for _, b in decisions)  # stage 2 scored but never hides
    assert stage1.status()["hidden"] == 0

    cascade = build_gate(GateConfig(mode="cascade", keep_accepted=0.6), None, model_path=model_file)
    decisions = _run(cascade)
    status = cascade.status()
    assert status["hidden"] > 0 and status["requests"] == 60
    assert status["hidden_share"] == pytest.approx((status["skipped"] + status["hidden"]) / 60, abs=1e-4)
    assert status["model_version"] == "gate-test-1" and status["mode"] == "cascade"


def test_keep_target_moves_the_threshold(model_file: Path) -> None:
    strict = build_gate(GateConfig(keep_accepted=0.99), None, model_path=model_file)
    loose = build_gate(GateConfig(keep_accepted=0.5), None, model_path=model_file)
    event = make_events(sessions=1, per_session=1)[0]
    assert strict.stage2(event, []).threshold <= loose.stage2(event, []).threshold


def test_bad_model_file_means_pass_through(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "heedls.acceptance/1", "version": "x", "stages": {"context": {"kind": "nope"')
    with caplog.at_level(logging.WARNING):
        gate = build_gate(GateConfig(mode="cascade"), tmp_path, model_path=bad)
    assert "unusable" in caplog.text
    assert gate.model is None and all(a and b for a, b in _run(gate, 10))
    assert gate.status()["model_version"] is None


def _decide(gate: AcceptanceGate, events: list[SuggestionEvent], observe: bool = True) -> list[tuple]:
    """Each event through stage 1 (no suggestion yet), stage 2 and, once decided, observe()."""
    out = []
    history: list[SuggestionEvent] = []
    for event in events:
        decided = dataclasses.replace(event)
        event.outcome = None
        pending, event.suggestion = event.suggestion, None
        d1 = gate.stage1(event, history)
        event.suggestion = pending
        d2 = gate.stage2(event, history)
        decided.extra = event.extra
        if observe:
            gate.observe(decided)
        history.append(decided)
        out.append((d1, d2))
    return out


def test_a_data_dir_it_cannot_write_is_said_once_to_the_given_warn_not_on_every_decision(model_file: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the data directory should be")
    said: list[str] = []
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=1000), blocked, model_path=model_file, warn=said.append)
    _decide(gate, make_events(sessions=1, per_session=30, seed=14))
    assert gate.status()["user_events"] == 30  # it still learns from this session
    assert len(said) == 1 and "cannot store acceptance rows" in said[0]


def test_refit_installs_or_rolls_back_and_persists(model_file: Path, tmp_path: Path) -> None:
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=60), tmp_path, model_path=model_file)
    gate.background = False
    _decide(gate, make_events(sessions=1, per_session=120, seed=13))
    status = gate.status()
    assert status["user_events"] == 120
    assert status["refits"] + status["rollbacks"] >= 1
    assert (tmp_path / ROWS_FILE).exists()
    assert "def f(a, b)" not in (tmp_path / ROWS_FILE).read_text()  # feature rows only, no code
    if status["refits"]:
        assert (tmp_path / USER_MODEL).exists() and "+user" in status["model_version"]
        again = build_gate(GateConfig(mode="cascade"), tmp_path, model_path=model_file)
        assert again.status()["model_version"] == status["model_version"]  # the refit survives a restart


def test_background_refit_runs_in_its_own_process_and_installs(model_file: Path, tmp_path: Path) -> None:
    """In the server the fit (seconds of CPU with the prior rows) runs in a spawned, lower-priority
    process, so it never holds the server's GIL; the result is what the same fit gives in-process."""
    import os

    from heedls.server.acceptance.refit import fit_candidates, fit_candidates_in_process

    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=10_000), tmp_path, model_path=model_file)
    for event in make_events(sessions=1, per_session=80, seed=16):  # rows only: far below the refit minimum
        gate.stage1(event, [])
        gate.stage2(event, [])
        gate.observe(event)
    rows = sorted(gate._labelled(), key=lambda r: r["ts"])
    assert len(rows) == 80 and gate.model is not None
    args = (rows, gate.model.to_json(), 0.95, "accepted", {"context": "logreg", "suggestion": "logreg"}, False)
    here, here_report = fit_candidates(*args)
    there, there_report = fit_candidates_in_process(*args)
    assert there_report["pid"] != os.getpid() and here_report["pid"] == os.getpid()
    assert there == here
    assert {there_report[stage]["result"] for stage in ("context", "suggestion")} <= {"installed", "rolled back"}
    assert set(there) == {stage for stage in ("context", "suggestion") if there_report[stage]["result"] == "installed"}
    assert {k: v for k, v in there_report.items() if k not in ("pid", "ts")} == \
        {k: v for k, v in here_report.items() if k not in ("pid", "ts")}

    gate.background = True  # the server's path: the refit thread waits on the process
    gate._refit_inner(rows)
    status = gate.status()
    assert status["last_refit"]["pid"] != os.getpid()
    report = status["last_refit"]
    assert status["refits"] == int(bool(report["installed"]))  # one attempt: a refit if any stage was installed,
    assert status["rollbacks"] == int(bool(report["rolled_back"]))  # a rollback if any stage was rolled back


EXIT_DURING_REFIT = """
import multiprocessing, sys, threading, time
sys.path.insert(0, {root!r})
from tests.unit.test_acceptance_data import make_events
from heedls.server.acceptance.features import context_features, session_histories, suggestion_features
from heedls.server.acceptance.refit import RefitInterrupted, fit_candidates_in_process


def refit(*args):
    try:
        fit_candidates_in_process(*args)
    except RefitInterrupted:  # as the gate's refit thread takes an exit in the middle
        pass

if __name__ == "__main__":
    events = make_events(sessions=3, per_session=800, seed=1)
    rows = [{{"id": e.id, "session": e.session, "ts": e.ts, "accepted": e.outcome == "accepted",
              "context": context_features(e, h), "suggestion": suggestion_features(e, h)}}
            for e, h in zip(events, session_histories(events))]
    args = (rows, None, 0.95, "accepted", {{"context": "blend", "suggestion": "blend"}}, True)
    threading.Thread(target=refit, args=args, daemon=True).start()
    deadline = time.monotonic() + 30
    while not multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.02)  # until the worker has started (slow on a busy machine)
    time.sleep(0.3)  # the worker is fitting: 7 s of work or more
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)
"""


EXITING_SEEN_FROM_A_THREAD = """
import sys, threading, time
sys.path.insert(0, {root!r})
from heedls.server.acceptance import refit

def watch():
    seen = [refit._exiting()]
    main = threading.main_thread()
    main.join()  # the main thread is done: the process is exiting (atexit handlers run next)
    seen.append(refit._exiting())
    print(*seen, flush=True)

threading.Thread(target=watch).start()
time.sleep(0.2)
"""


def test_a_refit_thread_tells_an_exiting_process_from_a_running_one(tmp_path: Path) -> None:
    """When the process exits, multiprocessing's atexit handler ends the daemonic refit worker, and
    the refit thread's pipe breaks in whichever way the timing gives (an end of file before the
    worker's exit code is known, an OSError): that is an interruption, not a failure to report
    with a traceback. The refit thread asks `_exiting()`; it is False while the server runs."""
    import subprocess
    import sys

    script = tmp_path / "exiting.py"
    script.write_text(EXITING_SEEN_FROM_A_THREAD.format(root=str(Path(__file__).resolve().parents[2])))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["False", "True"], done.stderr


def test_a_server_that_exits_mid_refit_neither_waits_for_it_nor_leaves_it_running(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "exit_during_refit.py"
    script.write_text(EXIT_DURING_REFIT.format(root=str(Path(__file__).resolve().parents[2])))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()  # the server is about to exit, its refit worker fitting
        exiting = time.monotonic()
        proc.wait(timeout=60)
        took = time.monotonic() - exiting  # exit kills the worker; it need not wait for its 7+ s of work
        stderr = proc.stderr.read()
    finally:
        proc.kill()
    pids = [int(p) for p in line.split()]
    assert proc.returncode == 0 and len(pids) == 1, stderr
    assert took < 3.0, f"exit waited {took:.1f} s for the refit"
    assert "Traceback" not in stderr, stderr  # the worker's start-up read truncated rows
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pids[0], 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the refit worker outlived the server")


def test_class_balance_guard(model_file: Path, tmp_path: Path) -> None:
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=30), tmp_path, model_path=model_file)
    gate.background = False
    for event in make_events(sessions=1, per_session=40, seed=14):
        gate.stage1(event, [])
        gate.stage2(event, [])
        gate.observe(dataclasses.replace(event, outcome="rejected"))
    assert gate.status()["refits"] == 0
    assert "class balance" in gate.status()["last_refit"]["result"]


def test_decision_time_features_survive_without_code(model_file: Path) -> None:
    from heedls.server.acceptance.evaluate import build_dataset as build

    gate = build_gate(GateConfig(mode="cascade"), None, model_path=model_file)
    events = make_events(sessions=2, per_session=20, seed=15)
    for event, history in zip(events, session_histories(events)):
        gate.stage1(event, history)  # the server passes the session so far, decided events included
        gate.stage2(event, history)
    with_code = build(events, "suggestion")
    # as stored and exported: through JSON, code removed
    nocode = [SuggestionEvent.from_dict({**json.loads(e.to_json()), "prefix": None, "suffix": None, "suggestion": None})
              for e in events]
    stored = json.loads(events[0].to_json())["acceptance_features"]["context"]
    assert all(round(v, 4) == v for v in stored.values())  # 4 decimals on disk
    without = build(nocode, "suggestion")
    assert without.X.shape == with_code.X.shape
    assert 0 < abs(without.X - with_code.X).max() < 1e-3  # same rows, rounded


def test_reconfigure_keeps_counters_and_loads_the_model_when_turned_on(model_file: Path) -> None:
    gate = build_gate(GateConfig(mode="off"), None, model_path=model_file)
    _run(gate, 10)
    assert gate.model is None and gate.status()["requests"] == 10
    gate.reconfigure(GateConfig(mode="cascade", keep_accepted=0.9), model_path=model_file)
    assert gate.mode == "cascade" and gate.keep == 0.9 and gate.model is not None
    _run(gate, 10)
    assert gate.status()["requests"] == 20
    gate.reconfigure(GateConfig(mode="stage1", keep_accepted=7.0))  # a bad value keeps the old one
    assert gate.mode == "stage1" and gate.keep == 0.9


def test_provider_specific_stage_is_preferred(model_file: Path, tmp_path: Path) -> None:
    base = AcceptanceModel.load(model_file)
    strict = StageModel.from_json({**base.stages["suggestion"].to_json(), "threshold": 1.0,
                                   "positive_quantiles": []})
    model = AcceptanceModel("regimes-1", {**base.stages, "suggestion@local": strict})
    path = tmp_path / "regimes.json"
    model.save(path)
    gate = build_gate(GateConfig(mode="cascade"), None, model_path=path)
    event = make_events(sessions=1, per_session=1)[0]
    assert gate.stage2(dataclasses.replace(event, provider="local"), []).show is False  # the @local model
    other = gate.stage2(dataclasses.replace(event, provider="openai"), [])
    assert other.threshold == pytest.approx(base.stages["suggestion"].threshold, abs=1e-5)
    assert model.stage_for("context", "local") is base.stages["context"]  # no @local context: fallback


# ---------------------------------------------------------------------- robustness (audit of the gate API)


def test_a_non_finite_score_shows_the_suggestion_and_warns_once(model_file: Path) -> None:
    said: list[str] = []
    gate = build_gate(GateConfig(mode="cascade", keep_accepted=0.6), None, model_path=model_file, warn=said.append)
    assert gate.model is not None
    for stage in gate.model.stages.values():
        object.__setattr__(stage, "score", lambda row: float("nan"))  # e.g. a NaN feature value
    decisions = _decide(gate, make_events(sessions=1, per_session=20, seed=21), observe=False)
    assert all(d1.show and d2.show for d1, d2 in decisions)  # NaN >= threshold is False: never hide on it
    assert all(d1.score is None and d2.score is None for d1, d2 in decisions)  # no NaN in telemetry
    assert gate.status()["skipped"] == gate.status()["hidden"] == 0
    assert len(said) == 1 and "non-finite" in said[0]


def test_rows_with_a_non_finite_feature_are_not_learnt_from(model_file: Path, tmp_path: Path) -> None:
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=10_000), tmp_path, model_path=model_file)
    events = make_events(sessions=1, per_session=20, seed=22)
    history: list[SuggestionEvent] = []
    for i, event in enumerate(events):
        gate.stage1(event, history)
        gate.stage2(event, history)
        if i % 2:  # e.g. a provider's extra that slipped through as NaN
            row = gate._rows[event.id]["suggestion"]
            row[next(iter(row))] = float("nan")
        gate.observe(event)
        history.append(event)
    assert gate.status()["user_events"] == 10
    assert "NaN" not in (tmp_path / ROWS_FILE).read_text()


def test_a_refit_with_a_non_finite_candidate_is_rolled_back_not_installed(
        model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import math

    from heedls.server.acceptance import refit

    real = refit.fit_stage

    def broken(*args: object, **kwargs: object) -> StageModel:
        stage = real(*args, **kwargs)  # type: ignore[arg-type]
        stage.calibration.a = math.nan  # every prediction NaN
        return stage

    monkeypatch.setattr(refit, "fit_stage", broken)
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=60), tmp_path, model_path=model_file)
    gate.background = False
    _decide(gate, make_events(sessions=1, per_session=60, seed=13))
    status = gate.status()
    assert status["refits"] == 0 and status["rollbacks"] == 1
    assert status["model_version"] == "gate-test-1" and not (tmp_path / USER_MODEL).exists()
    report = status["last_refit"]
    assert report["result"] == "rolled back" and set(report["rolled_back"]) == {"context", "suggestion"}
    assert report["suggestion"]["reason"] == "candidate not finite"


def _weak_current(turned: bool) -> dict[str, Any]:
    """A current suggestion stage that knows one feature (the length): a candidate with all of them
    beats it. `turned`: its scores turned around (it ranks backwards)."""
    data = build_dataset(make_events(sessions=3, per_session=60, seed=28), "suggestion")
    length = STAGE_FEATURES["suggestion"].index("sugg_chars_log")
    weak = fit_stage("suggestion", ["sugg_chars_log"], data.X[:, [length]], data.y, data.groups, kind="logreg")
    current = AcceptanceModel("weak-1", {"suggestion": weak}).to_json()
    if turned:
        current["stages"]["suggestion"]["calibration"]["a"] *= -1
    return current


def _refit_where(monkeypatch: pytest.MonkeyPatch, model_file: Path, flat: str, per_session: int,
                 current: dict[str, Any]) -> dict[str, Any]:
    """The suggestion stage's refit report when the `flat` fit ("candidate" or "final") ranks nothing."""
    from heedls.server.acceptance import refit
    from heedls.server.acceptance.model import _constant_stage

    real = refit.fit_stage

    def flat_fit(*args: object, **kwargs: object) -> StageModel:
        stage = real(*args, **kwargs)  # type: ignore[arg-type]
        final = (kwargs.get("meta") or {}).get("source") == "user refit"  # type: ignore[union-attr]
        if final == (flat == "final"):
            return _constant_stage(stage.stage, stage.features, np.array([0.0, 1.0]), 0.95, {"reason": "does not rank"})
        return stage

    monkeypatch.setattr(refit, "fit_stage", flat_fit)
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=10_000), None, model_path=model_file)
    _decide(gate, make_events(sessions=3, per_session=per_session, seed=27))
    rows = sorted(gate._labelled(), key=lambda r: r["ts"])
    installed, report = refit.fit_candidates(rows, current, 0.95, "accepted",
                                             {"context": "logreg", "suggestion": "logreg"}, False)
    return {**report["suggestion"], "installed": "suggestion" in installed}


@pytest.mark.parametrize("flat", ["candidate", "final"])
def test_a_refit_that_ranks_nothing_replaces_only_a_stage_that_surely_ranks_backwards(
        model_file: Path, monkeypatch: pytest.MonkeyPatch, flat: str) -> None:
    # A fit whose held-out scores rank nothing shows everything (model.py). The candidate is judged
    # on the held-back rows, then fitted again on all rows; either may come out so. Neither replaces
    # a current stage that ranks the newest decisions, only one that ranks them backwards beyond
    # chance (below: what chance is).
    reason = "the candidate does not rank" if flat == "candidate" else "the refit on all rows does not rank"
    ranks = _refit_where(monkeypatch, model_file, flat, 40, _weak_current(turned=False))
    assert ranks["current_auc"] >= 0.5 and not ranks["installed"]
    if flat == "final":  # a constant candidate simply loses to it (AUC 0.5 against more)
        assert ranks["result"] == "rolled back" and ranks["reason"] == reason
    surely = _refit_where(monkeypatch, model_file, flat, 150, _weak_current(turned=True))
    assert surely["current_auc"] < 0.4 and surely["compared_on"] >= 80
    assert surely["installed"] and surely["result"] == "installed"
    from heedls.server.acceptance import refit

    monkeypatch.setattr(refit, "_ranks_backwards", lambda y, auc: False)  # as if too few rows to tell
    unsure = _refit_where(monkeypatch, model_file, flat, 150, _weak_current(turned=True))
    assert unsure["current_auc"] == surely["current_auc"] and not unsure["installed"]
    assert unsure["result"] == "rolled back" and unsure["reason"] == reason


def test_an_auc_under_one_half_is_ranking_backwards_only_beyond_chance() -> None:
    from heedls.server.acceptance.refit import _ranks_backwards

    few = np.array([1.0] * 10 + [0.0] * 70)  # 10 accepts among 80 held-back rows
    assert not _ranks_backwards(few, 0.44) and not _ranks_backwards(few, 0.35)  # chance gives these
    assert _ranks_backwards(few, 0.30) and _ranks_backwards(few, -1.0)  # -1: a current stage not finite
    many = np.array([1.0] * 100 + [0.0] * 700)
    assert _ranks_backwards(many, 0.44)  # the same AUC on ten times the rows is no longer chance
    assert not _ranks_backwards(np.ones(20), 0.0)  # one class: no AUC to speak of


def test_a_user_model_with_a_non_finite_threshold_is_ignored_with_a_warning(model_file: Path, tmp_path: Path) -> None:
    data = json.loads(model_file.read_text())
    data["version"] = "user-nan"
    data["stages"]["suggestion"]["threshold"] = float("nan")
    data["stages"]["suggestion"]["positive_quantiles"] = []
    (tmp_path / USER_MODEL).write_text(json.dumps(data))
    said: list[str] = []
    gate = build_gate(GateConfig(mode="cascade"), tmp_path, model_path=model_file, warn=said.append)
    assert gate.model_version == "gate-test-1"  # the shipped default
    assert any("unusable" in s and "threshold" in s for s in said)


def test_a_corrupt_tree_in_a_user_model_is_rejected_on_load_instead_of_hanging(tmp_path: Path) -> None:
    from heedls.server.acceptance.gate import default_model_path

    data = json.loads(default_model_path().read_text())
    tree = data["stages"]["context"]["gbm"]["trees"][0]
    tree["left"][0] = tree["right"][0] = 0  # a cycle: node 0 is its own child
    data["version"] = "user-cycle"
    (tmp_path / USER_MODEL).write_text(json.dumps(data))
    said: list[str] = []
    gate = build_gate(GateConfig(mode="cascade"), tmp_path, warn=said.append)
    assert gate.model_version is not None and gate.model_version != "user-cycle"
    assert any("unusable" in s for s in said)
    event = make_events(sessions=1, per_session=1)[0]
    event.suggestion = None
    assert gate.stage1(event, []).score is not None  # returns


def test_a_persistence_check_after_the_row_cache_moved_on_still_updates_the_label(
        model_file: Path, tmp_path: Path) -> None:
    from heedls.server.acceptance.gate import _ROW_CACHE

    gate = build_gate(GateConfig(mode="cascade", label="persisted", min_events_for_refit=10_000), tmp_path,
                      model_path=model_file)
    events = make_events(sessions=1, per_session=_ROW_CACHE + 50, seed=23)
    accepted = dataclasses.replace(events[0], outcome="accepted", persisted_30s=True)
    _decide(gate, [events[0]], observe=False)
    gate.observe(accepted)
    assert gate._stored[accepted.id]["persisted"] == 1
    _decide(gate, events[1:], observe=False)  # a busy ten minutes: the request has left the row cache
    assert accepted.id not in gate._rows
    gate.observe(dataclasses.replace(accepted, persisted_120s=False, persisted_600s=False))
    assert gate._stored[accepted.id]["persisted"] == 0
    again = build_gate(GateConfig(mode="cascade", label="persisted"), tmp_path, model_path=model_file)
    assert again._stored[accepted.id]["persisted"] == 0  # and that is what was written down


def _with_local_stages(model_file: Path, path: Path) -> AcceptanceModel:
    base = AcceptanceModel.load(model_file)
    local = {f"{name}@local": StageModel.from_json({**stage.to_json(), "meta": {"regime": "local"}})
             for name, stage in base.stages.items()}
    model = AcceptanceModel("regimes-2", {**base.stages, **local})
    model.save(path)
    return model


def test_a_partial_rollback_keeps_exactly_what_served_the_rolled_back_stage(
        model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import heedls.server.acceptance.gate as gate_module

    shipped = _with_local_stages(model_file, tmp_path / "regimes.json")
    data_dir = tmp_path / "data"
    gate = build_gate(GateConfig(mode="cascade"), data_dir, model_path=tmp_path / "regimes.json")
    gate.background = False
    refitted = {**shipped.stages["context"].to_json(), "meta": {"source": "user refit"}}
    monkeypatch.setattr(gate_module, "fit_candidates", lambda *args: (
        {"context": refitted}, {"n": 200, "context": {"result": "installed"}, "suggestion": {"result": "rolled back"}}))
    gate._refit_inner([])
    assert gate.model is not None
    assert gate.model.stage_for("suggestion", "local").meta == {"regime": "local"}  # still suggestion@local
    assert gate.model.stage_for("context", "local").meta == {"source": "user refit"}  # refitted: for every provider
    assert set(gate.model.stages) == {"context", "suggestion", "suggestion@local"}
    status = gate.status()
    assert status["refits"] == 1 and status["rollbacks"] == 1
    assert status["last_refit"]["result"] == "partly installed"
    assert status["last_refit"]["rolled_back"] == ["suggestion"] and status["last_refit"]["installed"] == ["context"]
    again = build_gate(GateConfig(mode="cascade"), data_dir, model_path=tmp_path / "regimes.json")
    assert again.model_version == gate.model_version  # a user model with a provider stage loads
    assert again.model is not None and again.model.stage_for("suggestion", "local").meta == {"regime": "local"}


def test_stage_2_recomputes_the_context_when_the_provider_changed_after_stage_1(model_file: Path) -> None:
    from heedls.server.acceptance.features import stored_features, suggestion_features

    gate = build_gate(GateConfig(mode="cascade"), None, model_path=model_file)
    events = make_events(sessions=1, per_session=12, seed=24)
    history, event = events[:-1], events[-1]
    pending, event.suggestion = event.suggestion, None
    event.provider = "openai"
    gate.stage1(event, history)
    served_context = dict(gate._rows[event.id]["context"])
    event.suggestion, event.provider = pending, "local"  # the engine fell back to the local provider
    gate.stage2(event, history)
    expected = suggestion_features(event, history)  # what evaluation and a refit compute
    assert expected["provider_local"] == 1.0
    assert gate._rows[event.id]["suggestion"] == expected
    assert gate._rows[event.id]["context"] == served_context  # stage 1's row stays as it was served
    stored = stored_features(event, "suggestion")  # what a nocode export says (and evaluation reads)
    assert stored is not None and {k: stored[k] for k in expected} == pytest.approx(expected)


def test_an_event_with_extra_none_is_decided(model_file: Path) -> None:
    gate = build_gate(GateConfig(mode="cascade"), None, model_path=model_file)
    event = make_events(sessions=1, per_session=1, seed=25)[0]
    event.extra = None  # type: ignore[assignment]
    gate.stage1(event, [])
    assert gate.stage2(event, []).score is not None
    assert set(event.extra["acceptance_features"]) == {"context", "suggestion"}


def _refits_that_always_fail_the_guard(model_file: Path, tmp_path: Path, min_events: int, decisions: int,
                                       seed: int) -> tuple[AcceptanceGate, list[int], list[SuggestionEvent]]:
    """A gate deciding `decisions` events of one class only, so that every refit attempt runs the
    guards in full and fails the class balance; (the gate, one entry per attempt, the events)."""
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=min_events), tmp_path, model_path=model_file)
    gate.background = False
    attempts: list[int] = []
    real = gate.maybe_refit
    gate.maybe_refit = lambda: attempts.append(1) or real()  # type: ignore[method-assign]
    events = make_events(sessions=1, per_session=decisions, seed=seed)
    for event in events:
        event.outcome = "rejected"
    _decide(gate, events)
    return gate, attempts, events


def test_rows_are_capped_the_file_is_compacted_and_a_failed_guard_waits(
        model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import heedls.server.acceptance.gate as gate_module

    monkeypatch.setattr(gate_module, "MAX_ROWS", 40, raising=False)
    monkeypatch.setattr(gate_module, "COMPACT_AT", 80, raising=False)
    gate, attempts, events = _refits_that_always_fail_the_guard(model_file, tmp_path, 20, 150, seed=26)
    assert gate.status()["last_refit"]["result"] == "skipped: class balance"
    assert len(attempts) <= 150 // gate_module.REFIT_EVERY + 1  # not on every decision after a failure
    assert len(gate._stored) == 40 and list(gate._stored) == [e.id for e in events[-40:]]  # the newest
    lines = (tmp_path / ROWS_FILE).read_text().splitlines()
    assert len(lines) <= 80  # compacted
    assert {json.loads(line)["id"] for line in lines} >= {e.id for e in events[-40:]}
    again = build_gate(GateConfig(mode="cascade"), tmp_path, model_path=model_file)
    assert list(again._stored) == [e.id for e in events[-40:]]
    assert not list(tmp_path.glob("*.tmp"))


def test_two_servers_sharing_the_data_directory_lose_no_rows_to_each_others_compaction(
        model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Server B decides while server A rewrites the rows file: B's rows wait (the file is locked)
    and follow A's new file with B's next row, instead of being appended to the file A replaces."""
    import heedls.server.acceptance.gate as gate_module

    monkeypatch.setattr(gate_module, "MAX_ROWS", 40, raising=False)
    monkeypatch.setattr(gate_module, "COMPACT_AT", 60, raising=False)
    a = build_gate(GateConfig(mode="cascade", min_events_for_refit=10_000), tmp_path, model_path=model_file)
    b = build_gate(GateConfig(mode="cascade", min_events_for_refit=10_000), tmp_path, model_path=model_file)
    a.background = b.background = False
    first, during, after = (make_events(sessions=1, per_session=n, seed=s) for n, s in ((61, 41), (3, 42), (1, 43)))
    for events, prefix in ((first, "a"), (during, "b"), (after, "b2")):
        for event in events:
            event.id, event.session = f"{prefix}-{event.id}", prefix
    real = gate_module._latest_lines

    def b_decides_meanwhile(path: Path) -> Any:
        read = real(path)
        _decide(b, during)  # while A holds the file: B finds it locked
        return read

    monkeypatch.setattr(gate_module, "_latest_lines", b_decides_meanwhile)
    _decide(a, first)  # the 61st row starts A's compaction
    monkeypatch.setattr(gate_module, "_latest_lines", real)
    ids = [json.loads(line)["id"] for line in (tmp_path / ROWS_FILE).read_text().splitlines()]
    assert len(ids) == 40 and not any(i.startswith("b-") for i in ids)  # compacted; B's rows wait
    _decide(b, after)
    ids = [json.loads(line)["id"] for line in (tmp_path / ROWS_FILE).read_text().splitlines()]
    assert ids[40:] == [e.id for e in during + after]


def test_files_are_replaced_through_temporary_names_of_their_own(
        model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers may share the data directory: they never write the same temporary file."""
    import os

    import heedls.server.acceptance.gate as gate_module

    replaced: list[tuple[str, str]] = []
    real = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        replaced.append((Path(src).name, Path(dst).name))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    gate = build_gate(GateConfig(mode="cascade"), tmp_path, model_path=model_file)
    gate.background = False
    stage = AcceptanceModel.load(model_file).stages["context"].to_json()
    monkeypatch.setattr(gate_module, "fit_candidates", lambda *args: (
        {"context": stage}, {"context": {"result": "installed"}, "suggestion": {"result": "rolled back"}}))
    gate._refit_inner([])
    gate._refit_inner([])  # the second one keeps the first as acceptance-user.prev.json
    assert {dst for _, dst in replaced} == {USER_MODEL, "acceptance-user.prev.json"}
    temporaries = [src for src, _ in replaced]
    assert len(set(temporaries)) == len(temporaries) == 3
    assert all(src.endswith(".tmp") and f".{os.getpid()}." in src for src in temporaries)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_user_model_is_compared_only_on_rows_newer_than_those_it_was_trained_on(model_file: Path) -> None:
    """After a user refit, the held-back 20 % overlaps what the current (user) model was trained
    on: scored on its own training rows it would look better than it is."""
    from heedls.server.acceptance.refit import MIN_NEWER_ROWS, fit_candidates

    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=10_000), None, model_path=model_file)
    _decide(gate, make_events(sessions=2, per_session=100, seed=27))
    rows = sorted(gate._labelled(), key=lambda r: r["ts"])
    assert len(rows) == 200  # held back: the newest 40
    kinds = {"context": "logreg", "suggestion": "logreg"}
    assert gate.model is not None

    def user_model(trained_until: int) -> dict:
        stages = {name: StageModel.from_json({**stage.to_json(), "meta": {"source": "user refit",
                                                                         "trained_until_ts": rows[trained_until]["ts"]}})
                  for name, stage in gate.model.stages.items()}
        return AcceptanceModel("gate-test-1+user1", stages).to_json()

    _, report = fit_candidates(rows, user_model(199 - (MIN_NEWER_ROWS - 1)), 0.95, "accepted", kinds, False)
    assert report["suggestion"] == {"result": "waiting", "newer_rows": MIN_NEWER_ROWS - 1, "needed": MIN_NEWER_ROWS}
    _, report = fit_candidates(rows, user_model(199 - 35), 0.95, "accepted", kinds, False)
    assert report["suggestion"]["compared_on"] == 35 and report["suggestion"]["result"] in ("installed", "rolled back")
    _, report = fit_candidates(rows, gate.model.to_json(), 0.95, "accepted", kinds, False)
    assert report["suggestion"]["compared_on"] == 40  # the shipped model never saw these rows

    installed, _ = fit_candidates(rows, None, 0.95, "accepted", kinds, False)  # vs the base rate
    assert "suggestion" in installed
    meta = installed["suggestion"]["meta"]
    assert meta["trained_until_ts"] == rows[-1]["ts"] and meta["trained_rows"] == 200  # for the next refit


def test_a_user_model_waits_for_enough_newer_rows_even_when_every_held_back_row_is_newer(model_file: Path) -> None:
    """A user refit trained before all of the held-back rows: 18 of them judged it before."""
    from heedls.server.acceptance.refit import MIN_NEWER_ROWS, fit_candidates

    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=10_000), None, model_path=model_file)
    _decide(gate, make_events(sessions=2, per_session=45, seed=31))
    rows = sorted(gate._labelled(), key=lambda r: r["ts"])
    assert gate.model is not None
    stages = {name: StageModel.from_json({**stage.to_json(), "meta": {"source": "user refit",
                                                                     "trained_until_ts": rows[0]["ts"] - 1}})
              for name, stage in gate.model.stages.items()}
    _, report = fit_candidates(rows, AcceptanceModel("u", stages).to_json(), 0.95, "accepted",
                               {"context": "logreg", "suggestion": "logreg"}, False)
    assert report["holdout"] < MIN_NEWER_ROWS
    assert report["suggestion"] == {"result": "waiting", "newer_rows": report["holdout"], "needed": MIN_NEWER_ROWS}


def test_at_the_row_cap_refits_are_still_tried_every_refit_every_rows(
        model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import heedls.server.acceptance.gate as gate_module

    monkeypatch.setattr(gate_module, "MAX_ROWS", 40, raising=False)
    _, attempts, _ = _refits_that_always_fail_the_guard(model_file, tmp_path, 40, 140, seed=32)
    assert len(attempts) <= 140 // gate_module.REFIT_EVERY + 2  # it was one per decision at the cap


def test_a_hand_edited_or_damaged_rows_file_costs_its_bad_lines_only(model_file: Path, tmp_path: Path) -> None:
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=10_000), tmp_path, model_path=model_file)
    _decide(gate, make_events(sessions=1, per_session=30, seed=33))
    path = tmp_path / ROWS_FILE
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["accepted"] = "yes"  # refits failed on it at every attempt (int("yes"))
    second = json.loads(lines[1])
    second["ts"] = "yesterday"
    path.write_bytes(("\n".join([json.dumps(first), json.dumps(second), *lines[2:]]) + "\n").encode()
                     + b"\xff\xfe not utf-8\n")  # one bad byte dropped the whole history at every start
    again = build_gate(GateConfig(mode="cascade", min_events_for_refit=10_000), tmp_path, model_path=model_file)
    assert len(again._stored) == 28
    assert again.maybe_refit() is False  # and no exception: the guard reads only valid rows


def test_a_gate_replaced_mid_refit_saves_nothing(model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Telemetry turned off while a refit ran: the old gate's refit still wrote the user model."""
    from heedls.server.acceptance import gate as gate_module

    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=60), tmp_path, model_path=model_file)
    gate.background = False
    real = gate_module.fit_candidates

    def fit_while_replaced(*args: Any) -> Any:
        gate.retire()  # what the server does when the settings move the learning
        return real(*args)

    monkeypatch.setattr(gate_module, "fit_candidates", fit_while_replaced)
    rows_before = (tmp_path / ROWS_FILE)
    _decide(gate, make_events(sessions=1, per_session=60, seed=34))
    assert gate.status()["last_refit"] is not None
    assert not (tmp_path / USER_MODEL).exists()
    size = rows_before.stat().st_size
    _decide(gate, make_events(sessions=1, per_session=5, seed=35))
    assert rows_before.stat().st_size == size  # and no row is written any more


@pytest.mark.parametrize(("path", "value"), [(("threshold",), 2.0), (("calibration", "a"), 1e308),
                                             (("positive_quantiles",), [0.1, 1.5])])
def test_a_user_model_with_impossible_numbers_is_ignored_with_a_warning(
        model_file: Path, tmp_path: Path, path: tuple[str, ...], value: Any) -> None:
    """Finite but impossible (a probability threshold of 2, a calibration slope of 1e308): every
    request was skipped without a word."""
    data = json.loads(model_file.read_text())
    data["version"] = "user-impossible"
    node = data["stages"]["context"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (tmp_path / USER_MODEL).write_text(json.dumps(data))
    warnings: list[str] = []
    gate = build_gate(GateConfig(mode="cascade"), tmp_path, model_path=model_file, warn=warnings.append)
    assert gate.status()["model_version"] == "gate-test-1"  # the default, not the broken file
    assert warnings


def test_turning_refits_on_or_off_live_serves_what_a_restart_would(model_file: Path, tmp_path: Path) -> None:
    data = json.loads(model_file.read_text())
    data["version"] = "gate-test-1+user1"
    (tmp_path / USER_MODEL).write_text(json.dumps(data))
    gate = build_gate(GateConfig(mode="cascade", refit=False), tmp_path, model_path=model_file)
    assert gate.model_version == "gate-test-1"
    gate.reconfigure(GateConfig(mode="cascade", refit=True), model_path=model_file)
    assert gate.model_version == "gate-test-1+user1"  # the learned model, as after a restart
    gate.reconfigure(GateConfig(mode="cascade", refit=False), model_path=model_file)
    assert gate.model_version == "gate-test-1"


def test_gates_rebuilt_by_settings_changes_refit_one_at_a_time(
        model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each settings change that rebuilds the gate (gate mode off and on, telemetry off and on)
    made a gate that refit on its first rows while the replaced gates' refits ran on: 100 changes
    in a long session left 20 refit threads (and workers) at once. One refit runs at a time."""
    import threading

    from heedls.server.acceptance import gate as gate_module

    release = threading.Event()
    running: list[int] = []
    most = [0]
    lock = threading.Lock()

    def slow_fit(*args: Any) -> Any:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        release.wait(5)
        with lock:
            running.pop()
        raise RuntimeError("not this time")  # the gate keeps its model

    monkeypatch.setattr(gate_module, "fit_candidates_in_process", slow_fit)
    first = build_gate(GateConfig(mode="cascade", min_events_for_refit=60), tmp_path, model_path=model_file)
    _decide(first, make_events(sessions=1, per_session=60, seed=40))  # its first refit starts
    gates = [first]
    for _ in range(3):  # gates built over its rows file, as settings changes build them, each refitting
        gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=60), tmp_path, model_path=model_file)
        gate.maybe_refit()  # what its first new decision does (the rows to learn from are there)
        gates.append(gate)
    release.set()
    for thread in [t for t in threading.enumerate() if t.name == "heedls-gate-refit"]:
        thread.join(5)
    assert most[0] == 1  # 4 before
    again = gates[-1]
    again._since_refit = 0
    assert again.maybe_refit() is True  # the slot is free again once the refit ended
    for thread in [t for t in threading.enumerate() if t.name == "heedls-gate-refit"]:
        thread.join(5)


def test_a_refit_that_cannot_start_its_thread_leaves_the_next_one_free(
        model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process at its thread limit: the refit is skipped with a warning, and neither this gate nor
    any other is left waiting for a refit that never ran."""
    import threading

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=60), tmp_path, model_path=model_file)
    _decide(gate, make_events(sessions=1, per_session=60, seed=41))  # its first refit cannot start
    monkeypatch.undo()
    assert gate.maybe_refit() is True  # before: the slot stayed taken, no refit ever again
    for thread in [t for t in threading.enumerate() if t.name == "heedls-gate-refit"]:
        thread.join(10)


_TAKEN_FEATURE = "rel_position"  # in both stages' features


def _row_of(value: float, stage: str) -> dict[str, float]:
    return {**dict.fromkeys(STAGE_FEATURES[stage], 0.0), _TAKEN_FEATURE: value}


def _user_rows(rng: Any, n: int = 400) -> list[dict[str, Any]]:
    """One user's decided rows: they take a suggestion when the feature is past 0.4."""
    return [{"id": f"u{i}", "session": "me", "ts": 1000.0 + i, "provider": "local", "accepted": int(v > 0.4),
             "persisted": None, "context": _row_of(v, "context"), "suggestion": _row_of(v, "suggestion")}
            for i, v in enumerate(rng.random(n))]


def test_a_refit_keeps_the_target_share_of_this_users_accepts_not_of_everyones(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other people's decisions (the shipped human prior rows) train the user's refit but do not set
    its threshold: a user who also takes what other people take less often is kept >= 95 % of what
    they take, where a threshold for everyone (mostly other people's accepts) hid a share of theirs."""
    import numpy as np
    from heedls.server.acceptance import prior as prior_module
    from heedls.server.acceptance.prior import Prior, PriorSource, StageRows
    from heedls.server.acceptance.refit import fit_candidates

    rng = np.random.default_rng(3)
    rows = _user_rows(rng)  # this user takes anything past 0.4, other people only what is past 0.8
    people = rng.random(6000)
    stages = {stage: StageRows(tuple(STAGE_FEATURES[stage]),
                               np.array([[_row_of(v, stage)[n] for n in STAGE_FEATURES[stage]] for v in people]),
                               (people > 0.8).astype(float), tuple(f"p{i % 30}" for i in range(people.size)))
              for stage in ("context", "suggestion")}
    others = Prior((PriorSource("people", "human", frozenset(f"p{i}" for i in range(30)), stages, {}),))
    monkeypatch.setattr(prior_module, "load_shipped_prior", lambda: others)

    installed, report = fit_candidates(rows, None, 0.95, "accepted", {"context": "logreg", "suggestion": "logreg"},
                                       True)
    for stage in ("context", "suggestion"):
        assert report[stage]["result"] == "installed"
        # what it and the current model (none: the base rate, which shows all) keep of the held-back accepts
        assert report[stage]["candidate_kept"] >= 0.9 and report[stage]["current_kept"] == 1.0
        fitted = StageModel.from_json(installed[stage])
        assert fitted.meta["prior_sources"] == ["people"]  # they trained it
        taken = [fitted.score(r[stage]) for r in rows if r["accepted"]]
        kept = sum(score >= fitted.threshold for score in taken) / len(taken)
        assert kept >= 0.95, (stage, kept)


def test_a_refit_that_hides_more_of_the_users_accepts_than_its_target_allows_is_rolled_back(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A candidate that ranks as well but shows fewer of the held-back accepted rows than the current
    model, and fewer than the keep target allows by chance (binomial, 1 %), is not installed."""
    import numpy as np
    from heedls.server.acceptance import refit as refit_module
    from heedls.server.acceptance.refit import fit_candidates

    rows = _user_rows(np.random.default_rng(4))
    real_fit = refit_module.fit_stage

    def too_strict(stage: str, *args: Any, **kw: Any) -> StageModel:
        fitted = real_fit(stage, *args, **kw)  # its threshold moved up to hide half of what the user takes
        return dataclasses.replace(fitted, threshold=fitted.score(_row_of(0.7, stage)))

    kinds = {"context": "logreg", "suggestion": "logreg"}
    monkeypatch.setattr(refit_module, "fit_stage", too_strict)
    installed, report = fit_candidates(rows, None, 0.95, "accepted", kinds, False)
    assert installed == {}
    for stage in ("context", "suggestion"):
        assert report[stage]["result"] == "rolled back"
        assert report[stage]["reason"] == "keeps too few of the held-back accepts"
        assert report[stage]["candidate_auc"] >= report[stage]["current_auc"]  # it ranks no worse
        assert report[stage]["candidate_kept"] < 0.8 and report[stage]["current_kept"] == 1.0
    monkeypatch.setattr(refit_module, "fit_stage", real_fit)
    installed, report = fit_candidates(rows, None, 0.95, "accepted", kinds, False)
    assert set(installed) == {"context", "suggestion"}, report
