"""The live gate: modes, decisions carry scores/threshold/version, status, bad files, refit."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

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


def test_a_data_dir_it_cannot_write_is_said_once_to_the_given_warn_not_on_every_decision(model_file: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the data directory should be")
    said: list[str] = []
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=1000), blocked, model_path=model_file, warn=said.append)
    history: list = []
    for event in make_events(sessions=1, per_session=30, seed=14):
        decided = dataclasses.replace(event)
        event.outcome = None
        pending, event.suggestion = event.suggestion, None
        gate.stage1(event, history)
        event.suggestion = pending
        gate.stage2(event, history)
        gate.observe(decided)
        history.append(decided)
    assert gate.status()["user_events"] == 30  # it still learns from this session
    assert len(said) == 1 and "cannot store acceptance rows" in said[0]


def test_refit_installs_or_rolls_back_and_persists(model_file: Path, tmp_path: Path) -> None:
    gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=60), tmp_path, model_path=model_file)
    gate.background = False
    history: list = []
    for event in make_events(sessions=1, per_session=120, seed=13):
        decided = dataclasses.replace(event)
        event.outcome = None
        pending, event.suggestion = event.suggestion, None
        gate.stage1(event, history)
        event.suggestion = pending
        gate.stage2(event, history)
        gate.observe(decided)
        history.append(decided)
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
    assert gate.status()["last_refit"]["pid"] != os.getpid()
    assert gate.status()["refits"] + gate.status()["rollbacks"] == 1


EXIT_DURING_REFIT = """
import multiprocessing, sys, threading, time
sys.path.insert(0, {root!r})
from tests.unit.test_acceptance_data import make_events
from heedls.server.acceptance.features import context_features, session_histories, suggestion_features
from heedls.server.acceptance.refit import fit_candidates_in_process

if __name__ == "__main__":
    events = make_events(sessions=3, per_session=800, seed=1)
    rows = [{{"id": e.id, "session": e.session, "ts": e.ts, "accepted": e.outcome == "accepted",
              "context": context_features(e, h), "suggestion": suggestion_features(e, h)}}
            for e, h in zip(events, session_histories(events))]
    args = (rows, None, 0.95, "accepted", {{"context": "blend", "suggestion": "blend"}}, True)
    threading.Thread(target=fit_candidates_in_process, args=args, daemon=True).start()
    time.sleep(0.5)  # the worker is fitting: about 7 s of work on this machine
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)
"""


def test_a_server_that_exits_mid_refit_neither_waits_for_it_nor_leaves_it_running(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "exit_during_refit.py"
    script.write_text(EXIT_DURING_REFIT.format(root=str(Path(__file__).resolve().parents[2])))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    pids = [int(p) for p in done.stdout.split()]
    assert done.returncode == 0 and len(pids) == 1, done.stderr
    assert took < 4.0, f"exit waited {took:.1f} s for the refit"
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
    strict = StageModel.from_json({**base.stages["suggestion"].to_json(), "threshold": 1.01,
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
