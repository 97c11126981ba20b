"""`heedls eval acceptance` driven as a CI job drives it: stderr a log file, not a terminal, and
input files that are not what it reads. Progress is visible there, and a telemetry store given in
place of its export is named as such."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from heedls.server.acceptance import cli as acceptance_cli
from heedls.server.cli import app
from heedls.server.events import write_jsonl
from heedls.server.telemetry.store import TelemetryStore
from typer.testing import CliRunner

from tests.unit.test_acceptance_data import make_events


def _eval(*args: str) -> Any:
    return CliRunner().invoke(app, ["eval", "acceptance", *args])


def test_progress_shows_as_lines_when_stderr_is_not_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A live bar draws nothing into a log: a 10^6-event file (294 MB) ran for minutes without a
    # line on stderr. Lines appear once a step has run for QUIET_S; 0 here, to see them at once.
    monkeypatch.setattr(acceptance_cli._ProgressLines, "QUIET_S", 0.0)
    events = make_events(sessions=3, per_session=20, seed=3)
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    result = _eval(str(path), "--json", "--model", "logreg", "--prior", "none", "--jobs", "1")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("eval: ")]
    assert "eval: features 60/60" in "\n".join(lines), result.stderr
    assert any(line.startswith("eval: sessions fitted 3/3") for line in lines), result.stderr
    assert len(lines) <= 11 + 4  # a tenth at a time, not a line per event
    assert json.loads(result.stdout)["n"] > 0  # stdout is still the one JSON object


def test_a_small_file_adds_no_progress_lines(tmp_path: Path) -> None:
    events = make_events(sessions=2, per_session=10, seed=4)
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    result = _eval(str(path), "--json", "--pretrained")
    assert result.exit_code == 0, result.output
    assert "eval: features" not in result.stderr


def test_a_telemetry_store_given_as_the_events_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    store = tmp_path / "events.sqlite3"
    with TelemetryStore(store) as s:
        for e in make_events(sessions=2, per_session=5, seed=1):
            s.record(e)
    result = _eval(str(store), "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert "is a SQLite database (a heedls telemetry store?)" in result.stderr
    assert f"heedls telemetry export --store {store}" in result.stderr
    assert "malformed" not in result.stderr  # was: "all 28 non-blank line(s) are malformed … not JSON"
    report = CliRunner().invoke(app, ["telemetry", "report", "--events", str(store)])
    assert report.exit_code == 1 and f"report on a store with --store {store}" in report.stderr


def _plain_histories(events: list[Any]) -> list[list[Any]]:
    """The rule, written plainly (filtering the whole session for every event, as the extractor
    did before it was quadratic no more)."""
    from heedls.server.events import history_window

    by_session: dict[str, list[Any]] = {}
    for event in events:
        by_session.setdefault(event.session, []).append(event)
    for items in by_session.values():
        items.sort(key=lambda e: e.ts)
    return [history_window([h for h in by_session[e.session] if h.ts < e.ts]) for e in events]


def test_session_histories_are_the_plain_rules_lists() -> None:
    # the O(n log n) session_histories gives the very lists of the plain rule (same events, same
    # order): ties in ts, gated runs longer than the window, shuffled input
    import random

    from heedls.server.acceptance import features
    from heedls.server.events import SuggestionEvent

    rng = random.Random(11)
    for _ in range(20):
        events = [
            SuggestionEvent(id=f"i{i}", session=rng.choice("abc"), ts=float(rng.randint(0, 80)),
                            gate={"decision": rng.choice(["skipped", "hidden", "shown"])} if rng.random() < 0.6 else None)
            for i in range(rng.randint(1, 500))
        ]  # fmt: skip
        expected, got = _plain_histories(events), features.session_histories(events)
        assert [[id(e) for e in h] for h in got] == [[id(e) for e in h] for h in expected]


def test_a_long_session_is_not_quadratic(tmp_path: Path) -> None:
    # 40,000 events in one session: the features' histories filtered the whole session for every
    # event (20,000 took 130 s, a 10^6-event file never got to its first fold); now ~1 s
    script = (
        "from heedls.server.acceptance.evaluate import build_dataset\n"
        "from heedls.server.events import SuggestionEvent\n"
        "events = [SuggestionEvent(id=f'e{i}', session='s', ts=1.7e9 + i, prefix='x = 1\\n', suggestion='y', shown=True,\n"
        "          outcome='accepted' if i % 3 == 0 else 'rejected') for i in range(40_000)]\n"
        "print(build_dataset(events, 'context').y.size)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "40000"


def test_many_sessions_are_not_quadratic() -> None:
    # 50,000 events in 10,000 sessions (a team's export): the session bootstrap and the users' online
    # bias compared every event with every session (`groups == session`), minutes for these three
    # steps alone and hours at 10^6 events; now one pass groups them
    script = (
        "import numpy as np\n"
        "from heedls.server.acceptance.adapt import online_decision_thresholds, online_shift\n"
        "from heedls.server.acceptance.evaluate import session_intervals\n"
        "n = 50_000\n"
        "rng = np.random.default_rng(0)\n"
        "groups = np.array([f's{i // 5}' for i in range(n)], dtype=object)\n"
        "y, p = (rng.random(n) < 0.3).astype(float), rng.random(n)\n"
        "ts = np.arange(n) * 10.0\n"
        "thr = online_decision_thresholds(p, y, groups, ts, ts + 1.5, np.full(n, 0.2), 0.95)\n"
        "shifted = online_shift(p, y, groups, ts, ts + 1.5)\n"
        "print(sorted(session_intervals(y, shifted, thr, groups, 'context', reps=200)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sorted(["auc", "hidden_rejected_at_95", "accepted_kept", "ece", "requests_avoided"]))


def test_replay_of_an_unlistable_folder_or_a_pipe_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    locked, pipe = tmp_path / "locked", tmp_path / "events.py"
    locked.mkdir()
    os.mkfifo(pipe)
    real = Path.iterdir

    def iterdir(self: Path) -> Any:  # what a folder without the read permission does (tests run as root)
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["replay", str(locked), str(pipe), "-o", str(tmp_path / "out.jsonl"), "--quiet"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1 and "nothing could be replayed" in result.stderr
    assert f"{locked} cannot be read (Permission denied); skipped" in caplog.text
    assert f"{pipe} is neither a file nor a folder" in caplog.text and "does not exist" not in caplog.text
    assert not (tmp_path / "out.jsonl").exists()


def test_the_table_in_an_ascii_locale_is_printed_not_a_traceback(tmp_path: Path) -> None:
    # rich ends a header cut to fit 60 columns with `…`, which ASCII lacks: a UnicodeEncodeError traceback
    import os

    events = make_events(sessions=2, per_session=10, seed=4)
    path = tmp_path / "events.jsonl"
    write_jsonl(events, path)
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "HEEDLS_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "60"}
    done = subprocess.run([sys.executable, "-m", "heedls", "eval", "acceptance", str(path), "--pretrained"],
                          capture_output=True, env=env, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
    assert b"heedls" in done.stdout and b"auc" in done.stdout.lower()
