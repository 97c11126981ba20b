"""Export round trips (JSONL, CSV, Parquet) at both privacy levels; nocode leaks no code."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from heedls.server.events import SuggestionEvent, read_jsonl
from heedls.server.telemetry.export import (
    COLUMNS,
    csv_rows,
    export,
    export_store,
    finite,
    flatten,
    parquet_schema,
    parse_since,
    read_parquet,
    to_record,
)
from heedls.server.telemetry.store import TelemetryStore

CODE = (
    "zebra_quantum_helper",
    "alpha_unique_arg",
    "trailing_marker_xyz",
    "beta_unique * 42",
    "secret_module",
)


def sample_events() -> list[SuggestionEvent]:
    events = []
    for i in range(12):
        e = SuggestionEvent(
            id=f"id-{i}",
            session=f"sess-{i % 3}",
            ts=1_700_000_000.0 + 3600 * i,
            language="python",
            file="pkg/secret_module.py",
            prefix=f"def zebra_quantum_helper(alpha_unique_arg):\n    # step {i}\n    ",
            suffix="\n# trailing_marker_xyz\n",
            suggestion=None if i % 4 == 0 else "return alpha_unique_arg + beta_unique * 42\n    pass",
            shown=i % 4 != 0,
            outcome=(None, "accepted", "rejected", "ignored")[i % 4],
            latency_ms=None if i % 4 == 0 else 100.0 + i,
            decision_ms=None if i % 4 in (0, 3) else 900.0,
            provider="local",
            model="ngram-v1",
            persisted_30s=True if i % 4 == 1 else None,
            gate={"stage1": 0.1 * (i % 10), "stage2": None if i % 4 == 0 else 0.6, "threshold": 0.15,
                  "model_version": "cdhf-1", "decision": "skipped" if i % 4 == 0 else "shown"},
        )  # fmt: skip
        e.extra["acceptance_features"] = {"prefix_len": 40.0, "after_colon": True}
        e.extra["line_text"] = "def zebra_quantum_helper(alpha_unique_arg):"  # code in an unknown extra
        e.extra["reason"] = "dismissed"
        events.append(e)
    return events


def assert_no_code(text: str) -> None:
    for needle in CODE:
        assert needle not in text, needle


# -- JSONL ------------------------------------------------------------------------------------------
def test_full_jsonl_is_exactly_the_schema_and_round_trips(tmp_path: Path) -> None:
    events = sample_events()
    out = tmp_path / "full.jsonl"
    assert export(events, "jsonl", "full", out) == len(events)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [e.to_dict() for e in events]
    back = list(read_jsonl(out))
    assert [b.to_dict() for b in back] == [e.to_dict() for e in events]


def test_nocode_jsonl_has_no_code_but_lengths_outcomes_and_features(tmp_path: Path) -> None:
    events = sample_events()
    out = tmp_path / "nocode.jsonl"
    export(events, "jsonl", "nocode", out)
    text = out.read_text(encoding="utf-8")
    assert_no_code(text)
    back = list(read_jsonl(out))  # still readable by the schema reader (eval acceptance)
    assert len(back) == len(events)
    for original, got in zip(events, back, strict=True):
        assert got.prefix is None and got.suffix is None and got.suggestion is None
        assert got.extra["prefix_len"] == len(original.prefix or "")
        assert got.extra["suffix_len"] == len(original.suffix or "")
        if original.suggestion is None:
            assert got.extra["suggestion_len"] is None and got.extra["suggestion_lines"] is None
        else:
            assert got.extra["suggestion_len"] == len(original.suggestion)
            assert got.extra["suggestion_lines"] == 2
        assert got.outcome == original.outcome and got.shown == original.shown
        assert got.label() == original.label() and got.label("persisted") == original.label("persisted")
        assert got.session == original.session and got.ts == original.ts
        assert got.extra["acceptance_features"] == original.extra["acceptance_features"]
        assert got.extra["reason"] == "dismissed"
        assert "line_text" not in got.extra
        assert got.gate == original.gate
        assert got.file is not None and got.file.endswith(".py") and "secret" not in got.file


def test_nocode_hash_is_stable_so_files_can_be_grouped() -> None:
    a, b = sample_events()[:2]
    assert to_record(a, "nocode")["file"] == to_record(b, "nocode")["file"]


# -- CSV --------------------------------------------------------------------------------------------
def test_csv_round_trip_with_flattened_gate() -> None:
    events = sample_events()
    buffer = io.StringIO()
    export(events, "csv", "full", buffer)
    rows = csv_rows(buffer.getvalue())
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == len(events)
    for e, row in zip(events, rows, strict=True):
        assert row["id"] == e.id and float(row["ts"]) == e.ts
        assert row["prefix"] == e.prefix  # multi-line text survives quoting
        assert row["shown"] == ("true" if e.shown else "false")
        assert row["outcome"] == (e.outcome or "")
        assert e.gate is not None
        assert float(row["gate_stage1"]) == pytest.approx(e.gate["stage1"])
        assert row["gate_threshold"] == "0.15" and row["gate_model_version"] == "cdhf-1"
        assert row["gate_decision"] == e.gate["decision"]
        assert json.loads(row["gate_json"]) == e.gate
        assert int(row["prefix_len"]) == len(e.prefix or "")
        assert json.loads(row["extra_json"])["acceptance_features"] == e.extra["acceptance_features"]


def test_nocode_csv_has_no_code() -> None:
    buffer = io.StringIO()
    export(sample_events(), "csv", "nocode", buffer)
    assert_no_code(buffer.getvalue())
    rows = csv_rows(buffer.getvalue())
    assert all(r["prefix"] == "" and r["suggestion"] == "" for r in rows)
    assert {r["suggestion_len"] for r in rows} == {
        "",
        str(len("return alpha_unique_arg + beta_unique * 42\n    pass")),
    }


# -- Parquet ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("privacy", ["full", "nocode"])
def test_parquet_round_trip_and_stable_schema(tmp_path: Path, privacy: str) -> None:
    events = sample_events()
    events[5].gate = {"stage1": {"score": 0.3}, "threshold": {"stage1": 0.1, "stage2": 0.2}}  # odd shape
    out = tmp_path / "ev.parquet"
    assert export(events, "parquet", privacy, out) == len(events)  # type: ignore[arg-type]
    assert pq.read_schema(out).remove_metadata() == parquet_schema()
    rows = list(read_parquet(out))
    assert [r["id"] for r in rows] == [e.id for e in events]
    assert [r["outcome"] for r in rows] == [e.outcome for e in events]
    assert [r["shown"] for r in rows] == [e.shown for e in events]
    assert rows[5]["gate_stage1"] is None and json.loads(rows[5]["gate_json"])["threshold"]["stage2"] == 0.2
    assert rows[1]["gate_stage1"] == pytest.approx(0.1)
    assert [r["suggestion_len"] for r in rows] == [
        None if e.suggestion is None else len(e.suggestion) for e in events
    ]
    if privacy == "nocode":
        assert_no_code(json.dumps(rows))
    else:
        assert rows[1]["prefix"] == events[1].prefix
    empty = tmp_path / "empty.parquet"
    assert export([], "parquet", "full", empty) == 0
    assert pq.read_schema(empty).remove_metadata() == parquet_schema()


def test_parquet_without_a_file_is_stdouts_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # (the CLI refuses a terminal; a pipe or a redirected file gets the Parquet bytes)
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    assert export(sample_events(), "parquet", "full", None) == len(sample_events())
    assert not out.closed and pq.read_table(io.BytesIO(out.getvalue())).num_rows == len(sample_events())


def test_unknown_format_or_privacy_is_refused() -> None:
    with pytest.raises(ValueError):
        export([], "xml", "full", io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        export([], "jsonl", "some", io.StringIO())  # type: ignore[arg-type]


# -- --since ----------------------------------------------------------------------------------------
def test_parse_since_durations_and_dates() -> None:
    now = 1_700_000_000.0
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("12h", now) == now - 12 * 3600
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2w", now) == now - 14 * 86400
    assert parse_since("2023-11-14T22:13:20+00:00") == 1_700_000_000.0
    assert parse_since("2023-11-14T22:13:20Z") == 1_700_000_000.0
    assert isinstance(parse_since("2023-11-14"), float)
    with pytest.raises(ValueError, match="--since"):
        parse_since("last tuesday")


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Tokyo"])
def test_a_date_at_the_calendars_ends_is_before_or_after_every_event(tz: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--since 9999-12-31T23:00` west of UTC raised OverflowError (a traceback), east of it "year
    10000 is out of range"; `--since 0001-01-01` said "year 0 is out of range". The first is after
    every event, the second before."""
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        assert parse_since("9999-12-31T23:00") > 1e11  # after every event (inf where it overflows)
        assert parse_since("0001-01-01") < -6e10
        assert parse_since("0001-01-01T00:00+05:00") < -6e10
    finally:
        monkeypatch.undo()
        time.tzset()


