"""`heedls eval acceptance` on event files as others produce them: whatever the file, stdout is one
JSON object (or nothing, with a one-line reason and a non-zero exit), and the figures mean what
they say."""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import lzma
import zipfile
from pathlib import Path
from typing import Any

from heedls.server.acceptance import evaluate as ev
from heedls.server.cli import app
from heedls.server.events import write_jsonl
from typer.testing import CliRunner

from tests.unit.test_acceptance_data import make_events

FAST = ("--model", "logreg", "--prior", "none", "--jobs", "1")


def _eval(*args: str) -> Any:
    return CliRunner().invoke(app, ["eval", "acceptance", *args])


def test_ids_numbered_within_each_session_are_different_suggestions(tmp_path: Path) -> None:
    """Another tool may number its events per session (1, 2, … in each): the same id in two
    sessions is two suggestions (a suggestion belongs to one session), not one suggestion's
    snapshots, of which only the last would be kept."""
    events = make_events(sessions=3, per_session=20, seed=5)
    unique, per_session = tmp_path / "unique.jsonl", tmp_path / "per_session.jsonl"
    write_jsonl(events, unique)
    write_jsonl([dataclasses.replace(e, id=e.id.split("-")[1]) for e in events], per_session)
    loaded = ev.read_events(per_session)
    assert len(loaded.events) == 60 and loaded.repeated == 0
    first, second = _eval(str(unique), "--json", *FAST), _eval(str(per_session), "--json", *FAST)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout) == json.loads(first.stdout)
    assert "repeat an earlier event's id" not in second.stderr
    # a snapshot repeated within its session is still one suggestion in its last state
    twice = tmp_path / "twice.jsonl"
    twice.write_text(per_session.read_text() * 2)
    assert len(ev.read_events(twice).events) == 60 and ev.read_events(twice).repeated == 60


def test_a_utf16_or_compressed_event_file_reads_as_its_utf8_text(tmp_path: Path) -> None:
    """PowerShell's `>` writes UTF-16 with a BOM (other tools without one), and an export is often
    passed still compressed: each says what it is in its first bytes (a JSON line starts with an
    ASCII character, so a BOM-less UTF-16/32 text is told by where its zero bytes fall), so they are
    read, not reported as lines of non-JSON."""
    events = make_events(sessions=3, per_session=10, seed=2)
    plain = tmp_path / "events.jsonl"
    write_jsonl([dataclasses.replace(e, prefix=e.prefix + "# é 😀") for e in events], plain)
    text = plain.read_text(encoding="utf-8")
    variants = {"utf16.jsonl": "\ufeff".encode("utf-16-le") + text.replace("\n", "\r\n").encode("utf-16-le"),
                "utf16be.jsonl": text.encode("utf-16"),  # with its BOM, in this machine's order
                "utf16le-no-bom.jsonl": text.encode("utf-16-le"), "utf16be-no-bom.jsonl": text.encode("utf-16-be"),
                "utf32le-no-bom.jsonl": text.encode("utf-32-le"), "utf32be-no-bom.jsonl": text.encode("utf-32-be"),
                "events.jsonl.gz": gzip.compress(text.encode("utf-8")),
                "events.jsonl.xz": lzma.compress(text.encode("utf-8")),
                "events.jsonl.bz2": bz2.compress(text.encode("utf-8")),
                "utf16.jsonl.gz": gzip.compress(text.encode("utf-16"))}
    expected = ev.read_events(plain).events
    for name, raw in variants.items():
        (tmp_path / name).write_bytes(raw)
        loaded = ev.read_events(tmp_path / name)
        assert loaded.events == expected and loaded.skipped == 0, name
    for name in ("events.jsonl.gz", "events.jsonl.xz"):
        result = _eval(str(tmp_path / name), "--json", *FAST)
        assert result.exit_code == 0 and json.loads(result.stdout)["n"] == 30, name
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(text.encode("utf-8"))[:-20])
    result = _eval(str(truncated), "--json", *FAST)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"heedls: {truncated}: cannot read:") and "Traceback" not in result.stderr
    # damaged inside (each decompressor has its own error for it): unreadable, not a crash
    for name, compress in (("bad.jsonl.gz", gzip.compress), ("bad.jsonl.xz", lzma.compress), ("bad.jsonl.bz2", bz2.compress)):
        damaged = bytearray(compress(text.encode("utf-8")))
        for i in range(30, 50):
            damaged[i] ^= 0x5A
        (tmp_path / name).write_bytes(damaged)
        result = _eval(str(tmp_path / name), "--json", *FAST)
        assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr, (name, result.stderr)
        assert result.stderr.startswith(f"heedls: {tmp_path / name}: cannot read:"), name


