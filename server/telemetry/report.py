"""`heedls telemetry report`: how suggestions are received, from the stored (or any) events.

Definitions (also in docs/telemetry.md):
- *request*: one event (one inline-completion request that reached the pipeline).
- *avoided* (stage 1): the gate skipped the request before any provider call.
- *hidden* (stage 2): a suggestion was produced, and the gate hid it.
- *empty*: no suggestion (the provider had none or post-processing removed it), not the gate's doing.
- *shown*: `shown` is true (or an outcome was recorded, for files from tools that do not set `shown`).
- *acceptance rate*: accepted / shown. *persistence rate*: of the accepted suggestions whose
  persistence is known, the share still in the code at the latest known checkpoint (600 s, else
  120 s, else 30 s); per-checkpoint rates are given too.
- *latency*: `latency_ms` of events that carry a suggestion (request → suggestion ready); a nocode
  event carries one when its `suggestion_len` is known.
Days are UTC calendar days. Odd stored values count as unknown, never as a crash: a `ts` that is not
a number of seconds a date can be made of (missing, a string, NaN, 1e20, milliseconds) puts the event
on the day `unknown`; a `gate` that is not an object is no gate; a non-numeric or non-finite
`latency_ms`/`decision_ms` is left out of the percentiles, and so is a negative one (no duration: a
clock set back, another tool's value), which the histogram had no bin for. Report JSON never holds
NaN/Infinity.

How the gate's decision is read from an event: `gate["decision"]` ("skipped" | "hidden" | "shown" |
"empty") when present; otherwise inferred: a stage score (or boolean) below its threshold (`threshold` a number or
`{"stage1": t1, "stage2": t2}`) means that stage said no.
"""

from __future__ import annotations

import errno
import html
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

from heedls.server.events import SuggestionEvent, json_lines
from heedls.server.stats import percentile
from heedls.server.telemetry.export import Skipped, count_value, dumps, number, write_text_file

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)
CHECKPOINT_FIELDS: tuple[str, ...] = (
    "persisted_30s",
    "persisted_120s",
    "persisted_600s",
)
DIMENSIONS: tuple[str, ...] = ("day", "provider", "file_type", "gate_model")


def _threshold(gate: dict[str, Any], stage: str) -> float | None:
    value = gate.get("threshold")
    if isinstance(value, dict):
        value = value.get(stage)
    return number(value)


def _stage_says_no(gate: dict[str, Any], stage: str) -> bool | None:
    score = gate.get(stage)
    if isinstance(score, bool):
        return not score
    if isinstance(score, dict):  # {"score": .., "show": ..} shapes
        if isinstance(score.get("show"), bool):
            return not score["show"]
        score = score.get("score")
    value = number(score)
    if value is not None:
        threshold = _threshold(gate, stage)
        if threshold is not None:
            return value < threshold
    return None


Item: TypeAlias = SuggestionEvent | Mapping[str, Any]


def _as_dict(event: Item) -> Mapping[str, Any]:
    if isinstance(event, SuggestionEvent):
        data: dict[str, Any] = event.to_dict()
        return data
    return event


def _gate(d: Mapping[str, Any]) -> dict[str, Any]:
    gate = d.get("gate")
    return gate if isinstance(gate, dict) else {}


def suggestion_length(d: Mapping[str, Any]) -> int | None:
    """Characters of the event's suggestion: the text's, else the recorded `suggestion_len` (a
    nocode event); None when there was none or it is unknown."""
    text = d.get("suggestion")
    if isinstance(text, str):
        return len(text)
    return count_value(d.get("suggestion_len")) if text is None else None


def gate_outcome(event: Item) -> str:
    """'shown' | 'skipped' (stage 1) | 'hidden' (stage 2) | 'empty' (no suggestion, not the gate)."""
    d = _as_dict(event)
    if d.get("shown") or d.get("outcome") is not None:
        return "shown"
    gate = _gate(d)
    decision = gate.get("decision")
    if decision in ("skipped", "hidden", "shown", "empty"):
        return "empty" if decision == "shown" else str(decision)
    if _stage_says_no(gate, "stage1"):
        return "skipped"
    if suggestion_length(d):
        return "hidden" if _stage_says_no(gate, "stage2") else "empty"
    return "empty"


def file_type(event: Item) -> str:
    d = _as_dict(event)
    file = d.get("file")
    if isinstance(file, str) and file:
        suffix = os.path.splitext(file)[1].lower()
        if suffix:
            return suffix
    return str(d.get("language") or "unknown")