# -- scale ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_100k_events_export_streamed(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    base = sample_events()[1]
    with TelemetryStore(path, batch_size=4096) as store:
        for i in range(100_000):
            base.id = f"ev-{i:06d}"
            base.ts = 1_700_000_000.0 + i
            store.record(base)
        assert store.flush(timeout=120)
    timings = {}
    for fmt, privacy in (("jsonl", "full"), ("jsonl", "nocode"), ("csv", "nocode"), ("parquet", "full")):
        out = tmp_path / f"out.{fmt}.{privacy}"
        t0 = time.perf_counter()
        assert export_store(path, fmt, privacy, out) == 100_000  # type: ignore[arg-type]
        timings[f"{fmt}/{privacy}"] = round(time.perf_counter() - t0, 2)
    print("100k export seconds:", timings)
    assert sum(1 for _ in read_jsonl(tmp_path / "out.jsonl.nocode")) == 100_000
    assert_no_code((tmp_path / "out.csv.nocode").read_text(encoding="utf-8"))
    assert pq.ParquetFile(tmp_path / "out.parquet.full").metadata.num_rows == 100_000


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_an_export_that_fails_half_way_leaves_the_previous_file_as_it_was(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"events.{fmt}"
    assert export(sample_events(), fmt, "full", out) == 12  # type: ignore[arg-type]
    before = out.read_bytes()

    def breaks_after_five() -> object:
        for i, event in enumerate(sample_events()):
            if i == 5:
                raise KeyboardInterrupt  # Ctrl-C, a full disk, a corrupt row: the same for the file
            yield event

    with pytest.raises(KeyboardInterrupt):
        export(breaks_after_five(), fmt, "full", out)  # type: ignore[arg-type]
    assert out.read_bytes() == before  # not truncated, not half-overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left
    assert export(sample_events()[:3], fmt, "full", out) == 3  # type: ignore[arg-type]
    assert out.read_bytes() != before  # a complete export does replace it


def test_an_interrupted_store_export_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from heedls.server.telemetry import export as export_module

    db = tmp_path / "events.sqlite3"
    store = TelemetryStore(db)
    for event in sample_events():
        store.record(event)
    store.close()
    out = tmp_path / "out.jsonl"
    assert export_store(db, "jsonl", "full", out) == 12
    before = out.read_bytes()
    real = export_module.parse_row
    calls = []

    def breaks(raw: object, compressed: bool):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full")
        return real(raw, compressed)

    monkeypatch.setattr(export_module, "parse_row", breaks)
    with pytest.raises(OSError):
        export_store(db, "jsonl", "full", out)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == ["out.jsonl"]


# -- stores written with privacy "nocode", odd rows ------------------------------------------------
def strict_json(text: str) -> object:
    """json.loads that refuses NaN/Infinity, as a strict receiver does."""

    def refuse(name: str) -> object:
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def raw_store(path: Path, rows: list[str | bytes], good: int = 2) -> None:
    """A store holding `good` ordinary events, then `rows` as they are (ids x0, x1, …)."""
    with TelemetryStore(path) as store:
        for event in sample_events()[1 : 1 + good]:
            store.record(event)
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO events(id, ts, recorded, data) VALUES (?, ?, ?, ?)",
            [(f"x{i}", 1_700_000_000.0 + i, 0.0, data) for i, data in enumerate(rows)],
        )
    conn.close()


