"""scripts/train_default_model.py on bad input: every mistake is reported before minutes of replay
and fitting, a model is never fitted on no events, and nothing half-done replaces the model or its
prior (the two files ship as a pair)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from heedls.server.acceptance import model as model_module
from heedls.server.events import write_jsonl

from tests.support.scripts import load_script
from tests.unit.test_acceptance_data import make_events

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_default_model.py"


def _script() -> ModuleType:
    return load_script("train_default_model")


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # a cache of its own: a missing replay would otherwise be made (and cached) there
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(SCRIPT), "--no-cups", "--cuts", "7", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def _existing_pair(tmp_path: Path) -> tuple[Path, Path, dict[Path, str]]:
    model, prior = tmp_path / "out" / "model.json", tmp_path / "out" / "prior.json.gz"
    model.parent.mkdir()
    model.write_text("the previous model\n")
    prior.write_bytes(b"the previous prior")
    return model, prior, {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (model, prior)}


def _unchanged(pair: dict[Path, str]) -> None:
    for path, digest in pair.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} was replaced"
    assert sorted(p.name for p in next(iter(pair)).parent.iterdir()) == ["model.json", "prior.json.gz"]


def test_a_replay_path_that_does_not_exist_is_an_error_not_a_new_replay_written_there(tmp_path: Path) -> None:
    model, prior, pair = _existing_pair(tmp_path)
    done = _train(tmp_path, "--replay", str(tmp_path / "typo.jsonl"), "-o", str(model), "--prior-output", str(prior))
    assert done.returncode == 2, done.stderr
    assert "no replay at" in done.stderr and "replaying" not in done.stderr
    assert not (tmp_path / "typo.jsonl").exists() and not (tmp_path / "cache").exists()
    _unchanged(pair)


@pytest.mark.parametrize("content", ["", "not json\n{\"a\": 1}\n"])
def test_an_empty_or_malformed_replay_trains_nothing(tmp_path: Path, content: str) -> None:
    """It used to fit context@local / suggestion@local on 0 rows (threshold 0.0) and exit 0."""
    model, prior, pair = _existing_pair(tmp_path)
    replay = tmp_path / "replay.jsonl"
    replay.write_text(content)
    done = _train(tmp_path, "--replay", str(replay), "-o", str(model), "--prior-output", str(prior))
    assert done.returncode == 1, done.stderr
    assert "nothing trained, nothing written" in done.stderr
    _unchanged(pair)


def test_a_replay_with_a_malformed_line_among_good_ones_trains_nothing(tmp_path: Path) -> None:
    model, prior, pair = _existing_pair(tmp_path)
    replay = tmp_path / "replay.jsonl"
    write_jsonl(make_events(sessions=2, per_session=5), replay)
    replay.write_text(replay.read_text() + "{truncated\n")
    done = _train(tmp_path, "--replay", str(replay), "-o", str(model), "--prior-output", str(prior))
    assert done.returncode == 1 and "1 malformed line(s)" in done.stderr, done.stderr
    _unchanged(pair)


@pytest.mark.parametrize("which", ["-o", "--prior-output"])
def test_an_unwritable_output_is_reported_before_anything_runs(tmp_path: Path, which: str) -> None:
    """It used to be found after the replay and the fit (about 90 s at the default --cuts 3000)."""
    model, prior, pair = _existing_pair(tmp_path)
    (tmp_path / "a-file").write_text("")
    outputs = {"-o": str(model), "--prior-output": str(prior)}
    outputs[which] = str(tmp_path / "a-file" / "out")  # its folder is a file
    done = _train(tmp_path, "-o", outputs["-o"], "--prior-output", outputs["--prior-output"])
    assert done.returncode == 2, done.stderr
    assert "cannot write" in done.stderr and "replaying" not in done.stderr
    assert not (tmp_path / "cache").exists()
    _unchanged(pair)


def test_interrupted_while_fitting_leaves_the_previous_model_and_prior(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The prior used to be written before the fit: a Ctrl-C in the fit left a new prior beside the
    old model."""
    model, prior, pair = _existing_pair(tmp_path)
    replay = tmp_path / "replay.jsonl"
    write_jsonl(make_events(sessions=3, per_session=10), replay)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(model_module, "fit_stage", interrupted)
    monkeypatch.setattr(sys, "argv", ["train_default_model.py", "--no-cups", "--cuts", "7", "--replay", str(replay),
                                      "-o", str(model), "--prior-output", str(prior)])
    with pytest.raises(KeyboardInterrupt):
        _script().main()
    _unchanged(pair)


def test_says_when_the_replay_is_not_the_one_the_shipped_model_was_trained_on(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A replay made after the provider or the post-processing changed is not the shipped model's:
    the user hears that --version-date will not give the shipped file."""
    script = _script()
    shipped = json.loads(script.OUT.read_text(encoding="utf-8"))["meta"]["sources"][0]
    script._note_replay_differs(shipped["sha256"], shipped["seed"], shipped["cuts"])
    assert capsys.readouterr().err == ""
    script._note_replay_differs("0123456789abcdef", shipped["seed"], shipped["cuts"])
    err = capsys.readouterr().err
    assert err.startswith("note: this replay (sha256 0123456789abcdef)") and shipped["sha256"] in err
    script._note_replay_differs("0123456789abcdef", shipped["seed"], 300)  # not meant to be the shipped one
    assert capsys.readouterr().err == ""
