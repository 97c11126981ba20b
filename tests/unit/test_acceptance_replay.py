"""Replay: cut real files, label by what the author wrote next, emit schema events."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from heedls.server.acceptance.replay import REPLAY_EPOCH, label_suggestion, replay, run
from heedls.server.cli import app
from heedls.server.events import SCHEMA, SuggestionEvent
from heedls.server.providers.base import Candidate, CompletionRequest
from typer.testing import CliRunner

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


def test_one_folder_gives_a_session_per_files_per_session_files_until_the_cuts_are_planned(tmp_path: Path) -> None:
    """One project was one session of `files_per_session` files: `--cuts 1000` on a user's own
    folder made 40 events in one session, which leave-one-session-out cannot evaluate."""
    project, texts = _project(tmp_path, files=9)
    events = asyncio.run(replay([project], cuts=100, seed=0, per_file=2, files_per_session=4,
                                make_provider=lambda ws, cache: Oracle(texts)))
    sessions: dict[str, set[str]] = {}
    for event in events:
        sessions.setdefault(event.session, set()).add(event.extra["replay"]["file"])
    assert sorted(len(files) for files in sessions.values()) == [1, 4, 4]  # each file in one session
    assert len(set().union(*sessions.values())) == 9 and len(events) == 18
    days = {session: {int((e.ts - REPLAY_EPOCH) // 86_400) for e in events if e.session == session}
            for session in sessions}
    assert sorted(min(d) for d in days.values()) == [0, 1, 2]  # a day each: separate sittings


def _projects(tmp_path: Path, count: int, files: int = 6) -> tuple[list[Path], dict[str, str]]:
    texts: dict[str, str] = {}
    roots = []
    for k in range(count):
        root = tmp_path / f"project{k}"
        root.mkdir()
        roots.append(root)
        for i in range(files):
            (root / f"m{i}.py").write_text(SOURCE)
            texts[str((root / f"m{i}.py").resolve())] = SOURCE
    return roots, texts


def test_projects_whose_first_sessions_plan_the_cuts_give_one_session_each(tmp_path: Path) -> None:
    roots, texts = _projects(tmp_path, 2)
    events = asyncio.run(replay(roots, cuts=16, seed=0, per_file=2, files_per_session=4,
                                make_provider=lambda ws, cache: Oracle(texts)))
    assert len(events) == 16 and len({e.session for e in events}) == 2


def test_ten_projects_or_more_give_one_session_each_however_many_cuts_are_asked(tmp_path: Path) -> None:
    """The sessions of one project share its code: with enough projects (the pinned corpus's 141),
    each session is a code base of its own, and the replay the shipped model was trained on stays
    what it was."""
    roots, texts = _projects(tmp_path, 10)
    events = asyncio.run(replay(roots, cuts=1000, seed=0, per_file=1, files_per_session=4,
                                make_provider=lambda ws, cache: Oracle(texts)))
    assert len(events) == 40 and len({e.session for e in events}) == 10


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


# --------------------------------------------------------------------------- the command line's checks


def _project(tmp_path: Path, files: int = 2) -> tuple[Path, dict[str, str]]:
    project = tmp_path / "p"
    project.mkdir()
    for i in range(files):
        (project / f"m{i}.py").write_text(SOURCE)
    return project, {str((project / f"m{i}.py").resolve()): SOURCE for i in range(files)}


def _replay_cli(*args: str) -> Any:
    from heedls.server.cli import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, ["replay", *args, "--quiet"])


def test_label_rule_partial_and_persisted_as_documented() -> None:
    # docs/acceptance.md, Replay: a correct partial is >= 4 characters once stripped (inner blanks count)
    assert label_suggestion("a = b", "a = b + c\n")["partial"]
    assert not label_suggestion("  ab  ", "  ab  cd\n")["accepted"]  # 2 characters once stripped
    # persisted = exact, or a correct partial (its text stays as written), or similarity >= 0.9
    short = label_suggestion("(str)", "(str)          # Length of string\n")
    assert short["accepted"] and short["partial"] and short["persisted"] and short["similarity"] < 0.3
    near = label_suggestion("result = width*height", "result = width * height\n")  # similarity 0.955
    assert near["accepted"] and near["persisted"] and not near["partial"]
    loose = label_suggestion("total = 2 * (w + h)", "total = 2 * (width + height)\n")  # similarity 0.81
    assert loose["accepted"] and not loose["partial"] and 0.8 <= loose["similarity"] < 0.9
    assert not loose["persisted"]  # accepted, but much left to edit


def test_an_http_provider_without_an_endpoint_is_refused_not_replaced_by_local(tmp_path: Path, monkeypatch: Any) -> None:
    """`--provider openai` with no endpoint set: the replay would be the local provider's all
    through (it replayed, labelled `local`, and exited 0)."""
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    started: list[Path] = []
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: started.append(ws) or Oracle(texts))
    monkeypatch.chdir(tmp_path)  # no [tool.heedls.provider] here
    result = _replay_cli(str(project), "-o", str(tmp_path / "out.jsonl"), "--cuts", "5", "--provider", "openai")
    assert result.exit_code == 2
    assert "--provider openai: provider.endpoint is not set" in result.stderr
    assert started == [] and not (tmp_path / "out.jsonl").exists()
    (tmp_path / "pyproject.toml").write_text('[tool.heedls.provider]\nendpoint = "http://127.0.0.1:9"\n')
    result = _replay_cli(str(project), "-o", str(tmp_path / "out.jsonl"), "--cuts", "5", "--provider", "openai")
    assert result.exit_code == 0, result.stderr  # configured: replayed (a dead endpoint falls back per request)


def test_an_unwritable_output_fails_before_the_replay(tmp_path: Path, monkeypatch: Any) -> None:
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    started: list[Path] = []
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: started.append(ws) or Oracle(texts))
    for output, reason in ((tmp_path / "nodir" / "x" / "ev.jsonl", "no directory"), (tmp_path, "it is a directory")):
        result = _replay_cli(str(project), "-o", str(output), "--cuts", "5")
        assert result.exit_code == 2 and f"cannot write {output}: {reason}" in result.stderr
    assert started == []  # refused before any work, not after it


def test_the_output_is_written_atomically(tmp_path: Path, monkeypatch: Any) -> None:
    from heedls.server import events as events_mod
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: Oracle(texts))
    out = tmp_path / "out" / "events.jsonl"
    out.parent.mkdir()
    out.write_text("an older replay\n")
    real_write = events_mod.write_jsonl

    def disk_full(events: Any, path: Any) -> int:
        Path(path).write_text("half an ev")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(events_mod, "write_jsonl", disk_full)
    with pytest.raises(OSError):
        run([project], out, cuts=6, seed=0, provider="local", quiet=True)
    assert out.read_text() == "an older replay\n"  # never half a file
    monkeypatch.setattr(events_mod, "write_jsonl", real_write)
    assert run([project], out, cuts=6, seed=0, provider="local", quiet=True)["events"] == 6
    assert len(out.read_text().splitlines()) == 6
    assert [p.name for p in out.parent.iterdir()] == ["events.jsonl"]  # no temporary file left


def test_counts_must_be_positive_and_the_provider_known(tmp_path: Path) -> None:
    project, _ = _project(tmp_path)
    out = tmp_path / "ev.jsonl"
    for option in ("--per-file", "--files-per-session", "--cuts"):
        for value in ("-1", "0"):
            result = _replay_cli(str(project), "-o", str(out), option, value)
            assert result.exit_code == 2 and f"{option} must be positive" in result.stderr
    result = _replay_cli(str(project), "-o", str(out), "--provider", "foo")
    assert result.exit_code == 2 and "unknown provider 'foo'" in result.stderr
    result = _replay_cli(str(tmp_path / "nope"), "-o", str(out))
    assert result.exit_code == 2 and "no such file or directory" in result.stderr
    assert not out.exists()


def test_the_providers_named_are_the_configurable_ones() -> None:
    from typing import get_args

    from heedls.server.acceptance.replay import PROVIDERS
    from heedls.server.config import ProviderName

    assert PROVIDERS == get_args(ProviderName)


def test_nothing_replayed_is_an_error_and_fewer_cuts_a_note(tmp_path: Path, monkeypatch: Any) -> None:
    from heedls.server.acceptance import replay as replay_mod

    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "ev.jsonl"
    result = _replay_cli(str(empty), "-o", str(out), "--cuts", "5")
    assert result.exit_code == 1 and "nothing could be replayed" in result.stderr and not out.exists()
    project, texts = _project(tmp_path)
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: Oracle(texts))
    result = _replay_cli(str(project), "-o", str(out), "--cuts", "500", "--per-file", "3")
    assert result.exit_code == 0, result.output
    assert "only 6 of the 500 cuts asked could be made (1 session(s)" in result.stderr
    assert len(out.read_text().splitlines()) == 6


def test_events_that_cannot_be_written_are_kept_elsewhere_and_said_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk filled up during a long replay: its events go to a temporary file, the message says
    where, exit 1 (it was a traceback, and the replay was lost)."""
    from heedls.server.acceptance import replay as replay_mod

    project = tmp_path / "proj"
    project.mkdir()
    for name in ("a.py", "b.py"):
        (project / name).write_text("".join(f"def f{i}(x):\n    return x * {i} + len(str(x))\n\n\n" for i in range(60)))

    @contextlib.contextmanager
    def full(path: Path) -> Iterator[Path]:
        raise OSError(errno.ENOSPC, "No space left on device")
        yield path

    monkeypatch.setattr(replay_mod, "output_file", full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(app, ["replay", str(project), "-o", str(tmp_path / "out.jsonl"), "--cuts", "6",
                                      "--quiet"])
    assert result.exit_code == 1, result.output
    assert "No space left on device; the " in result.stderr and "events are kept in" in result.stderr
    kept = Path(result.stderr.split("events are kept in ")[1].split()[0])
    assert kept.read_text().count("\n") >= 1


def test_files_named_on_the_command_line_follow_the_folders_size_rule(
        tmp_path: Path, monkeypatch: Any, caplog: pytest.LogCaptureFixture) -> None:
    # a file argument is replayed like a file found in a folder: 1 KB-200 KB of Python; one left
    # out is named with the reason, not replayed silently (a 2 MB file would take the whole replay)
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    tiny = project / "tiny.py"
    tiny.write_text("x = 1\n")
    huge = project / "huge.py"
    huge.write_text("x = 1\n" * 40_000)
    notes = project / "notes.txt"
    notes.write_text(SOURCE)
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: Oracle(texts))
    named = [project / "m0.py", project / "m1.py", tiny, huge, notes]
    with caplog.at_level("WARNING", logger="heedls.server.acceptance.replay"):
        events = asyncio.run(replay(named, cuts=40, seed=0, per_file=5))
    replayed = {Path(e.extra["replay"]["file"]).name for e in events}
    assert replayed == {"m0.py", "m1.py"}
    said = caplog.text
    assert "tiny.py has 6 bytes" in said and "huge.py has 240,000 bytes" in said
    assert "notes.txt is not a Python file" in said


def test_progress_in_a_log_is_a_line_per_tenth(tmp_path: Path, monkeypatch: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A live bar draws nothing when stderr is not a terminal (CI, `2> log`): the minute-long replay
    of the training script used to say nothing between its first line and its summary."""
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: Oracle(texts))
    summary = run([project], tmp_path / "events.jsonl", cuts=20, seed=0, provider="local")
    assert summary["events"] == 20
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"replay: {n}/20 cuts" for n in range(2, 21, 2)]


class SlowOracle(Oracle):
    """An oracle whose answers take longer on every call: a measured latency would show it."""

    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        await asyncio.sleep(0.002 * (self.calls % 3))
        return await super().complete(request, deadline_s)


def test_latency_is_drawn_by_default_so_the_same_sources_and_seed_give_the_same_file(tmp_path: Path,
                                                                                     monkeypatch: Any) -> None:
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: SlowOracle(texts))
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    run([project], first, cuts=20, seed=5, provider="local", quiet=True)
    run([project], second, cuts=20, seed=5, provider="local", quiet=True)
    assert first.read_bytes() == second.read_bytes()
    events = [json.loads(line) for line in first.read_text().splitlines()]
    assert all(e["replay"]["latency"] == "synthetic" and e["latency_ms"] > 0 for e in events)
    assert len({e["latency_ms"] for e in events}) == len(events)  # drawn per request, not a constant


def test_drawing_latencies_leaves_the_cut_points_where_they_were(tmp_path: Path, monkeypatch: Any) -> None:
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: Oracle(texts))
    drawn, measured = tmp_path / "d.jsonl", tmp_path / "m.jsonl"
    run([project], drawn, cuts=20, seed=5, provider="local", quiet=True)
    run([project], measured, cuts=20, seed=5, provider="local", quiet=True, latency="measured")

    def places(path: Path) -> list[tuple[Any, ...]]:
        return [(e["id"], e["ts"], e["replay"]["offset"], e.get("suggestion"))
                for e in map(json.loads, path.read_text().splitlines())]

    assert places(drawn) == places(measured)
    assert {json.loads(line)["replay"]["latency"] for line in measured.read_text().splitlines()} == {"measured"}


def test_an_unknown_latency_kind_is_refused_before_the_replay(tmp_path: Path) -> None:
    project, _ = _project(tmp_path)
    out = tmp_path / "ev.jsonl"
    result = _replay_cli(str(project), "-o", str(out), "--latency", "wallclock")
    assert result.exit_code == 2 and "--latency: 'wallclock' is not one of synthetic, measured" in result.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- what is read, where it goes


def test_the_output_is_refused_when_it_is_a_file_the_replay_reads(tmp_path: Path, monkeypatch: Any) -> None:
    """`-o` naming a source file, by whatever name (found in a folder or named, through a symlink,
    a hard link or `..`), is exit 2 before anything runs: the events used to replace the code. So
    is a Python file of a project too small to be cut: the provider indexes it."""
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    solo = tmp_path / "solo" / "alone.py"
    solo.parent.mkdir()
    solo.write_text(SOURCE)
    (tmp_path / "link.py").symlink_to(project / "m1.py")
    (tmp_path / "hard.py").hardlink_to(project / "m0.py")
    (project / "tiny.py").write_text("x = 1\n")
    started: list[Path] = []
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: started.append(ws) or Oracle(texts))
    for sources, output, read in (([project], project / "m0.py", project / "m0.py"),
                                  ([solo], solo, solo),
                                  ([project], tmp_path / "link.py", project / "m1.py"),
                                  ([project], tmp_path / "hard.py", project / "m0.py"),
                                  ([project, solo], tmp_path / "solo" / ".." / "solo" / "alone.py", solo),
                                  ([project], project / "tiny.py", project / "tiny.py")):
        result = _replay_cli(*map(str, sources), "-o", str(output), "--cuts", "5")
        assert result.exit_code == 2, result.output
        assert f"-o {output} is the file being read (" in result.stderr
        assert "choose another output file" in result.stderr and read.name in result.stderr
    assert started == [] and solo.read_text() == SOURCE
    assert all(path.read_text() == SOURCE for path in project.glob("m*.py"))
    assert (project / "tiny.py").read_text() == "x = 1\n"
    result = _replay_cli(str(project), str(solo), "-o", str(tmp_path / "events.jsonl"), "--cuts", "5")
    assert result.exit_code == 0, result.output  # another file is fine


def test_a_file_named_py_that_is_not_utf8_text_is_skipped_with_a_note(
        tmp_path: Path, monkeypatch: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Binary data named *.py (or text holding NUL bytes, which no Python source can) was cut into
    events whose prefixes were U+FFFD and control characters; it is left out, and said, whether
    found in a folder or named."""
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    (project / "binary.py").write_bytes(bytes(range(256)) * 8)  # 2 KB: inside the size rule
    (project / "nul.py").write_text(SOURCE.replace("\n\n\n", "\n\x00\n\n", 1))
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: Oracle(texts))
    for sources in ([project], sorted(project.iterdir())):
        caplog.clear()
        with caplog.at_level("WARNING", logger="heedls.server.acceptance.replay"):
            events = asyncio.run(replay(sources, cuts=40, seed=0, per_file=5))
        assert {Path(e.extra["replay"]["file"]).name for e in events} == {"m0.py", "m1.py"}
        assert "binary.py is not UTF-8 text (invalid start byte at byte 128); skipped" in caplog.text
        assert "nul.py is not text (a NUL byte at character" in caplog.text


def test_dash_as_the_output_is_stdout_with_everything_else_on_stderr(tmp_path: Path, monkeypatch: Any) -> None:
    """`-o -` wrote a file named "-"; as for `heedls telemetry export`, it is stdout: the same
    bytes as a file, and the summary and notes on stderr only."""
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: Oracle(texts))
    monkeypatch.chdir(tmp_path)
    result = _replay_cli(str(project), "-o", "-", "--cuts", "500", "--per-file", "3")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "-").exists()
    assert '"output": "-"' in result.stderr and "only 6 of the 500 cuts" in result.stderr
    assert _replay_cli(str(project), "-o", "file.jsonl", "--cuts", "500", "--per-file", "3").exit_code == 0
    assert result.stdout_bytes == (tmp_path / "file.jsonl").read_bytes()
    assert len(result.stdout.splitlines()) == 6