def export_rows(path: Path, fmt: str, privacy: str, tmp_path: Path) -> list[dict[str, object]]:
    out = tmp_path / f"out.{fmt}"
    export_store(path, fmt, privacy, out)  # type: ignore[arg-type]
    if fmt == "parquet":
        return list(read_parquet(out))
    text = out.read_text(encoding="utf-8")
    if fmt == "csv":
        return csv_rows(text)  # type: ignore[return-value]
    return [strict_json(line) for line in text.splitlines()]  # type: ignore[misc]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("privacy", ["full", "nocode"])
def test_a_store_written_with_nocode_exports_its_lengths_and_hashes_file_names_once(
    tmp_path: Path, fmt: str, privacy: str
) -> None:
    events = sample_events()[1:4]
    path = tmp_path / "nc.sqlite3"
    with TelemetryStore(path, privacy="nocode") as store:
        for event in events:
            store.record(event)
    rows = export_rows(path, fmt, privacy, tmp_path)
    assert len(rows) == 3
    for event, row in zip(events, rows, strict=True):
        assert event.prefix is not None and event.suggestion is not None
        assert str(row["prefix_len"]) == str(len(event.prefix))
        assert str(row["suffix_len"]) == str(len(event.suffix or ""))
        assert str(row["suggestion_len"]) == str(len(event.suggestion))
        assert str(row["suggestion_lines"]) == "2"
        assert row["file"] == to_record(event, "nocode")["file"]  # the store's hash, not a hash of it


