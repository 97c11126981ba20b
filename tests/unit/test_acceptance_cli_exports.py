"""`heedls eval acceptance`, `heedls bench gate --events` and `heedls telemetry report --events` read JSONL: given an export in one of
`heedls telemetry export`'s other formats, they say so (and how to export JSONL) instead of calling
each line of it malformed."""

from __future__ import annotations

import gzip
from pathlib import Path

from heedls.server.cli import app
from heedls.server.telemetry.export import Format, export
from typer.testing import CliRunner

from tests.unit.test_acceptance_data import make_events

FAST = ("--model", "logreg", "--prior", "none", "--jobs", "1")
# (the command as the message names it, its arguments before the file)
READERS = (("heedls eval acceptance", ["eval", "acceptance"]),
           ("heedls bench gate --events", ["bench", "gate", "-n", "20", "--events"]),
           ("heedls telemetry report --events", ["telemetry", "report", "--events"]))


def _exports(tmp_path: Path) -> dict[Path, Format]:
    """Exports of the same events, and the format each should be recognised as (by its name, by
    Parquet's magic bytes, by the CSV export's header, compressed as exports often travel)."""
    events = make_events(sessions=3, per_session=10)
    named: dict[Path, Format] = {tmp_path / "full.csv": "csv", tmp_path / "full.parquet": "parquet",
                                 tmp_path / "export.bin": "parquet", tmp_path / "export": "csv"}
    for path, fmt in named.items():
        export(events, fmt, "full", path)
    packed = tmp_path / "export.gz"
    packed.write_bytes(gzip.compress((tmp_path / "export").read_bytes()))
    return {**named, packed: "csv"}


def test_a_csv_or_parquet_export_is_refused_saying_it_is_not_jsonl(tmp_path: Path) -> None:
    names = {"csv": "CSV", "parquet": "Parquet"}
    for path, fmt in _exports(tmp_path).items():
        for reader, command in READERS:
            result = CliRunner().invoke(app, [*command, str(path)])
            assert result.exit_code == 1 and result.stdout == "", result.output
            assert result.stderr.strip() == (f"heedls: {path} looks like {names[fmt]} (an export with --format "
                                              f"{fmt}): {reader} reads JSONL; export with --format jsonl")
    # Only a file of which no line is JSON: JSONL named *.csv is read, and other text keeps its reason
    jsonl = tmp_path / "events.csv"
    export(make_events(sessions=3, per_session=10), "jsonl", "full", jsonl)
    assert CliRunner().invoke(app, ["eval", "acceptance", str(jsonl), "--json", *FAST]).exit_code == 0
    text = tmp_path / "notes.txt"
    text.write_text("schema;id;session\n")
    result = CliRunner().invoke(app, ["eval", "acceptance", str(text)])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("all 1 non-blank line(s) are malformed; the first, line 1: not JSON "
                                          "(Expecting value)")