def test_stdout_that_cannot_be_written_keeps_the_events_elsewhere(tmp_path: Path, monkeypatch: Any) -> None:
    """A reader gone away (`| head`) is no error message of its own (as for export); where the
    events are kept is still said, and the exit status is 1."""
    from heedls.server.acceptance import replay as replay_mod

    project, texts = _project(tmp_path)
    monkeypatch.setattr(replay_mod, "_make_provider", lambda name, ws, cache: Oracle(texts))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def gone(events: Any) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(replay_mod, "_write_stdout", gone, raising=False)
    monkeypatch.chdir(tmp_path)  # where a file named "-" would go
    result = _replay_cli(str(project), "-o", "-", "--cuts", "6")
    assert result.exit_code == 1, result.output
    assert "cannot write" not in result.stderr and "Traceback" not in result.output
    kept = Path(result.stderr.split("the 6 events are kept in ")[1].split()[0])
    assert len(kept.read_text().splitlines()) == 6


def test_an_empty_output_name_is_a_usage_error(tmp_path: Path) -> None:
    """`-o ""` (an unset shell variable) said "cannot write .: it is a directory"."""
    project, _ = _project(tmp_path)
    result = _replay_cli(str(project), "-o", "", "--cuts", "5")
    assert result.exit_code == 2
    assert result.stderr.strip() == "heedls: -o needs a file name (or - for stdout)"