def test_nocode_records_read_back_keep_their_lengths() -> None:
    once = to_record(sample_events()[1], "nocode")
    assert to_record(once, "nocode") == once


def test_nocode_keeps_only_values_heedls_writes_itself() -> None:
    """Known enumerations, numbers and booleans survive; any other string, and objects keyed by
    names heedls does not use, are dropped (they may be code)."""
    event = sample_events()[1]
    event.gate = {"stage1": 0.9, "stage2": 0.8, "threshold": {"stage1": 0.1, "stage2": 0.2},
                  "model_version": "cdhf-1+user1700000000", "decision": "shown", "mode": "cascade",
                  "note": "SECRET_GATE = x()", "decision_why": "x"}  # fmt: skip
    event.extra.update(
        reason="SECRET_REASON()", kind="SECRET_KIND", tokens={"SECRET_KEY_TOKEN": 1.0}, source="ngram",
        gate_skipped="stage2", acceptance_features={"context": {"after_colon": 1.0, "in_string": 0.0}},
        weights=[0.5, 1.5], nested={"a": [1, 2, {"b": 3}]}, num=3, hunter2_key=1, confidence=0.7,
        typing_cps=3.5,
    )  # fmt: skip
    record = to_record(event, "nocode")
    assert "SECRET" not in json.dumps(record)
    assert record["gate"] == {"stage1": 0.9, "stage2": 0.8, "threshold": {"stage1": 0.1, "stage2": 0.2},
                              "model_version": "cdhf-1+user1700000000", "decision": "shown", "mode": "cascade"}  # fmt: skip
    # names are free text too: only the extra fields heedls itself writes survive, numbers or not
    for dropped in ("reason", "kind", "tokens", "nested", "line_text", "num", "weights", "hunter2_key"):
        assert dropped not in record, dropped
    assert record["source"] == "ngram" and record["gate_skipped"] == "stage2"
    assert record["confidence"] == 0.7 and record["typing_cps"] == 3.5
    assert record["acceptance_features"] == {"context": {"after_colon": 1.0, "in_string": 0.0}}
    event.extra["reason"] = "typed-over"
    assert to_record(event, "nocode")["reason"] == "typed-over"
    event.gate["model_version"] = "print(open('.env').read())"
    assert "model_version" not in to_record(event, "nocode")["gate"]
    event.gate.update(decision={"why": "SECRET"}, mode=["cascade"])  # not strings: dropped, not a TypeError
    assert "decision" not in to_record(event, "nocode")["gate"] and "mode" not in to_record(event, "nocode")["gate"]


