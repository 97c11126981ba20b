"""The report: counts and rates from events whose categories are known by construction."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from heedls.server.cli import app
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
from typer.testing import CliRunner

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
        rf"all\s+{len(events)}\s+{counts['skipped']}\s+{counts['hidden']}\s+{counts['empty']}\s+{counts['shown']}",
        text,
    )


def test_a_long_gate_model_version_is_spelled_out_whole_in_an_80_column_terminal() -> None:
    events, _ = synthetic()
    for event in events:
        if event.gate:
            event.gate["model_version"] = "default-20261201-s0-250c2752"
    console = Console(file=io.StringIO(), width=80, record=True)
    render_terminal(compute_report(events), console)
    text = console.export_text()
    assert "#1 = default-20261201-s0-250c2752" in text  # not folded over three lines of the table
    assert re.search(r"^ #1\s+\d+", text, re.MULTILINE)


def test_a_day_with_thousands_of_requests_keeps_its_date_on_one_line_in_80_columns() -> None:
    """A piped report (a CI log, `| less`) is 80 columns wide: four-digit counts used to fold the
    date of the by-day table over two lines."""
    events, _ = synthetic()
    report = compute_report(events)
    for breakdown in (report["total"], *report["by"]["day"].values()):
        for key in ("requests", "avoided_stage1", "hidden_stage2", "empty", "shown", "accepted"):
            breakdown[key] += 10_000
    console = Console(file=io.StringIO(), width=80, record=True)
    render_terminal(report, console)
    text = console.export_text()
    days = list(report["by"]["day"])
    assert days and all(re.search(rf"^ {day}\s+1\d{{4}}\s", text, re.MULTILINE) for day in days), text
    assert max(map(len, text.splitlines())) <= 80


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


def test_a_negative_latency_is_no_measurement_and_the_histogram_counts_every_one_that_is() -> None:
    """A clock set back, or another tool's value: -40 ms was in the percentiles but in no bin of
    the histogram, whose counts then did not add up to `latency_n`."""
    events = [{"id": f"n{i}", "session": "s", "ts": T0, "suggestion": "x", "shown": True,
               "latency_ms": latency, "decision_ms": decision}
              for i, (latency, decision) in enumerate([(-40.0, -3.0), (0.0, 0.0), (12.0, 700.0), (250.0, 900.0)])]
    report = compute_report(events)
    total = report["total"]
    assert total["latency_n"] == 3 and total["latency_ms"]["p50"] is not None and total["latency_ms"]["p50"] >= 0
    assert sum(b["count"] for b in report["latency_histogram"]) == total["latency_n"]
    assert total["decision_ms"]["p50"] is not None and total["decision_ms"]["p50"] >= 0


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


# -- requests with no suggestion are shown, not only counted ----------------------------------------
def one_day_of_each_fate() -> list[SuggestionEvent]:
    """On 2023-11-15: 1 skipped by stage 1, 1 hidden by stage 2, 2 with no suggestion (the gate's
    decision "empty", as the server records them), 1 shown and accepted."""
    def ev(i: int, **kw: object) -> SuggestionEvent:
        return SuggestionEvent(id=f"f{i}", session="s", ts=T0 + i, provider="local", **kw)  # type: ignore[arg-type]

    return [
        ev(0, gate={"decision": "skipped", "stage1": 0.1, "threshold": {"stage1": 0.2}}),
        ev(1, suggestion="y", gate={"decision": "hidden", "stage1": 0.5, "stage2": 0.1}),
        ev(2, gate={"decision": "empty", "stage1": 0.5, "threshold": {"stage1": 0.2, "stage2": None}}),
        # a gate in mode "off" records its stage-1 score without acting on it: still "empty"
        ev(3, gate={"decision": "empty", "mode": "off", "stage1": 0.1, "threshold": {"stage1": 0.2}}),
        ev(4, suggestion="y", shown=True, outcome="accepted", gate={"decision": "shown"}),
    ]


def test_the_gate_decision_empty_is_read_as_empty() -> None:
    assert [gate_outcome(e) for e in one_day_of_each_fate()] == ["skipped", "hidden", "empty", "empty", "shown"]


def test_terminal_tables_show_empty_requests_so_the_columns_add_up() -> None:
    report = compute_report(one_day_of_each_fate())
    console = Console(file=io.StringIO(), width=140, record=True)
    render_terminal(report, console)
    text = console.export_text()
    header = re.search(r"^\s*req\s+avoid1\s+hide2\s+empty\s+shown\s+acc\b", text, re.MULTILINE)
    assert header is not None, text
    # req = avoid1 + hide2 + empty + shown, in every table
    for label in ("all", "2023-11-15", "local", "unknown"):
        assert re.search(rf"^\s*{re.escape(label)}\s+5\s+1\s+1\s+2\s+1\s+1\b", text, re.MULTILINE), (label, text)


def test_html_shows_empty_requests_in_cards_tables_and_the_daily_bars() -> None:
    page = render_html(compute_report(one_day_of_each_fate()))
    assert "<div class='card'>empty (no suggestion)<b>2</b></div>" in page
    for table in re.findall(r"<table>.*?</table>", page, re.DOTALL):
        assert "<th>hidden (stage 2)</th><th>empty</th><th>shown</th>" in table
        assert re.search(r"<td>5</td><td>1</td><td>1</td><td>2</td><td>1</td>", table), table
    bars = page[page.index("Requests per day") : page.index("</svg>", page.index("Requests per day"))]
    segments = dict(re.findall(r"<title>2023-11-15 ([^<:]+): (\d+)</title>", bars))
    assert segments["empty (no suggestion)"] == "2"
    assert sum(int(n) for n in segments.values()) == 5  # every request is in the day's bar


def test_a_table_wider_than_the_page_scrolls_by_itself() -> None:
    events, _ = synthetic()
    for event in events:
        if event.gate:
            event.gate["model_version"] = "default-20261201-s0-250c2752+user1796217301"
    page = render_html(compute_report(events))
    tables = re.findall(r"<table>", page)
    assert len(tables) == 4 and page.count("<div class='wide'><table>") == len(tables)
    assert ".wide{overflow-x:auto}" in page


# -- stored strings are data, never markup -------------------------------------------------------------
HOSTILE = {
    "provider": "[/bold]",
    "link": "[link=https://evil.example]click[/link]",
    "model": "[blink]v",
    "language": "[red]py",
    "emoji": ":warning:",
    "escape": "esc\x1b[2Jx",
}


def hostile_events() -> list[dict[str, object]]:
    base = {"session": "s", "ts": T0, "suggestion": "x", "shown": True, "latency_ms": 5.0}
    return [
        {**base, "id": "h0", "provider": HOSTILE["provider"], "gate": {"model_version": HOSTILE["model"]}},
        {**base, "id": "h1", "provider": HOSTILE["link"], "language": HOSTILE["language"]},
        {**base, "id": "h2", "provider": HOSTILE["emoji"], "file": "notes.[blink]"},
        {**base, "id": "h3", "provider": HOSTILE["escape"]},
    ]


def test_terminal_prints_stored_strings_verbatim_never_as_console_markup() -> None:
    report = compute_report(hostile_events())
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, color_system="truecolor")
    render_terminal(report, console)  # "[/bold]" used to raise rich.errors.MarkupError
    raw = out.getvalue()
    assert "\x1b]8;" not in raw  # no (hidden) OSC 8 hyperlink
    assert "\x1b[5m" not in raw  # no blink
    assert "\x1b[2J" not in raw  # a stored ESC does not reach the terminal...
    plain = Console(file=io.StringIO(), width=200, record=True)
    render_terminal(report, plain)
    text = plain.export_text()
    for shown in ("[/bold]", "[link=https://evil.example]click[/link]", "[blink]v", "[red]py", ":warning:", ".[blink]"):
        assert shown in text, shown
    assert "esc\\x1b[2Jx" in text  # ...it is shown as an escape


def test_embedded_json_cannot_open_a_comment_or_close_the_script() -> None:
    name = "<!--<script></script>&\u2028\u2029"
    events = [{"id": "j0", "session": "s", "ts": T0, "provider": name, "gate": {"model_version": name}}]
    report = compute_report(events)
    page = render_html(report)
    data = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", page, re.DOTALL)
    assert data is not None
    embedded = data.group(1)
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in embedded, raw
    assert "\\u003c!--\\u003cscript\\u003e" in embedded
    assert json.loads(embedded) == json.loads(json.dumps(report))  # the same data
    assert page.count("<script") == 1 and page.count("</script>") == 1


# -- a file of snapshots counts each suggestion once ------------------------------------------------
def test_latest_snapshots_keep_the_last_record_of_each_id_in_file_order() -> None:
    from heedls.server.telemetry.report import latest_snapshots

    records: list[dict[str, object]] = [
        {"session": "s", "id": "a", "outcome": None},
        {"session": "s", "id": "b", "outcome": None},
        {"session": "s", "id": "a", "outcome": "accepted"},
        {"session": "s", "id": 1, "outcome": "rejected"},
        {"session": "s", "id": "1", "outcome": "ignored"},  # not the same id as the number 1
        {"session": "s", "id": "b", "outcome": "rejected"},
    ]
    assert latest_snapshots(records) == [
        {"session": "s", "id": "a", "outcome": "accepted"},
        {"session": "s", "id": 1, "outcome": "rejected"},
        {"session": "s", "id": "1", "outcome": "ignored"},
        {"session": "s", "id": "b", "outcome": "rejected"},
    ]


def test_the_same_id_in_two_sessions_is_two_suggestions(tmp_path: Path) -> None:
    """Tools that number their events per session (e0, e1, … in each) are read as
    `heedls eval acceptance` reads them: one suggestion per (session, id)."""
    lines = [
        {"id": f"e{i}", "session": session, "ts": T0 + i, "shown": True,
         "outcome": "accepted" if session == "s1" else "rejected"}
        for session in ("s1", "s2", "s3") for i in range(4)
    ]
    path = tmp_path / "per-session.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = CliRunner().invoke(app, ["telemetry", "report", "--events", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["total"]["shown"] == 12
    assert report["total"]["accepted"] == 4
    assert report["total"]["rejected"] == 8
