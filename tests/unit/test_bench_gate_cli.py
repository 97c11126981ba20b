"""`heedls bench gate` refuses, in one line, what it cannot time (its figures are in tests/bench)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from heedls.server.acceptance.gate import default_model_path
from heedls.server.cli import app
from heedls.server.events import write_jsonl
from typer.testing import CliRunner

from tests.unit.test_acceptance_data import make_events


def _gate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["bench", "gate", "-n", "50", "--json", *args])
    return result.exit_code, result.stdout, result.stderr


def test_nothing_to_time_is_a_failure_not_a_pass(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, out, err = _gate("--events", str(empty))
    assert code == 1 and out == "" and err.strip() == f"heedls: nothing to time in {empty}: the file is empty"
    nocode = tmp_path / "nocode.jsonl"  # decisions without the code: no suggestion to time
    write_jsonl([dataclasses.replace(e, prefix=None, suffix=None, suggestion=None)
                 for e in make_events(sessions=1, per_session=5)], nocode)
    code, out, err = _gate("--events", str(nocode))
    assert code == 1 and out == "" and "none of its 5 events has a suggestion" in err


def test_unusable_files_are_one_line_errors(tmp_path: Path) -> None:
    code, _, err = _gate("--events", str(tmp_path / "nope.jsonl"))
    assert code == 2 and err.strip() == f"heedls: {tmp_path / 'nope.jsonl'}: no such file"
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\xff\xfe\x00 not a model")
    shipped = json.loads(default_model_path().read_text())
    ctx_only = tmp_path / "ctx_only.json"
    ctx_only.write_text(json.dumps({**shipped, "stages": {k: v for k, v in shipped["stages"].items()
                                                            if k.startswith("context")}}))
    for model, reason in ((garbage, "not a JSON text file"), (tmp_path / "nope.json", "no such file"),
                          (ctx_only, "it has no 'suggestion' stage")):
        code, out, err = _gate("--model-file", str(model))
        assert code == 2 and out == "", err
        assert err.startswith(f"heedls: cannot load model {model}: {reason}") and "Traceback" not in err