@pytest.mark.parametrize("privacy", ["full", "nocode"])
def test_non_finite_numbers_are_written_as_null(tmp_path: Path, privacy: str) -> None:
    event = sample_events()[1]
    event.latency_ms = float("nan")
    event.decision_ms = float("inf")
    assert event.gate is not None
    event.gate["stage1"] = float("-inf")
    buffer = io.StringIO()
    export([event], "jsonl", privacy, buffer)  # type: ignore[arg-type]
    record = strict_json(buffer.getvalue())
    assert isinstance(record, dict)
    assert record["latency_ms"] is None and record["decision_ms"] is None and record["gate"]["stage1"] is None
    path = tmp_path / "nan.sqlite3"
    raw_store(path, ['{"id":"x0","session":"s","ts":1700000000,"latency_ms":NaN,"gate":{"stage2":Infinity}}'])
    rows = export_rows(path, "jsonl", privacy, tmp_path)
    odd = next(r for r in rows if r["id"] == "x0")
    assert odd["latency_ms"] is None and odd["gate"] == {"stage2": None}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("privacy", ["full", "nocode"])
def test_rows_that_are_not_events_are_skipped_and_counted_in_every_format(
    tmp_path: Path, fmt: str, privacy: str
) -> None:
    from heedls.server.telemetry.export import Skipped

    path = tmp_path / "bad.sqlite3"
    raw_store(path, [b"\x78\x9cnot zlib" * 200, "{not json", "[1]", b"\xff\xfe not utf-8"])
    skipped = Skipped()
    out = tmp_path / f"out.{fmt}"
    assert export_store(path, fmt, privacy, out, skipped=skipped) == 2  # type: ignore[arg-type]
    assert skipped.count == 4
    message = skipped.message(path)
    assert message is not None and "skipped 4 rows" in message and "cannot decompress" in message


def test_odd_stored_values_become_null_in_parquet_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "odd.sqlite3"
    raw_store(
        path,
        [
            '{"id":"x0","session":"s","ts":"yesterday","latency_ms":"fast","shown":"yes"}',
            '{"id":"x1","session":"s","latency_ms":1' + "0" * 400 + ',"decision_ms":1e400}',
            '{"id":"x2","session":7,"ts":1e20,"prefix":null,"suffix":null,"suggestion":null,"prefix_len":'
            + str(2**70) + ',"suffix_len":-1,"suggestion_len":3,"suggestion_lines":1,"gate":"weird"}',
        ],
    )  # fmt: skip
    for fmt in ("parquet", "csv"):
        rows = {r["id"]: r for r in export_rows(path, fmt, "full", tmp_path)}
        empty = None if fmt == "parquet" else ""
        assert rows["x0"]["ts"] == empty and rows["x0"]["latency_ms"] == empty and rows["x0"]["shown"] == empty
        assert rows["x1"]["ts"] == empty and rows["x1"]["latency_ms"] == empty and rows["x1"]["decision_ms"] == empty
        assert rows["x2"]["prefix_len"] == empty and rows["x2"]["suffix_len"] == empty
        assert str(rows["x2"]["suggestion_len"]) == "3" and rows["x2"]["session"] == "7"
        assert str(rows["x2"]["ts"]) == str(1e20) and rows["x2"]["gate_json"] == '"weird"'


