"""`heedls telemetry path|export|report|push` — run in a workspace, they read the store that
`heedls serve` writes when started there (or `--store PATH`). Readers open the database read-only:
they never create, repair or lock the live store.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer
from heedls.server import config as config_mod
from heedls.server.config import HeedlsConfig

telemetry = typer.Typer(
    name="telemetry",
    help="Acceptance telemetry: where it is stored, export, report, push.",
    no_args_is_help=True,
    add_completion=False,
)

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Store file (default: this workspace's store in the user data directory).",
    ),
]


def _err(message: str) -> None:
    typer.echo(f"heedls: {message}", err=True)


def _config() -> HeedlsConfig:
    cfg, warnings = config_mod.load(Path.cwd())
    for warning in warnings:
        _err(f"configuration: {warning}")
    return cfg


def _store(explicit: Path | None, cfg: HeedlsConfig) -> Path:
    from heedls.server.telemetry.paths import store_path

    return explicit if explicit is not None else store_path(Path.cwd(), cfg.telemetry)


def _since(value: str | None) -> float | None:
    if not value:
        return None
    from heedls.server.telemetry.export import parse_since

    try:
        return float(parse_since(value))
    except ValueError as exc:
        _err(str(exc))
        raise typer.Exit(2) from None


def _check_store(path: Path) -> None:
    if not path.exists():
        _err(f"no telemetry recorded yet at {path}")


@telemetry.command("path")
def path_cmd(store: StoreOpt = None) -> None:
    """Print where this workspace's events are stored."""
    typer.echo(str(_store(store, _config())))


@telemetry.command("export")
def export_cmd(
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl | csv | parquet")] = "jsonl",
    privacy: Annotated[
        str | None,
        typer.Option("--privacy", help="full | nocode (no code text; lengths instead)"),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="7d, 12h, 30m or an ISO date/time")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file (default stdout)")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Export the latest state of every suggestion (JSONL is exactly the heedls.suggestion/1 schema)."""
    from heedls.server.telemetry.export import FORMATS, PRIVACY_LEVELS, export_store

    cfg = _config()
    level = privacy or cfg.telemetry.privacy
    if fmt not in FORMATS:
        _err(f"--format must be one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if level not in PRIVACY_LEVELS:
        _err(f"--privacy must be one of {', '.join(PRIVACY_LEVELS)}")
        raise typer.Exit(2)
    if fmt == "parquet" and output is None:
        _err("Parquet is binary: give an output file with -o FILE")
        raise typer.Exit(2)
    path = _store(store, cfg)
    _check_store(path)
    try:
        count = export_store(path, fmt, level, output, _since(since))  # type: ignore[arg-type,unused-ignore]
    except sqlite3.Error as exc:
        _err(f"cannot read {path}: {exc}")
        raise typer.Exit(1) from None
    _err(f"exported {count} events ({fmt}, {level})" + (f" to {output}" if output else ""))


@telemetry.command("report")
def report_cmd(
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML page"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object")] = False,
    since: Annotated[str | None, typer.Option("--since", help="7d, 12h, 30m or an ISO date/time")] = None,
    events_file: Annotated[
        Path | None,
        typer.Option("--events", help="Report on a heedls.suggestion/1 JSONL file instead of the store"),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Acceptance, persistence, gate effect and latency, by day, provider and file type."""
    from heedls.server.telemetry.report import (
        compute_report,
        render_html,
        render_terminal,
    )
    from heedls.server.telemetry.store import read_dicts

    cutoff = _since(since)
    if events_file is not None:
        from heedls.server.events import read_jsonl

        try:
            report = compute_report(e for e in read_jsonl(events_file) if cutoff is None or e.ts >= cutoff)
        except (OSError, ValueError) as exc:
            _err(f"cannot read {events_file}: {exc}")
            raise typer.Exit(1) from None
        report["store"] = str(events_file)
    else:
        path = _store(store, _config())
        _check_store(path)
        try:
            report = compute_report(read_dicts(path, cutoff))
        except sqlite3.Error as exc:
            _err(f"cannot read {path}: {exc}")
            raise typer.Exit(1) from None
        report["store"] = str(path)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(report), encoding="utf-8")
        _err(f"wrote {html}")
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    from rich.console import Console

    render_terminal(report, Console())


@telemetry.command("push")
def push_cmd(
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="URL (default: telemetry.push_endpoint)"),
    ] = None,
    privacy: Annotated[str | None, typer.Option("--privacy", help="full | nocode")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object")] = False,
    store: StoreOpt = None,
) -> None:
    """Send the events recorded since the last push to a team endpoint (batched JSON POST, retried)."""
    from heedls.server.telemetry.push import push

    cfg = _config()
    url = endpoint or cfg.telemetry.push_endpoint
    level = privacy or cfg.telemetry.privacy
    if level not in ("full", "nocode"):
        _err("--privacy must be full or nocode")
        raise typer.Exit(2)
    path = _store(store, cfg)
    _check_store(path)
    result = push(path, url, level)  # type: ignore[arg-type,unused-ignore]
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        _err(f"pushed {result.sent} events in {result.batches} batches to {url or '—'}")
    if result.error:
        if not as_json:
            _err(result.error)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(telemetry, name="telemetry")
