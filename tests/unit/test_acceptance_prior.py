"""Prior rows: every fit also learns from other data, never from the data it is judged on."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from heedls.server.acceptance import evaluate as ev
from heedls.server.acceptance import gate as gate_module
from heedls.server.acceptance import model as model_module
from heedls.server.acceptance import refit as refit_module
from heedls.server.acceptance.evaluate import auc, build_dataset
from heedls.server.acceptance.features import STAGE_FEATURES
from heedls.server.acceptance.gate import build_gate
from heedls.server.acceptance.model import AcceptanceModel, fit_stage
from heedls.server.acceptance.prior import Prior, PriorSource, StageRows, load_shipped_prior
from heedls.server.cli import app
from heedls.server.config import GateConfig
from heedls.server.events import write_jsonl
from typer.testing import CliRunner

from tests.unit.test_acceptance_data import make_events


def _source(name: str, kind: str, events: list[Any]) -> PriorSource:
    stages = {}
    for stage in ("context", "suggestion"):
        data = build_dataset(events, stage)
        stages[stage] = StageRows(STAGE_FEATURES[stage], data.X, data.y, tuple(data.groups.tolist()))
    return PriorSource(name, kind, frozenset(e.session for e in events), stages, {})  # type: ignore[arg-type]


def _renamed(events: list[Any], tag: str) -> list[Any]:
    return [dataclasses.replace(e, session=f"{tag}-{e.session}", id=f"{tag}-{e.id}") for e in events]


@pytest.fixture(scope="module")
def prior() -> Prior:
    return Prior((_source("people", "human", _renamed(make_events(sessions=6, per_session=60, seed=21), "p")),
                  _source("replayed", "replay", _renamed(make_events(sessions=6, per_session=60, seed=22), "r"))))


def test_round_trip_keeps_rows_and_maps_features_by_name(prior: Prior, tmp_path: Path) -> None:
    path = tmp_path / "prior.json.gz"
    prior.save(path)
    back = Prior.load(path)
    assert [s.name for s in back.sources] == ["people", "replayed"]
    rows = back.sources[0].stages["suggestion"]
    np.testing.assert_allclose(rows.X, prior.sources[0].stages["suggestion"].X, rtol=1e-4, atol=1e-6)
    # A model with other features: known ones are taken by name, unknown ones are 0 (as unknown values are).
    names = ["sugg_chars_log", "a_feature_from_the_future"]
    found = back.rows("suggestion", names, set(), False)
    assert found is not None
    X, y, used = found.X, found.y, found.used
    assert X.shape == (y.size, 2) and not X[:, 1].any()
    assert X[:, 0].any() and used == ["people", "replayed"]
    assert rows.groups == prior.sources[0].stages["suggestion"].groups  # session ids survive the file


def test_a_prior_file_without_session_ids_still_trains_but_never_calibrates(prior: Prior, tmp_path: Path) -> None:
    path = tmp_path / "old.json.gz"
    prior.save(path)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    for source in data["sources"]:  # as written before 2026-11-29
        for stage in source["stages"].values():
            del stage["groups"]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(data, fh)
    found = Prior.load(path).rows("context", STAGE_FEATURES["context"], {"someone-else"}, False)
    assert found is not None and found.y.size == 720 and (found.groups == "").all()


def test_never_used_on_data_it_could_overlap(prior: Prior) -> None:
    names = STAGE_FEATURES["context"]
    people = next(iter(prior.sources[0].sessions))
    found = prior.rows("context", names, {people}, False)
    assert found is not None and found[2] == ["replayed"]  # sharing a session drops that source
    found = prior.rows("context", names, {"someone-else"}, True)
    assert found is not None and found[2] == ["people"]  # replayed targets never get a replay prior
    assert (found.groups == "").all()  # nor does anyone's row calibrate for them: they are not people
    assert prior.rows("context", names, {people}, True) is None
    assert prior.rows("context", names, {"someone-else"}, False, "persisted") is None  # rows carry `accepted`


def test_replayed_rows_never_calibrate_and_other_peoples_rows_do_as_sessions_of_their_own(
        prior: Prior, monkeypatch: pytest.MonkeyPatch) -> None:
    target = make_events(sessions=4, per_session=30, seed=23)
    data = build_dataset(target, "suggestion")
    found = prior.rows("suggestion", STAGE_FEATURES["suggestion"], set(), False)
    assert found is not None
    people = found.groups != ""
    assert people.sum() == 360 and all(g.startswith("people:") for g in found.groups[people])
    sizes: list[int] = []
    folds: list[int] = []
    real_platt, real_folds = model_module.Platt.fit, model_module._inner_folds

    def spy(raw: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> model_module.Platt:
        sizes.append(y.size)
        return real_platt(raw, y, l2)

    def spy_folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
        folds.append(len(set(groups.tolist())))
        return real_folds(groups, k, seed)

    monkeypatch.setattr(model_module.Platt, "fit", staticmethod(spy))
    monkeypatch.setattr(model_module, "_inner_folds", spy_folds)
    alone = fit_stage("suggestion", STAGE_FEATURES["suggestion"], data.X, data.y, data.groups, kind="logreg",
                      prior=found.only_training())
    assert sizes == [data.y.size] and folds == [4]  # rows that do not calibrate only train
    assert alone.meta["n"] == data.y.size and alone.meta["prior_rows"] == found.y.size
    sizes.clear()
    folds.clear()
    joined = fit_stage("suggestion", STAGE_FEATURES["suggestion"], data.X, data.y, data.groups, kind="logreg",
                       prior=found)
    assert sizes == [data.y.size + 360] and folds == [4 + 6]  # the 6 people's sessions, not the replay's
    assert joined.meta["calibration_rows"] == data.y.size + 360 and joined.meta["n"] == data.y.size
    numbered = fit_stage("suggestion", STAGE_FEATURES["suggestion"], data.X, data.y,
                         np.unique(data.groups, return_inverse=True)[1], kind="logreg",
                         prior=found)  # sessions as numbers
    assert numbered.meta["calibration_rows"] == data.y.size + 360


def test_a_small_target_learns_from_the_prior(prior: Prior) -> None:
    small = make_events(sessions=3, per_session=8, seed=24)  # 24 decisions: too few to learn much alone
    test = make_events(sessions=2, per_session=80, seed=25)
    names = STAGE_FEATURES["suggestion"]
    data, held = build_dataset(small, "suggestion"), build_dataset(test, "suggestion")
    found = prior.rows("suggestion", names, set(data.groups.tolist()), False)
    assert found is not None
    alone = fit_stage("suggestion", names, data.X, data.y, data.groups, kind="logreg")
    helped = fit_stage("suggestion", names, data.X, data.y, data.groups, kind="logreg",
                       prior=found.only_training())
    assert (auc(held.y, helped.predict(held.X)) or 0) > (auc(held.y, alone.predict(held.X)) or 0) + 0.02


def test_evaluation_adds_the_prior_to_every_fold_and_says_so(prior: Prior) -> None:
    events = make_events(sessions=4, per_session=30, seed=26)
    result = ev.evaluate(events, "suggestion", kind="logreg", prior=prior)
    assert result["model"]["prior_sources"] == ["people", "replayed"]
    assert result["model"]["prior_rows"] == 720
    assert "plus 720 prior rows" in result["protocol"] and "none of them from this file's sessions" in result["protocol"]
    assert result["model"]["prior_rows_calibrating"] == 360  # the people's rows, not the replay's
    assert "the 360 prior rows of other people" in result["protocol"]
    # Evaluated on the prior's own data, the prior is not used at all: same figures as without it.
    own = _renamed(make_events(sessions=6, per_session=60, seed=21), "p")
    with_prior = ev.evaluate(own, "suggestion", kind="logreg", prior=Prior(prior.sources[:1]))
    without = ev.evaluate(own, "suggestion", kind="logreg")
    assert with_prior["model"]["prior_rows"] == 0
    assert {k: with_prior[k] for k in ("auc", "hidden_rejected_at_95", "ece")} == \
        {k: without[k] for k in ("auc", "hidden_rejected_at_95", "ece")}
    # The prior's labels are `accepted`: a `persisted` evaluation learns from the file alone.
    assert ev.evaluate(events, "suggestion", label="persisted", kind="logreg", prior=prior)["model"]["prior_rows"] == 0


def test_cli_uses_the_shipped_prior_unless_told_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=3, per_session=20, seed=27), path)
    runner = CliRunner()
    shipped = json.loads(runner.invoke(app, ["eval", "acceptance", str(path), "--json", "--model", "logreg"]).stdout)
    assert shipped["model"]["prior_rows"] > 1000 and "prior rows" in shipped["protocol"]
    none = json.loads(runner.invoke(app, ["eval", "acceptance", str(path), "--json", "--model", "logreg",
                                          "--prior", "none"]).stdout)
    assert none["model"]["prior_rows"] == 0 and "prior" not in none["protocol"]
    bad = runner.invoke(app, ["eval", "acceptance", str(path), "--json", "--prior", str(tmp_path / "missing.gz")])
    assert bad.exit_code == 2 and "cannot load prior" in bad.output


def test_a_broken_prior_file_is_an_error_for_the_cli_and_a_warning_for_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from heedls.server.acceptance import prior as prior_module

    good = prior_module.shipped_prior_path().read_bytes()
    events = tmp_path / "events.jsonl"
    write_jsonl(make_events(sessions=3, per_session=20, seed=29), events)
    broken = {"truncated.gz": good[: len(good) // 2], "garbled.gz": good[:20] + bytes(200) + good[220:],
              "not-gzip.gz": b"hello", "wrong-layout.gz": gzip.compress(b'{"format": "heedls.acceptance-prior/1"}')}
    for name, data in broken.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError if name != "not-gzip.gz" else OSError):
            Prior.load(path)
        result = CliRunner().invoke(app, ["eval", "acceptance", str(events), "--json", "--prior", str(path)])
        assert result.exit_code == 2 and "cannot load prior" in result.output, name
        monkeypatch.setattr(prior_module, "shipped_prior_path", lambda path=path: path)
        with caplog.at_level("WARNING"):
            assert prior_module.load_shipped_prior() is None  # the server refits on the user's rows alone
        assert "not usable" in caplog.text


def test_the_shipped_prior_matches_the_feature_extractor_and_the_shipped_model() -> None:
    shipped = load_shipped_prior()
    assert shipped is not None
    assert {s.kind for s in shipped.sources} == {"replay", "human"}
    for source in shipped.sources:
        for stage, names in STAGE_FEATURES.items():
            assert source.stages[stage].features == tuple(names), f"{source.name}/{stage}: retrain the default"
    model = AcceptanceModel.load(gate_module.default_model_path())
    assert model.stages["suggestion"].meta["prior_sources"] == ["replay"]  # the human stage: cups + replay
    assert model.stages["suggestion@local"].meta["prior_sources"] == ["cups-dev"]


@pytest.mark.slow
def test_a_user_refit_learns_from_the_prior(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    calibrating: list[int] = []
    real_fit = refit_module.fit_stage

    def spy(*args: Any, **kw: Any) -> Any:
        seen.append(0 if kw.get("prior") is None else int(kw["prior"].y.size))
        calibrating.append(0 if kw.get("prior") is None else int(kw["prior"].calibrates.sum()))
        return real_fit(*args, **kw)

    monkeypatch.setattr(refit_module, "fit_stage", spy)
    for use_prior in (True, False):
        seen.clear()
        calibrating.clear()
        gate = build_gate(GateConfig(mode="cascade", min_events_for_refit=60), tmp_path / str(use_prior))
        gate.background, gate.use_prior = False, use_prior
        for event in make_events(sessions=1, per_session=80, seed=28):
            gate.stage1(event, [])
            gate.stage2(event, [])
            gate.observe(event)
        assert seen and (all(n > 1000 for n in seen) if use_prior else not any(seen))
        # they only train: the threshold keeps the target share of this user's own accepts, so neither
        # the replay's rows nor other people's (cups-dev's 464) calibrate or set it
        assert calibrating and not any(calibrating)