def test_dash_is_stdout_not_a_file_named_dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ev.sqlite3"
    raw_store(path, [])
    assert export_store(path, "jsonl", "full", Path("-")) == 2
    assert export(sample_events()[:1], "csv", "nocode", Path("-")) == 1
    assert len(capsys.readouterr().out.splitlines()) == 2 + 2
    assert not (tmp_path / "-").exists()


def test_a_pipe_or_device_is_written_in_place_never_replaced(tmp_path: Path) -> None:
    """`-o /dev/stdout`, a FIFO: renaming a file over it would replace the device (as root)."""
    import os
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert export(sample_events(), "jsonl", "full", fifo) == 12
    reader.join(10)
    assert len(received[0].splitlines()) == 12
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    with pytest.raises(IsADirectoryError):
        export(sample_events(), "jsonl", "full", tmp_path)
    with pytest.raises(OSError):
        export(sample_events(), "csv", "full", tmp_path / "missing" / "x.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_the_live_gates_per_stage_thresholds_fill_the_threshold_column_with_the_deciding_one(tmp_path: Path) -> None:
    events = sample_events()[:3]
    thresholds = {"stage1": 0.2, "stage2": 0.35}
    decisions = ["skipped", "shown", "hidden"]
    for event, decision in zip(events, decisions, strict=True):
        event.gate = {"stage1": 0.5, "stage2": 0.4, "threshold": dict(thresholds), "decision": decision}
    buffer = io.StringIO()
    export(events, "csv", "full", buffer)
    assert [float(r["gate_threshold"]) for r in csv_rows(buffer.getvalue())] == [0.2, 0.35, 0.35]
    export(events, "parquet", "nocode", tmp_path / "g.parquet")
    assert [r["gate_threshold"] for r in read_parquet(tmp_path / "g.parquet")] == [0.2, 0.35, 0.35]


def test_a_lone_surrogate_survives_jsonl_and_is_a_replacement_character_in_csv_and_parquet(tmp_path: Path) -> None:
    event = sample_events()[1]
    event.suffix = "bad \udc80 text"  # an editor's broken UTF-16
    out = tmp_path / "e.jsonl"
    export([event], "jsonl", "full", out)
    assert next(iter(read_jsonl(out))).suffix == "bad \udc80 text"
    buffer = io.StringIO()
    export([event], "csv", "full", buffer)
    assert csv_rows(buffer.getvalue())[0]["suffix"] == "bad \ufffd text"
    export([event], "parquet", "full", tmp_path / "e.parquet")
    assert next(read_parquet(tmp_path / "e.parquet"))["suffix"] == "bad \ufffd text"


# -- the fast path writes exactly what the per-event reference writes -------------------------------
_TEXTS = (
    None, "", "x", "def f():\n    return 'héllo 🌍 世界'\n", "a, \"quoted\"\r\nb", "bad \udc80 half",
    "\t" * 3, "return alpha_unique_arg + beta_unique * 42\n    pass",
)  # fmt: skip
_FILES = (None, "pkg/mod.py", "ü/naïve.py", "Makefile", "a.tar.gz", "x.suffix_far_too_long_", "3f2a9c01d4e5.py", 42)
_SCORES = (None, 0.25, 1, True, float("nan"), float("inf"), "0.3", {"score": 0.7, "show": True}, [0.1, None])
_THRESHOLDS = (None, 0.15, {"stage1": 0.1, "stage2": 0.2}, {"stage2": 0.3}, {"stage1": None}, {}, "0.5")


def _varied_gate(pick: Any) -> Any:
    shape = pick(("dict", "dict", "dict", "dict", None, "weird", [1, 2], "missing"))
    if shape != "dict":
        return shape
    gate: dict[str, Any] = {}
    for key, choices in (
        ("stage1", _SCORES), ("stage2", _SCORES), ("threshold", _THRESHOLDS),
        ("model_version", ("cdhf-1", "default-20261129-s0-1033ff91+user1700000000", "print(x)", 3, None)),
        ("decision", ("skipped", "hidden", "shown", "empty", "weird", None, {"x": 1})),
        ("mode", ("off", "stage1", "cascade", "SECRET", None)),
        ("note", ("SECRET_GATE = x()", 1, None, "\udc80")),
        ("ünï", (1, "é")),
    ):  # fmt: skip
        if pick((True, True, False)):
            gate[key] = pick(choices)
    return gate


def varied_records(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Events as a store may hold them: every field sometimes missing, null, of another type, odd
    (NaN, huge ints, lone surrogates, unicode code), nested gate scores and feature rows, extra
    fields heedls writes (valid or not) and others, rows that are nocode already; keys in varied order."""
    import random

    from heedls.server.acceptance.features import STAGE_FEATURES

    rng = random.Random(seed)
    pick = rng.choice
    feature = sorted(STAGE_FEATURES["context"])[:3]
    records = []
    for i in range(n):
        fields: dict[str, Any] = {
            "schema": pick(("heedls.suggestion/1", "heedls.suggestion/1", None, 2)),
            "id": f"v{i}", "session": pick(("s1", "s2", "séance", 7)),
            "ts": pick((1_700_000_000.0 + i, 1_700_000_000 + i, "yesterday", True, 1e20, float("nan"))),
            "language": pick(("python", None, 3)), "file": pick(_FILES),
            "prefix": pick(_TEXTS), "suffix": pick(_TEXTS), "suggestion": pick(_TEXTS),
            "shown": pick((True, False, None, "yes")),
            "outcome": pick(("accepted", "rejected", "ignored", None)),
            "latency_ms": pick((12.5, 7, None, float("nan"), float("inf"), "fast", 10**400, True)),
            "decision_ms": pick((900.0, None, -1.0, 2**70)),
            "provider": pick(("local", None, {"a": 1})), "model": pick(("ngram-v1", None, ["m"])),
            "persisted_30s": pick((True, False, None, 1)), "persisted_120s": pick((True, None)),
            "persisted_600s": pick((False, None, "no")), "gate": _varied_gate(pick),
        }  # fmt: skip
        extras: dict[str, Any] = {
            "acceptance_features": pick((
                {"context": {feature[0]: 1.0, feature[1]: 0.25}, "suggestion": {feature[2]: True}},
                {"context": {"SECRET_KEY": 1.0}}, {"context": {feature[0]: "code"}}, [1.0, None], None,
            )),
            "reason": pick(("dismissed", "typed-through", "SECRET_REASON()", 3)),
            "source": pick(("ngram", "chat", "SECRET", None)), "gate_skipped": pick(("stage1", "stage9")),
            "confidence": pick((0.7, float("nan"), None, "high")), "logprob": pick((-1.5, [0.1, 0.2])),
            "jedi_agree": pick((True, None)), "typing_cps": 3.5, "displayed_ts": 1_700_000_000.5,
            "persisted_similarity": pick((0.9, None)), "synthetic": pick((True, False)), "suffix_known": True,
            "line_text": pick(("def zebra_quantum_helper(alpha_unique_arg):", "bad \udc80")),
            "ключ": pick(("значение", 1)),
            "nested": {"a": [1, 2, {"b": float("-inf")}]}, "hunter2_key": 1,
            "prefix_len": pick((40, -1, 2**70, "40", None)), "suffix_len": pick((3, None)),
            "suggestion_len": pick((5, None)), "suggestion_lines": pick((1, None, 0)),
        }  # fmt: skip
        record = {k: v for k, v in fields.items() if v != "missing" and rng.random() > 0.08}
        for key in rng.sample(sorted(extras), rng.randrange(len(extras) + 1)):
            record[key] = extras[key]
        if rng.random() < 0.2:  # a row of a nocode store: no code, lengths, file hashed
            record.update(prefix=None, suffix=None, suggestion=None, file=pick((None, "3f2a9c01d4e5.py")))
            record.update(prefix_len=12, suffix_len=0, suggestion_len=None, suggestion_lines=None)
        records.append(record)
    return records


def csv_cell(value: Any) -> Any:
    """How the CSV export writes a flattened value: null empty, booleans lower case."""
    if value is None:
        return ""
    return ("true" if value else "false") if isinstance(value, bool) else value


def reference_export(records: list[dict[str, Any]], fmt: str, privacy: str, out: Path) -> None:
    """The definition, one record at a time: to_record, then a JSON line (strict JSON, NaN as null, a
    lone surrogate escaped) or flatten() written as a CSV row or a Parquet row."""
    import csv

    import pyarrow as pa

    exported = [to_record(r, privacy) for r in records]  # type: ignore[arg-type]
    if fmt == "jsonl":
        lines = []
        for record in exported:
            line = json.dumps(finite(record), ensure_ascii=False, separators=(",", ":"))
            if any("\ud800" <= c <= "\udfff" for c in line):
                line = json.dumps(finite(record), separators=(",", ":"))
            lines.append(line + "\n")
        out.write_text("".join(lines), encoding="utf-8", newline="")
    elif fmt == "csv":
        with open(out, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(COLUMNS)
            for record in exported:
                row = flatten(record)
                writer.writerow([csv_cell(row[c]) for c in COLUMNS])
    else:
        pq.write_table(pa.Table.from_pylist([flatten(r) for r in exported], schema=parquet_schema()), out)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("privacy", ["full", "nocode"])
def test_every_format_writes_exactly_what_the_per_record_definition_gives(
    tmp_path: Path, fmt: str, privacy: str
) -> None:
    """The exports flatten and filter a batch at a time (a column at a time for CSV and Parquet);
    on records of every odd shape the output is the same, byte for byte (Parquet: the same table)."""
    records = varied_records(1500)
    fast, reference = tmp_path / f"fast.{fmt}", tmp_path / f"reference.{fmt}"
    assert export(records, fmt, privacy, fast) == len(records)  # type: ignore[arg-type]
    reference_export(records, fmt, privacy, reference)
    if fmt == "parquet":
        assert pq.read_schema(fast).remove_metadata() == parquet_schema()
        assert pq.read_table(fast).to_pylist() == pq.read_table(reference).to_pylist()
    else:
        assert fast.read_bytes() == reference.read_bytes()


def test_csv_and_parquet_batches_do_not_change_the_output(tmp_path: Path) -> None:
    from heedls.server.telemetry.export import export_csv, export_parquet

    records = varied_records(300)
    one, many = io.StringIO(), io.StringIO()
    export_csv(records, "nocode", one, batch=1000)
    export_csv(records, "nocode", many, batch=7)
    assert one.getvalue() == many.getvalue()
    export_parquet(records, "full", tmp_path / "one.parquet", chunk=1000)
    export_parquet(records, "full", tmp_path / "many.parquet", chunk=64)
    assert pq.ParquetFile(tmp_path / "many.parquet").metadata.num_row_groups == 5  # row groups of `chunk`
    assert pq.read_table(tmp_path / "one.parquet").equals(pq.read_table(tmp_path / "many.parquet"))


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ({"prefix_len": 40.0, "after_colon": True, "indent_level": None, "at_line_start": 1}, True),
        ({"context": {"prefix_len": 1.0}, "suggestion": {"after_colon": False}}, True),
        ({}, True),
        ({"prefix_len": 40.0, "SECRET_NAME": 1.0}, False),  # a name heedls does not write
        ({"prefix_len": "def f(): pass"}, False),  # a string
        ({"context": {"prefix_len": [1.0, {"after_colon": "x"}]}}, False),
        ([1.0, None, True, [2]], True),
        ([1.0, "x"], False),
    ],
)
def test_nocode_keeps_a_feature_row_only_when_all_its_names_are_heedls_names_and_values_numbers(
    value: Any, kept: bool
) -> None:
    event = sample_events()[1]
    event.extra["acceptance_features"] = value
    assert ("acceptance_features" in to_record(event, "nocode")) is kept