def _persisted(d: Mapping[str, Any]) -> int | None:
    """SuggestionEvent.label("persisted") for an accepted event: the latest known checkpoint."""
    for key in ("persisted_600s", "persisted_120s", "persisted_30s"):
        value = d.get(key)
        if value is not None:
            return int(bool(value))
    return None


def event_time(value: Any) -> datetime | None:
    """The UTC time of a `ts`, or None when it is not a usable number of seconds since the epoch."""
    ts = number(value)
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def day_of(ts: Any) -> str:
    when = event_time(ts)
    return "unknown" if when is None else when.strftime("%Y-%m-%d")


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


@dataclass
class Bucket:
    requests: int = 0
    skipped: int = 0
    hidden: int = 0
    empty: int = 0
    shown: int = 0
    accepted: int = 0
    rejected: int = 0
    ignored: int = 0
    persisted: int = 0
    persistence_known: int = 0
    checkpoint_known: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKPOINT_FIELDS, 0))
    checkpoint_kept: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKPOINT_FIELDS, 0))
    latencies: list[float] = field(default_factory=list)
    decisions: list[float] = field(default_factory=list)

    def add(self, d: Mapping[str, Any], kind: str) -> None:
        self.requests += 1
        if kind == "skipped":
            self.skipped += 1
        elif kind == "hidden":
            self.hidden += 1
        elif kind == "empty":
            self.empty += 1
        else:
            self.shown += 1
        outcome = d.get("outcome")
        if outcome == "accepted":
            self.accepted += 1
            label = _persisted(d)
            if label is not None:
                self.persistence_known += 1
                self.persisted += label
            for key in CHECKPOINT_FIELDS:
                value = d.get(key)
                if value is not None:
                    self.checkpoint_known[key] += 1
                    self.checkpoint_kept[key] += int(bool(value))
        elif outcome == "rejected":
            self.rejected += 1
        elif outcome == "ignored":
            self.ignored += 1
        latency = number(d.get("latency_ms"))
        if latency is not None and latency >= 0 and suggestion_length(d) is not None:
            self.latencies.append(latency)
        decision = number(d.get("decision_ms"))
        if decision is not None and decision >= 0:
            self.decisions.append(decision)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        dec = sorted(self.decisions)
        return {
            "requests": self.requests,
            "avoided_stage1": self.skipped,
            "hidden_stage2": self.hidden,
            "empty": self.empty,
            "shown": self.shown,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "ignored": self.ignored,
            "acceptance_rate": _rate(self.accepted, self.shown),
            "persistence_rate": _rate(self.persisted, self.persistence_known),
            "persistence_known": self.persistence_known,
            "persistence_by_checkpoint": {
                key.removeprefix("persisted_"): _rate(self.checkpoint_kept[key], self.checkpoint_known[key])
                for key in CHECKPOINT_FIELDS
            },
            "avoided_share": _rate(self.skipped, self.requests),
            "hidden_share": _rate(self.hidden, self.hidden + self.shown),
            "latency_ms": {f"p{p}": percentile(lat, p) for p in PERCENTILES},
            "latency_n": len(lat),
            "decision_ms": {"p50": percentile(dec, 50), "p90": percentile(dec, 90)},
        }


def compute_report(events: Iterable[Item]) -> dict[str, Any]:
    """One pass over events (or their to_dict() form, as the store holds them); returns the JSON-able
    report (`heedls telemetry report --json`)."""
    total = Bucket()
    by: dict[str, dict[str, Bucket]] = {dim: defaultdict(Bucket) for dim in DIMENSIONS}
    latency_hist: list[float] = []
    first: datetime | None = None
    last: datetime | None = None
    for event in events:
        d = _as_dict(event)
        if not isinstance(d, Mapping):
            continue
        kind = gate_outcome(d)
        when = event_time(d.get("ts"))
        total.add(d, kind)
        by["day"]["unknown" if when is None else when.strftime("%Y-%m-%d")].add(d, kind)
        by["provider"][str(d.get("provider") or "unknown")].add(d, kind)
        by["file_type"][file_type(d)].add(d, kind)
        version = _gate(d).get("model_version")
        by["gate_model"][str(version) if version is not None else "none"].add(d, kind)
        if when is not None:
            first = when if first is None else min(first, when)
            last = when if last is None else max(last, when)
    latency_hist = total.latencies
    return {
        "period": {
            "first": None if first is None else first.isoformat(timespec="seconds"),
            "last": None if last is None else last.isoformat(timespec="seconds"),
        },
        "total": total.summary(),
        "by": {dim: {key: b.summary() for key, b in sorted(buckets.items())} for dim, buckets in by.items()},
        "latency_histogram": _histogram(latency_hist),
    }


