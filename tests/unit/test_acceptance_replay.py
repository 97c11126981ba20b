"""Replay: cut real files, label by what the author wrote next, emit schema events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from heedls.server.acceptance.replay import label_suggestion, replay, run
from heedls.server.events import SCHEMA, SuggestionEvent
from heedls.server.providers.base import Candidate, CompletionRequest

SOURCE = '''"""A small module."""


def area(width, height):
    """Area of a rectangle."""
    result = width * height
    return result


def perimeter(width, height):
    total = 2 * (width + height)
    return total


class Shape:
    def __init__(self, name):
        self.name = name
        self.sides = []

    def describe(self):
        return f"{self.name} with {len(self.sides)} sides"
''' * 3


def test_label_rule() -> None:
    truth = "result = width * height\n    return result\n"
    assert label_suggestion("result = width * height", truth)["exact"]
    partial = label_suggestion("result = width", truth)
    assert partial["accepted"] and partial["partial"] and not partial["exact"]
    assert label_suggestion("result = width*height", truth)["accepted"]  # similarity >= 0.8
    assert not label_suggestion("print('hello world')", truth)["accepted"]
    assert not label_suggestion("re", truth)["accepted"]  # too short to count as a correct partial
    two = label_suggestion("result = width * height\n    return result", truth)
    assert two["exact"] and two["persisted"]
    assert not label_suggestion("result = width * height\n    return None", truth)["exact"]


class Oracle:
    """Returns the true continuation on every other request, a wrong line otherwise."""

    name = "oracle"

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts
        self.calls = 0

    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        self.calls += 1
        text = self.texts[request.path]
        offset = len(request.prefix) if len(text) < 6000 else text.index(request.prefix) + len(request.prefix)
        rest = text[offset:].split("\n", 1)[0]
        if self.calls % 2:
            return [Candidate(text=rest, provider="oracle", confidence=0.9, source="test")]
        return [Candidate(text="raise NotImplementedError('nope')", provider="oracle", confidence=0.1)]

    async def aclose(self) -> None:
        return None


def test_replay_emits_labelled_synthetic_events(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    texts = {}
    for name in ("a.py", "b.py", "c.py"):
        path = project / name
        path.write_text(SOURCE)
        texts[str(path.resolve())] = SOURCE
    oracle = Oracle(texts)
    events = asyncio.run(replay([project], cuts=24, seed=3, per_file=8, make_provider=lambda ws, cache: oracle))
    assert len(events) == 24
    shown = [e for e in events if e.suggestion]
    assert shown and all(e.schema == SCHEMA and e.extra["synthetic"] is True for e in events)
    for event in shown:
        replay_info: dict[str, Any] = event.extra["replay"]
        assert event.outcome == ("accepted" if replay_info["accepted"] else "rejected")
        if event.suggestion.startswith("raise NotImplementedError"):
            assert event.outcome == "rejected"
    assert any(e.outcome == "accepted" for e in shown)
    ts = [e.ts for e in events]
    assert ts == sorted(ts) and len({e.session for e in events}) == 1
    # Reproducible: same seed, same cut points
    again = asyncio.run(replay([project], cuts=24, seed=3, per_file=8,
                               make_provider=lambda ws, cache: Oracle(texts)))
    assert [(e.extra["replay"]["offset"], e.extra["replay"]["file"]) for e in again] == \
           [(e.extra["replay"]["offset"], e.extra["replay"]["file"]) for e in events]


def test_replay_cli_file_round_trips(tmp_path: Path, monkeypatch: Any) -> None:
    from heedls.server.acceptance import replay as replay_mod

    project = tmp_path / "p"
    project.mkdir()
    (project / "m.py").write_text(SOURCE)
    (project / "n.py").write_text(SOURCE)
    texts = {str((project / n).resolve()): SOURCE for n in ("m.py", "n.py")}
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: Oracle(texts))
    out = tmp_path / "events.jsonl"
    summary = run([project], out, cuts=10, seed=0, provider="local", quiet=True)
    assert summary["events"] == 10
    rows = [SuggestionEvent.from_dict(json.loads(line)) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and all(r.decision_ms is None or r.outcome is not None for r in rows)


def test_an_interrupted_replay_keeps_the_events_made_so_far(tmp_path: Path, monkeypatch: Any) -> None:
    from heedls.server.acceptance import replay as replay_mod

    project = tmp_path / "p"
    project.mkdir()
    for name in ("m.py", "n.py"):
        (project / name).write_text(SOURCE)
    texts = {str((project / n).resolve()): SOURCE for n in ("m.py", "n.py")}

    class CtrlC(Oracle):
        async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
            if self.calls == 6:
                raise KeyboardInterrupt  # what Ctrl-C raises in the code that runs (not a cancellation)
            return await super().complete(request, deadline_s)

    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: CtrlC(texts))
    out = tmp_path / "events.jsonl"
    summary = run([project], out, cuts=20, seed=0, provider="local", quiet=True)
    assert summary["interrupted"] is True and summary["events"] == 6
    rows = [SuggestionEvent.from_dict(json.loads(line)) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and all(r.schema == SCHEMA for r in rows)  # whole events, a valid file

    # from the command line: the same file, and the exit status a shell gives Ctrl-C
    from heedls.server.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["replay", str(project), "-o", str(tmp_path / "cli.jsonl"), "--cuts", "20",
                                      "--quiet"])
    assert result.exit_code == 130
    assert "replay interrupted: the 6 events made so far" in result.stderr
    assert len((tmp_path / "cli.jsonl").read_text().splitlines()) == 6