def test_a_zipped_event_file_reads_as_the_one_file_it_holds(tmp_path: Path) -> None:
    """Windows' "Send to > Compressed (zipped) folder" makes a zip of one file; an archive of several
    is read when one of them is the events (.jsonl/.json), else it says what it holds."""
    events = make_events(sessions=3, per_session=10, seed=2)
    plain = tmp_path / "events.jsonl"
    write_jsonl(events, plain)
    expected = ev.read_events(plain).events
    one, mixed, many = tmp_path / "one.zip", tmp_path / "mixed.zip", tmp_path / "many.zip"
    with zipfile.ZipFile(one, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(plain, "export/events.jsonl")
    with zipfile.ZipFile(mixed, "w") as archive:
        archive.writestr("README.txt", "exported by heedls")
        archive.write(plain, "events.jsonl")
    with zipfile.ZipFile(many, "w") as archive:
        archive.writestr("a.jsonl", "{}")
        archive.writestr("b.jsonl", "{}")
    assert ev.read_events(one).events == expected and ev.read_events(mixed).events == expected
    result = _eval(str(one), "--json", *FAST)
    assert result.exit_code == 0 and json.loads(result.stdout)["n"] == 30
    result = _eval(str(many), "--json", *FAST)
    assert result.exit_code == 2 and result.stdout == ""
    assert "is a zip archive of 2 files (a.jsonl, b.jsonl): unpack the one to read" in result.stderr
    assert "Traceback" not in result.stderr
    raw = one.read_bytes()
    damaged = tmp_path / "damaged.zip"
    flipped = bytearray(raw)
    flipped[40] ^= 0xFF  # inside the member's deflated data: its CRC (or the inflater) fails
    for cut in (raw[: len(raw) // 2], raw[:60] + bytes(len(raw) - 60), bytes(flipped)):  # cut short; zeroed; flipped
        damaged.write_bytes(cut)
        result = _eval(str(damaged), "--json", *FAST)
        assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"heedls: {damaged}: cannot read:")


def test_timestamps_in_milliseconds_are_pointed_out(tmp_path: Path) -> None:
    """`ts` is unix seconds; in milliseconds every gap between events reads 1,000 times too long
    (and an earlier decision as known sooner): still evaluated as given, but the user is told."""
    events = make_events(sessions=2, per_session=10, seed=1)
    path = tmp_path / "ms.jsonl"
    write_jsonl([dataclasses.replace(e, ts=e.ts * 1000) for e in events], path)
    result = _eval(str(path), "--json", *FAST)
    assert result.exit_code == 0 and json.loads(result.stdout)["n"] == 20
    assert "ts is not in unix seconds as the schema has it (median 1.7e+12" in result.stderr
    write_jsonl(events, path)
    assert "unix seconds" not in _eval(str(path), "--json", *FAST).stderr


def test_one_session_says_why_the_figures_are_null(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    write_jsonl([dataclasses.replace(e, session="me") for e in make_events(sessions=2, per_session=10, seed=1)], path)
    result = _eval(str(path), "--json", *FAST)
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["n"] == 20 and data["auc"] is None and data["sessions"] == 1
    assert "all 20 labelled events are in one session ('me')" in result.stderr
    write_jsonl(make_events(sessions=1, per_session=1), path)  # one event: the session is the reason, not its class
    result = _eval(str(path), "--json", *FAST)
    assert "in one session" in result.stderr and "negative" not in result.stderr


def test_one_class_names_the_figures_it_leaves_null(tmp_path: Path) -> None:
    """With every decision an acceptance there is no AUC and nothing rejected to hide; calibration
    (ECE) is still measured: the scores should then be near 1."""
    path = tmp_path / "all.jsonl"
    write_jsonl([dataclasses.replace(e, outcome="accepted") for e in make_events(sessions=3, per_session=12)], path)
    result = _eval(str(path), "--json", *FAST)
    data = json.loads(result.stdout)
    assert data["auc"] is None and data["hidden_rejected_at_95"] is None and data["ece"] is not None
    assert "all 36 labelled events are positive: AUC and hidden_rejected_at_95 need a rejected one" in result.stderr
    assert "fewer than" not in result.stderr  # 24 accepted in each fold's training data: the class is the reason


def test_too_few_accepted_to_set_a_threshold_is_pointed_out(tmp_path: Path) -> None:
    """With fewer than 19 accepted in a fold's training data no threshold keeps 95 % of a new one
    in expectation, and everything is shown: "hides 0 % of the rejected" is then no finding about
    the model, and the user is told so."""
    events = make_events(sessions=4, per_session=15, seed=2)
    few = [dataclasses.replace(e, outcome="accepted" if i % 6 == 0 else "rejected") for i, e in enumerate(events)]
    path = tmp_path / "few.jsonl"
    write_jsonl(few, path)
    result = _eval(str(path), "--json", *FAST)
    data = json.loads(result.stdout)
    assert data["positives"] == 10 and data["shown_share"] == 1.0 and data["hidden_rejected_at_95"] == 0.0
    assert "in 4 of the 4 held-out sessions" in result.stderr and "fewer than 19 accepted" in result.stderr
    assert "folds" not in data  # the note needs no --folds
    write_jsonl(events, path)
    assert "fewer than" not in _eval(str(path), "--json", *FAST).stderr
    assert "fewer than" not in _eval(str(path), "--json", "--keep", "1", *FAST).stderr  # showing all was asked


def test_a_line_nested_too_deeply_is_a_malformed_line(tmp_path: Path) -> None:
    """A corrupt line (or a `gate` nested thousands deep) exceeds the JSON decoder's recursion
    limit: that line is skipped like any other that is not an event, not a traceback."""
    path = tmp_path / "deep.jsonl"
    write_jsonl(make_events(sessions=2, per_session=10, seed=1), path)
    with path.open("a") as fh:
        fh.write("[" * 100_000 + "\n")
    loaded = ev.read_events(path)
    assert len(loaded.events) == 20 and loaded.skipped == 1
    assert loaded.first_reason == "line 21: not JSON (nested too deeply)"
    result = _eval(str(path), "--json", *FAST)
    assert result.exit_code == 0 and json.loads(result.stdout)["skipped_lines"] == 1


def test_the_prior_rows_count_when_deciding_to_start_workers(monkeypatch: Any) -> None:
    """Every fold fits the prior's rows too (1,864 shipped ones, 30-60 s a fold on a loaded
    2-core host for a 20-event file): a small file of many sessions is not a small job, and
    `--jobs 0` must not leave it on one core because the file alone is below 1,000 rows."""
    import numpy as np
    from heedls.server.acceptance import folds as folds_module
    from heedls.server.acceptance.prior import load_shipped_prior

    started: list[int] = []

    def no_fits(job: Any, sessions: Any, jobs: int = 1, progress: Any = None) -> Any:
        started.append(jobs)
        return {s: (np.full(int((job.groups == s).sum()), 0.5), 0.3) for s in sessions}

    monkeypatch.setattr(ev, "fit_folds", no_fits)
    monkeypatch.setattr(folds_module, "usable_cpus", lambda: 4)
    events = make_events(sessions=5, per_session=8)
    ev.evaluate(events, "context", prior=load_shipped_prior(), jobs=0)
    ev.evaluate(events, "context", prior=None, jobs=0)
    assert started == [4, 1]