def _histogram(values: list[float]) -> list[dict[str, float | int]]:
    # From a few ms (the local provider answers in 3) to seconds (a remote model under load).
    edges = [0, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000, 5000, math.inf]
    counts = [0] * (len(edges) - 1)
    for value in values:
        for i in range(len(edges) - 1):
            if edges[i] <= value < edges[i + 1]:
                counts[i] += 1
                break
    return [
        {
            "from": edges[i],
            "to": (edges[i + 1] if edges[i + 1] != math.inf else -1),
            "count": counts[i],
        }
        for i in range(len(counts))
    ]


# -- terminal --------------------------------------------------------------------------------------
def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _ms(value: Any) -> str:
    """A latency for a table cell: whole milliseconds, or 3 significant digits past a million (a
    stored `latency_ms` of 1e308 printed 309 digits, which pushed every other column, the labels
    and the figures, out of an 80-column table)."""
    if value is None:
        return "—"
    return f"{value:.0f}" if abs(value) < 1e6 else f"{value:.3g}"


def _plain(value: Any) -> Any:
    """A rich `Text` showing `value` exactly as stored: never read as console markup (`[/bold]`,
    `[link=…]`) or emoji codes, and with control and format characters (an ESC sequence, a
    right-to-left override) shown as escapes instead of reaching the terminal."""
    from rich.text import Text

    text = str(value)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return Text(text)


def render_terminal(report: dict[str, Any], console: Any) -> None:
    """Rich tables: the totals and one table per breakdown. Stored strings (day, provider, file
    type, gate model version, the period) are printed as plain text, never as console markup."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    period = report["period"]
    console.print(
        Text.assemble(
            ("heedls suggestions", "bold"),
            "  ",
            _plain(period["first"] or "—"),
            " → ",
            _plain(period["last"] or "—"),
        )
    )
    for dim, title in (
        (None, "total"),
        ("day", "by day (UTC)"),
        ("provider", "by provider"),
        ("file_type", "by file type"),
        ("gate_model", "by gate model"),
    ):
        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            collapse_padding=True,
            # In 80 columns (a piped or CI log's width) the padding would fold a day's date once
            # the counts have four digits; the box's own separator still leaves a space.
            padding=(0, 1) if console.width >= _ROOMY_COLUMNS else (0, 0),
        )
        for name, justify in (
            ("", "left"), ("req", "right"), ("avoid1", "right"), ("hide2", "right"), ("empty", "right"),
            ("shown", "right"), ("acc", "right"), ("acc%", "right"), ("kept%", "right"), ("p50ms", "right"),
            ("p95ms", "right"),
        ):  # fmt: skip
            # the label column folds a long stored name; the figures never wrap
            table.add_column(name, justify=justify, no_wrap=bool(name), overflow="fold")  # type: ignore[arg-type]
        rows = [("all", report["total"])] if dim is None else list(report["by"][dim].items())
        # A long name (a gate model's version, 28 characters) would be folded over three lines
        # in an 80-column terminal: such rows get a short key, spelled out under the table.
        legend = [(f"#{i}", str(key)) for i, (key, _) in enumerate(rows, 1)] if any(len(str(k)) > _LABEL_CHARS for k, _ in rows) else []
        if legend:
            rows = [(short, s) for (short, _), (_, s) in zip(legend, rows)]
        cells = [
            (key, [str(s["requests"]), str(s["avoided_stage1"]), str(s["hidden_stage2"]), str(s["empty"]),
                   str(s["shown"]), str(s["accepted"]), _pct(s["acceptance_rate"]), _pct(s["persistence_rate"]),
                   _ms(s["latency_ms"]["p50"]), _ms(s["latency_ms"]["p95"])])
            for key, s in rows
        ]  # fmt: skip
        for key, figures in cells:
            table.add_row(_plain(key), *figures)
        if _fits(console, table):
            console.print(table)
        else:
            _print_as_lines(console, title, [c.header for c in table.columns[1:]], cells)
        for short, name in legend:
            console.print(f"  {short} = ", _plain(name), sep="", markup=False, highlight=False)
    console.print(
        "req = avoid1 + hide2 + empty + shown. avoid1 = skipped by the stage-1 gate before any provider call;"
        " hide2 = hidden by the stage-2 gate; empty = no suggestion (the provider had none or post-processing"
        " removed it); acc% = accepted / shown; kept% = accepted and still in the code at the latest check",
        markup=False,
        highlight=False,
    )


_LABEL_CHARS = 16
_ROOMY_COLUMNS = 100


def _fits(console: Any, table: Any) -> bool:
    """Whether `table` shows every column whole in the console's width. In a narrower terminal (a
    split pane, 50 columns) rich crops the figures it cannot fit — 3000 requests read `300`, 142
    accepted `14` — and drops the label column: wrong numbers on no row of their own."""
    from rich.measure import Measurement

    # measured without the console's limit: Measurement.get clamps what it returns to that width
    needed: int = Measurement.get(console, console.options.update_width(1_000_000), table).minimum
    return needed <= int(console.width)


def _print_as_lines(console: Any, title: str, names: list[Any], cells: list[tuple[Any, list[str]]]) -> None:
    """A table too wide for the terminal, one row at a time: its label, then `name figure` pairs
    that wrap between pairs, never inside a figure."""
    from rich.text import Text

    console.print(Text(title, style="italic"))
    for key, figures in cells:
        console.print(Text.assemble(" ", _plain(key)))
        line = Text("   ")
        for name, figure in zip(names, figures):
            pair = f"{name} {figure}"
            if len(line) > 3 and len(line) + 2 + len(pair) > console.width:
                console.print(line, no_wrap=True, overflow="fold")
                line = Text("   ")
            line.append(("  " if len(line) > 3 else "") + pair)
        console.print(line, no_wrap=True, overflow="fold")
    console.print()


# -- HTML ------------------------------------------------------------------------------------------
_COLORS = {
    "accepted": "#2e7d32",
    "shown": "#90caf9",
    "hidden": "#ffb74d",
    "skipped": "#bdbdbd",
    "empty": "#eeeeee",
    "line2": "#6a1b9a",
}


def _day_labels(labels: list[str], left: float, slot: float, y: float) -> list[str]:
    """The x-axis labels under each day's slot (at most 16 of them), shared by the daily charts."""
    n = max(1, len(labels))
    return [f'<text x="{left + (i + 0.5) * slot:.1f}" y="{y}" font-size="9" text-anchor="middle">'
            f"{html.escape(label[-5:] if len(label) > 8 else label)}</text>"
            for i, label in enumerate(labels) if n <= 16 or i % math.ceil(n / 16) == 0]


