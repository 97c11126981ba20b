"""The report: counts and rates from events whose categories are known by construction."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from heedls.server.events import SuggestionEvent
from heedls.server.telemetry.report import (
    compute_report,
    gate_outcome,
    render_html,
    render_terminal,
    write_html_report,
)
from heedls.server.telemetry.store import TelemetryStore
from rich.console import Console

DAY = 86400.0
T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC


def synthetic(n: int = 600, seed: int = 7) -> tuple[list[SuggestionEvent], dict[str, int]]:
    """Events with a known mix of skipped / hidden / empty / shown, accepted, persisted."""
    rng = random.Random(seed)
    counts = dict.fromkeys(("skipped", "hidden", "empty", "shown", "accepted", "persisted", "known"), 0)
    events = []
    for i in range(n):
        kind = rng.choice(["skipped", "hidden", "empty", "shown", "shown", "shown"])
        counts[kind] += 1
        e = SuggestionEvent(
            id=f"r{i}", session="s", ts=T0 + (i % 3) * DAY + i, language="python",
            file=rng.choice(["a.py", "b.pyi", "c.js"]), provider=rng.choice(["local", "openai"]),
            gate={"stage1": rng.uniform(0.2, 1), "threshold": {"stage1": 0.15, "stage2": 0.3}, "model_version": "g1"},
        )  # fmt: skip
        assert e.gate is not None
        if kind == "skipped":
            e.gate["stage1"] = rng.uniform(0, 0.14)
        elif kind != "empty":
            e.suggestion = "x = 1"
            e.latency_ms = rng.uniform(10, 900)
            e.gate["stage2"] = rng.uniform(0, 0.29) if kind == "hidden" else rng.uniform(0.3, 1)
            if kind == "shown":
                e.shown = True
                e.outcome = rng.choice(["accepted", "rejected", "ignored"])
                if e.outcome == "accepted":
                    counts["accepted"] += 1
                    if rng.random() < 0.8:
                        kept = rng.random() < 0.7
                        e.persisted_30s = True
                        e.persisted_600s = kept
                        counts["known"] += 1
                        counts["persisted"] += kept
        events.append(e)
    return events, counts


def test_totals_match_the_construction() -> None:
    events, counts = synthetic()
    total = compute_report(events)["total"]
    assert total["requests"] == len(events)
    assert total["avoided_stage1"] == counts["skipped"]
    assert total["hidden_stage2"] == counts["hidden"]
    assert total["empty"] == counts["empty"]
    assert total["shown"] == counts["shown"]
    assert total["accepted"] == counts["accepted"]
    assert total["acceptance_rate"] == counts["accepted"] / counts["shown"]
    # persistence: the latest known checkpoint (600 s here), among accepted with any known check
    assert total["persistence_known"] == counts["known"]
    assert total["persistence_rate"] == counts["persisted"] / counts["known"]
    assert total["persistence_by_checkpoint"]["30s"] == 1.0
    assert total["persistence_by_checkpoint"]["120s"] is None
    latencies = [e.latency_ms for e in events if e.latency_ms is not None]
    for p in (50, 90, 95, 99):
        assert total["latency_ms"][f"p{p}"] == np.percentile(latencies, p)


def test_breakdowns_partition_the_events() -> None:
    events, _ = synthetic()
    report = compute_report(events)
    assert list(report["by"]["day"]) == ["2023-11-15", "2023-11-16", "2023-11-17"]
    assert set(report["by"]["provider"]) == {"local", "openai"}
    assert set(report["by"]["file_type"]) == {".py", ".pyi", ".js"}
    assert set(report["by"]["gate_model"]) == {"g1"}
    for dim, buckets in report["by"].items():
        for key in ("requests", "avoided_stage1", "hidden_stage2", "shown", "accepted"):
            assert sum(b[key] for b in buckets.values()) == report["total"][key], (dim, key)
    local = [e for e in events if e.provider == "local"]
    assert report["by"]["provider"]["local"]["requests"] == len(local)


def test_gate_outcome_reading() -> None:
    def ev(**kw: object) -> SuggestionEvent:
        return SuggestionEvent(id="x", session="s", ts=0.0, **kw)  # type: ignore[arg-type]

    assert gate_outcome(ev(shown=True)) == "shown"
    assert gate_outcome(ev(outcome="rejected")) == "shown"  # files that do not set `shown`
    assert gate_outcome(ev(gate={"decision": "skipped"})) == "skipped"
    assert gate_outcome(ev(suggestion="y", gate={"decision": "hidden"})) == "hidden"
    assert gate_outcome(ev(gate={"stage1": 0.1, "threshold": 0.2})) == "skipped"
    assert gate_outcome(ev(gate={"stage1": 0.3, "threshold": 0.2})) == "empty"
    assert gate_outcome(ev(suggestion="y", gate={"stage1": 0.3, "stage2": 0.1, "threshold": 0.2})) == "hidden"
    assert gate_outcome(ev(suggestion="y", gate={"stage2": False})) == "hidden"
    assert (
        gate_outcome(ev(suggestion="y", gate={"stage2": {"score": 0.1}, "threshold": {"stage2": 0.5}}))
        == "hidden"
    )
    assert gate_outcome(ev(suggestion="y")) == "empty"  # no gate information: not the gate's doing
    assert gate_outcome(ev()) == "empty"


def test_empty_report_has_no_invented_numbers() -> None:
    report = compute_report([])
    assert report["total"]["requests"] == 0
    assert report["total"]["acceptance_rate"] is None
    assert report["total"]["latency_ms"]["p95"] is None
    assert "<svg" in render_html(report)


def test_html_is_self_contained_with_plots_and_data() -> None:
    events, counts = synthetic()
    page = render_html(compute_report(events))
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") >= 3
    for external in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert external not in page
    data = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", page, re.DOTALL)
    assert data is not None
    assert json.loads(data.group(1))["total"]["avoided_stage1"] == counts["skipped"]


def test_write_html_report_from_a_store(tmp_path: Path) -> None:
    events, _ = synthetic(60)
    with TelemetryStore(tmp_path / "ev.sqlite3") as store:
        for e in events:
            store.record(e)
        out = write_html_report(store, tmp_path / "out" / "report.html")
    assert out == tmp_path / "out" / "report.html"
    assert "heedls suggestion report" in out.read_text(encoding="utf-8")
    again = write_html_report(tmp_path / "ev.sqlite3", tmp_path / "again.html")
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_terminal_tables() -> None:
    events, counts = synthetic()
    console = Console(file=io.StringIO(), width=100, record=True)
    render_terminal(compute_report(events), console)
    text = console.export_text()
    assert "by provider" in text and "2023-11-16" in text and ".pyi" in text
    assert re.search(
        rf"all\s+{len(events)}\s+{counts['skipped']}\s+{counts['hidden']}\s+{counts['shown']}", text
    )


def strict_json(text: str) -> object:
    def refuse(name: str) -> object:
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_nocode_events_report_the_same_latency_and_gate_reading_as_full_ones() -> None:
    """A nocode event has no suggestion text, only `suggestion_len`: latency and the inferred
    "hidden" must come out as they do from the full event."""
    from heedls.server.telemetry.export import to_record

    events, counts = synthetic()
    for e in events:
        if e.gate is not None:
            e.gate.pop("decision", None)  # inferred from the scores
    full = compute_report(events)["total"]
    nocode = compute_report(to_record(e, "nocode") for e in events)["total"]
    assert nocode["latency_n"] == full["latency_n"] == len([e for e in events if e.latency_ms is not None])
    assert nocode["latency_ms"] == full["latency_ms"]
    assert nocode["hidden_stage2"] == full["hidden_stage2"] == counts["hidden"]
    assert nocode == full


def test_odd_stored_values_count_as_unknown_never_crash() -> None:
    def ev(i: int, **kw: object) -> dict[str, object]:
        return {"id": f"o{i}", "session": "s", "suggestion": "x", "shown": True, "latency_ms": 100.0, **kw}

    events = [
        ev(0, ts=T0),
        ev(1, ts=T0, gate="weird"),
        ev(2, ts=1e20),
        ev(3, ts=1.7e12),  # milliseconds: not invented into seconds
        ev(4),  # no ts
        ev(5, ts="yesterday"),
        ev(6, ts=float("nan"), latency_ms=float("nan")),
        ev(7, ts=T0, latency_ms="fast", decision_ms=float("inf")),
        ev(8, ts=T0, latency_ms=10**400, gate={"stage1": "high", "threshold": {"stage1": "0.5"}}),
    ]
    report = compute_report(events)
    assert report["total"]["requests"] == 9
    assert report["by"]["day"]["unknown"]["requests"] == 5
    assert report["by"]["day"]["2023-11-15"]["requests"] == 4
    assert report["total"]["latency_n"] == 6 and report["total"]["latency_ms"]["p99"] == 100.0
    assert report["period"]["first"] == report["period"]["last"] == "2023-11-15T00:00:00+00:00"
    from heedls.server.telemetry.report import report_json

    assert strict_json(report_json(report)) == json.loads(json.dumps(report))
    assert "<svg" in render_html(report)


def test_report_json_and_page_hold_no_nan() -> None:
    from heedls.server.telemetry.report import report_json

    report = compute_report([])
    report["total"]["latency_ms"]["p50"] = float("nan")  # whatever a later figure may produce
    assert strict_json(report_json(report))["total"]["latency_ms"]["p50"] is None  # type: ignore[index]
    page = render_html(report)
    data = re.search(r"id='report-data'>(.*?)</script>", page, re.DOTALL)
    assert data is not None and "NaN" not in data.group(1)


def test_write_html_keeps_the_previous_page_when_it_cannot_write(tmp_path: Path) -> None:
    from heedls.server.telemetry.report import write_html

    page = tmp_path / "r.html"
    page.write_text("previous")
    (tmp_path / "dir.html").mkdir()
    for bad in (tmp_path / "dir.html", Path("/proc/r.html")):
        with pytest.raises(OSError):
            write_html(compute_report([]), bad)
    assert page.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.html", "r.html"]


def test_events_file_with_a_bom_and_lines_that_are_not_events(tmp_path: Path) -> None:
    from heedls.server.telemetry.export import Skipped
    from heedls.server.telemetry.report import read_events_file

    path = tmp_path / "ev.jsonl"
    lines = [json.dumps(e.to_dict()) for e in synthetic(5)[0]]
    path.write_text("\ufeff" + "\n".join([lines[0], "[1]", "{not json", '{"no": "id"}', *lines[1:], ""]), encoding="utf-8")
    skipped = Skipped("line")
    got = list(read_events_file(path, skipped))
    assert [d["id"] for d in got] == [f"r{i}" for i in range(5)]
    assert skipped.count == 3 and skipped.first is not None and skipped.first.startswith("line 2:")