def _svg_stacked_bars(labels: list[str], series: list[tuple[str, list[int], str]], title: str) -> str:
    width, height, left, bottom, top = 720, 260, 48, 40, 28
    n = max(1, len(labels))
    totals = [sum(values[i] for _, values, _ in series) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    slot = (width - left - 10) / n
    bar = max(2.0, slot * 0.7)
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img">',
             f'<title>{html.escape(title)}</title>',
             f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}" stroke="#444"/>',
             f'<text x="{left - 6}" y="{top + 4}" font-size="10" text-anchor="end">{peak}</text>',
             f'<text x="{left - 6}" y="{height - bottom}" font-size="10" text-anchor="end">0</text>']  # fmt: skip
    scale = (height - bottom - top) / peak
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        y = float(height - bottom)
        for name, values, color in series:
            h = values[i] * scale
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
                    f"<title>{html.escape(label)} {html.escape(name)}: {values[i]}</title></rect>"
                )
    parts.extend(_day_labels(labels, left, slot, height - bottom + 14))
    lx = left
    for name, _, color in series:
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 5}" font-size="10">{html.escape(name)}</text>')
        lx += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _svg_rate_lines(labels: list[str], series: list[tuple[str, list[float | None], str]], title: str) -> str:
    width, height, left, bottom, top = 720, 220, 48, 40, 28
    n = max(1, len(labels))
    slot = (width - left - 10) / n  # the days sit where the bars of the chart above sit
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img">',
             f'<title>{html.escape(title)}</title>',
             f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}" stroke="#444"/>']  # fmt: skip
    for frac in (0.0, 0.5, 1.0):
        y = height - bottom - frac * (height - bottom - top)
        parts.append(
            f'<text x="{left - 6}" y="{y + 3:.1f}" font-size="10" text-anchor="end">{int(frac * 100)} %</text>'
        )
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 5}" y2="{y:.1f}" stroke="#ddd"/>')
    for name, values, color in series:
        points = [
            (left + (i + 0.5) * slot, height - bottom - v * (height - bottom - top))
            for i, v in enumerate(values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
    parts.extend(_day_labels(labels, left, slot, height - bottom + 14))
    lx = left
    for name, _, color in series:
        parts.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 5}" font-size="10">{html.escape(name)}</text>')
        lx += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _table_html(title: str, rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = ("", "requests", "avoided (stage 1)", "hidden (stage 2)", "empty", "shown", "accepted", "acceptance",
            "persisted", "p50 ms", "p95 ms", "p99 ms")  # fmt: skip
    out = [
        f"<h2>{html.escape(title)}</h2><div class='wide'><table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
    ]
    for key, s in rows:
        cells = (key, s["requests"], s["avoided_stage1"], s["hidden_stage2"], s["empty"], s["shown"], s["accepted"],
                 _pct(s["acceptance_rate"]), _pct(s["persistence_rate"]), _ms(s["latency_ms"]["p50"]),
                 _ms(s["latency_ms"]["p95"]), _ms(s["latency_ms"]["p99"]))  # fmt: skip
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table></div>")
    return "".join(out)


_SCRIPT_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def embedded_json(report: dict[str, Any]) -> str:
    """The report as JSON that is inert inside a `<script>` element, whatever the stored strings
    hold: `<`, `>`, `&`, U+2028 and U+2029 are written as `\\u003c`-style escapes (still the same
    JSON), so no `</script>`, `<!--` or `<script` can appear in it."""
    return dumps(report).translate(_SCRIPT_SAFE)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: inline CSS and SVG, no scripts, no external URLs."""
    days = list(report["by"]["day"].items())
    labels = [d for d, _ in days]
    bars = _svg_stacked_bars(
        labels,
        [
            ("accepted", [s["accepted"] for _, s in days], _COLORS["accepted"]),
            (
                "shown, not accepted",
                [s["shown"] - s["accepted"] for _, s in days],
                _COLORS["shown"],
            ),
            (
                "hidden (stage 2)",
                [s["hidden_stage2"] for _, s in days],
                _COLORS["hidden"],
            ),
            (
                "avoided (stage 1)",
                [s["avoided_stage1"] for _, s in days],
                _COLORS["skipped"],
            ),
            (
                "empty (no suggestion)",
                [s["empty"] for _, s in days],
                _COLORS["empty"],
            ),
        ],
        "Requests per day",
    )
    rates = _svg_rate_lines(
        labels,
        [
            (
                "acceptance rate",
                [s["acceptance_rate"] for _, s in days],
                _COLORS["accepted"],
            ),
            (
                "persistence rate",
                [s["persistence_rate"] for _, s in days],
                _COLORS["line2"],
            ),
        ],
        "Acceptance and persistence per day",
    )
    hist = report["latency_histogram"]
    hist_labels = [f"{h['from']}+" if h["to"] == -1 else f"<{h['to']}" for h in hist]
    latency = _svg_stacked_bars(
        hist_labels,
        [("suggestions", [int(h["count"]) for h in hist], "#42a5f5")],
        "Latency (ms)",
    )
    t = report["total"]
    cards = [
        ("requests", str(t["requests"])),
        ("acceptance rate", _pct(t["acceptance_rate"])),
        ("persistence rate", _pct(t["persistence_rate"])),
        ("avoided by stage 1", f"{t['avoided_stage1']} ({_pct(t['avoided_share'])})"),
        ("hidden by stage 2", f"{t['hidden_stage2']} ({_pct(t['hidden_share'])})"),
        ("empty (no suggestion)", str(t["empty"])),
        (
            "latency p50 / p95",
            f"{_ms(t['latency_ms']['p50'])} / {_ms(t['latency_ms']['p95'])} ms",
        ),
    ]
    period = report["period"]
    data = embedded_json(report)
    body = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>heedls suggestion report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}",
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;",
        "text-align:right}td:first-child,th:first-child{text-align:left;white-space:nowrap}th{background:#f4f4f4}",
        ".cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px}",
        ".card b{display:block;font-size:1.3em}svg{max-width:100%;height:auto;margin:1em 0}",
        # a table wider than the page (long gate model versions) scrolls by itself, not the page
        ".wide{overflow-x:auto}",
        "</style></head><body>",
        "<h1>heedls suggestion report</h1>",
        f"<p>{html.escape(period['first'] or '—')} → {html.escape(period['last'] or '—')} (UTC)</p>",
        _trimmed_html(report.get("trimmed")),
        "<div class='cards'>"
        + "".join(f"<div class='card'>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in cards)
        + "</div>",
        bars,
        rates,
        latency,
        _table_html("By day (UTC)", days),
        _table_html("By provider", list(report["by"]["provider"].items())),
        _table_html("By file type", list(report["by"]["file_type"].items())),
        _table_html("By gate model", list(report["by"]["gate_model"].items())),
        "<p><small>Acceptance = accepted / shown. Persistence = accepted suggestions still in the code at the",
        " latest known check (30 s / 120 s / 600 s). Avoided = requests the stage-1 gate skipped before any",
        " provider call; hidden = suggestions the stage-2 gate did not show; empty = requests with no",
        " suggestion (the provider had none or post-processing removed it), not the gate's doing.</small></p>",
        "<script type='application/json' id='report-data'>" + data + "</script>",
        "</body></html>",
    ]
    return "\n".join(body)


def _trimmed_html(trimmed: Any) -> str:
    """The page's note that the store's size cap removed older suggestions ("" if it did not)."""
    if not isinstance(trimmed, dict) or not trimmed.get("suggestions"):
        return ""
    from heedls.server.telemetry.retention import trimmed_phrase

    up_to = trimmed.get("up_to_ts")
    what = trimmed_phrase(int(trimmed["suggestions"]), up_to if isinstance(up_to, (int, float)) else None)
    return (f"<p><b>Not included:</b> {html.escape(what)}, "
            "removed from the store by its size cap (<code>telemetry.max_size_mb</code>).</p>")


def report_json(report: dict[str, Any]) -> str:
    """The report as strict JSON (`--json`): non-finite numbers are null."""
    return dumps(report)


def write_html(report: dict[str, Any], path: Path | str) -> Path:
    """Write the page completely or not at all (a failed write keeps the previous file); the
    parent directories are created. Raises OSError."""
    target = Path(path)
    if str(path) and target.name:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where a folder of the path should be: "File exists" misleads
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target.parent)) from None
    return write_text_file(target, render_html(report))


def write_html_report(store: Any, path: Path | str) -> Path:
    """Write the HTML report for a `TelemetryStore`, a store path, or any iterable of events."""
    from heedls.server.telemetry.export import read_store
    from heedls.server.telemetry.store import TelemetryStore

    events: Iterable[Item]
    if isinstance(store, TelemetryStore):
        events = store.iter_events()
    elif isinstance(store, (str, Path)):
        events = (row.data for row in read_store(store))
    else:
        events = store
    return write_html(compute_report(events), path)


def read_events_file(path: Path | str, skipped: Skipped | None = None) -> Iterator[dict[str, Any]]:
    """The events of a `heedls.suggestion/1` JSONL file (`report --events`), as dicts. A UTF-8 BOM
    is allowed; lines that are not JSON objects with an `id` are skipped and counted in `skipped`
    (an `export.Skipped("line")`). NaN/Infinity read as null. Raises OSError when the file cannot be read."""
    counter = Skipped("line") if skipped is None else skipped
    for line_no, value, reason in json_lines(path, nan_as_null=True):
        if value is None or "id" not in value:
            counter.add(line_no, reason or "not a heedls.suggestion/1 event (no id)")
            continue
        yield value


def latest_snapshots(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest snapshot of each suggestion, as the store's readers take it: of the records with
    the same `session` and `id`, the one that comes last (in file order: heedls appends a
    suggestion's snapshots as its state becomes known, and a record carries no time of its own that
    orders them — `ts` is the request's, the same in every snapshot). Ordered by where each
    suggestion's latest snapshot is. Only within a session, as `heedls eval acceptance` reads a
    file: a snapshot never changes session, and other tools number their events per session (1, 2,
    … in each). Ids and sessions are compared as JSON values (`"1"` and `1` are different)."""
    latest: dict[Any, dict[str, Any]] = {}
    for event in events:
        key = (_json_key(event.get("session")), _json_key(event.get("id")))
        latest.pop(key, None)  # keep the order of each suggestion's newest snapshot
        latest[key] = event
    return list(latest.values())


def _json_key(value: Any) -> Any:
    return value if type(value) is str else ("json", dumps(value))
