"""Export events as JSONL, CSV or Parquet, at a privacy level.

- `full`: JSONL lines are exactly `SuggestionEvent.to_dict()` (the `heedls.suggestion/1` schema).
- `nocode`: `prefix`, `suffix` and `suggestion` become null and four fields are added in their place:
  `prefix_len`, `suffix_len` (characters), `suggestion_len` (characters), `suggestion_lines` (null when
  the text was unknown). `file` is replaced by a hash that keeps the extension (`3f2a9c01d4e5.py`),
  so per-file-type figures survive but names do not. Extra fields survive only when they hold
  numbers, booleans or null (features, scores), or nested objects/lists of those, or strings from a
  short allow-list of enumerations (`reason`, …); every other string-valued extra field is dropped,
  because there is no way to tell code from non-code in an arbitrary string.
CSV and Parquet have one stable set of columns whatever the events hold: the schema fields, the
`gate` object flattened to `gate_stage1`, `gate_stage2`, `gate_threshold`, `gate_model_version`,
`gate_decision` (plus `gate_json`, the whole object, for anything else), the four length columns
(at both privacy levels; handy for analysis), and `extra_json` for the remaining extra fields.
Everything is streamed: memory does not grow with the number of events. A file is written next to
its destination and renamed over it only when complete: an export that fails or is interrupted
half-way leaves the previous file at that path as it was.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeAlias

from heedls.server.events import CODE_FIELDS, SuggestionEvent

# An event, or its to_dict() form (what the store holds); both export the same.
Item: TypeAlias = SuggestionEvent | Mapping[str, Any]
Format = Literal["jsonl", "csv", "parquet"]
PrivacyLevel = Literal["full", "nocode"]
FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")
PRIVACY_LEVELS: tuple[str, ...] = ("full", "nocode")

LENGTH_FIELDS: tuple[str, ...] = (
    "prefix_len",
    "suffix_len",
    "suggestion_len",
    "suggestion_lines",
)
# String-valued extras that are enumerations, not text the user typed.
SAFE_STRING_EXTRAS: frozenset[str] = frozenset(
    {
        "reason",
        "kind",
        "trigger",
        "client",
        "editor",
        "source",
        "stage",
        "decision",
        "event",
        "label",
    }
)
SCHEMA_COLUMNS: tuple[str, ...] = (
    "schema", "id", "session", "ts", "language", "file", "prefix", "suffix", "suggestion", "shown",
    "outcome", "latency_ms", "decision_ms", "provider", "model", "persisted_30s", "persisted_120s",
    "persisted_600s",
)  # fmt: skip
GATE_COLUMNS: tuple[str, ...] = (
    "gate_stage1", "gate_stage2", "gate_threshold", "gate_model_version", "gate_decision", "gate_json",
)  # fmt: skip
COLUMNS: tuple[str, ...] = SCHEMA_COLUMNS + GATE_COLUMNS + LENGTH_FIELDS + ("extra_json",)


# -- --since ---------------------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: float | None = None) -> float:
    """`7d`, `12h`, `30m`, `2w`, `90s` (ago), or an ISO date/time (local time unless it has an offset)."""
    now = time.time() if now is None else now
    match = _DURATION.match(value)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2).lower()]
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"--since expects a duration like 7d/12h/30m or an ISO date, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # naive = the user's local time
    return parsed.timestamp()


# -- privacy ---------------------------------------------------------------------------------------
def _lines(text: str | None) -> int | None:
    if text is None:
        return None
    return text.count("\n") + 1 if text else 0


def lengths(record: Mapping[str, Any] | SuggestionEvent) -> dict[str, int | None]:
    """Character lengths of the code fields (and suggestion lines); None when the text is unknown."""
    data = record.to_dict() if isinstance(record, SuggestionEvent) else record
    prefix, suffix, suggestion = data.get("prefix"), data.get("suffix"), data.get("suggestion")
    return {
        "prefix_len": None if prefix is None else len(prefix),
        "suffix_len": None if suffix is None else len(suffix),
        "suggestion_len": None if suggestion is None else len(suggestion),
        "suggestion_lines": _lines(suggestion),
    }


_SUFFIX = re.compile(r"\.[A-Za-z0-9_+-]{1,12}")


@functools.lru_cache(maxsize=4096)
def hash_file(file: str | None) -> str | None:
    if file is None:
        return None
    suffix = os.path.splitext(file)[1]
    if not _SUFFIX.fullmatch(suffix):
        suffix = ""
    return hashlib.sha256(file.encode("utf-8", "surrogateescape")).hexdigest()[:12] + suffix


def _numeric_only(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, dict):
        return all(_numeric_only(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_numeric_only(v) for v in value)
    return False


def _safe_extra(key: str, value: Any) -> bool:
    if key in CODE_FIELDS:
        return False
    if isinstance(value, str):
        return key in SAFE_STRING_EXTRAS and len(value) <= 64
    return _numeric_only(value)


def _safe_gate(gate: Any) -> dict[str, Any] | None:
    if not isinstance(gate, dict):
        return None
    return {k: v for k, v in gate.items() if _numeric_only(v) or (isinstance(v, str) and len(v) <= 64)}


_SCHEMA_KEYS = frozenset(SCHEMA_COLUMNS) | {"gate"}


def to_record(event: SuggestionEvent | Mapping[str, Any], privacy: PrivacyLevel) -> dict[str, Any]:
    """The exported dict: exactly to_dict() for `full`; code removed and lengths added for `nocode`.

    Accepts a SuggestionEvent or its to_dict() form (the store's rows, parsed), which saves the
    dataclass round trip when exporting 100k rows.
    """
    data: dict[str, Any] = event.to_dict() if isinstance(event, SuggestionEvent) else dict(event)
    if privacy == "full":
        return data
    if privacy != "nocode":
        raise ValueError(f"unknown privacy level {privacy!r}")
    sizes = lengths(data)
    for key in [k for k in data if k not in _SCHEMA_KEYS]:
        if not _safe_extra(key, data[key]):
            del data[key]
    for key in CODE_FIELDS:
        data[key] = None
    data["file"] = hash_file(data.get("file"))
    data["gate"] = _safe_gate(data.get("gate"))
    data.update(sizes)
    return data


# -- flattening (CSV, Parquet) ---------------------------------------------------------------------
def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One row with the stable COLUMNS from an exported record (already privacy-filtered)."""
    row: dict[str, Any] = {key: record.get(key) for key in SCHEMA_COLUMNS}
    gate = record.get("gate")
    if isinstance(gate, dict):
        threshold = gate.get("threshold")
        row["gate_stage1"] = _as_float(gate.get("stage1"))
        row["gate_stage2"] = _as_float(gate.get("stage2"))
        row["gate_threshold"] = _as_float(threshold)
        version = gate.get("model_version")
        row["gate_model_version"] = None if version is None else str(version)
        decision = gate.get("decision")
        row["gate_decision"] = None if decision is None else str(decision)
        row["gate_json"] = json.dumps(gate, ensure_ascii=False, sort_keys=True)
    else:
        for key in GATE_COLUMNS:
            row[key] = None
    sizes = (
        {k: record[k] for k in LENGTH_FIELDS} if all(k in record for k in LENGTH_FIELDS) else lengths(record)
    )
    row.update(sizes)
    extra = {
        k: v for k, v in record.items() if k not in SCHEMA_COLUMNS and k not in LENGTH_FIELDS and k != "gate"
    }
    row["extra_json"] = json.dumps(extra, ensure_ascii=False, sort_keys=True) if extra else None
    return row


# -- writers ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _complete_or_untouched(out: Path | str | IO[Any] | None) -> Iterator[Path | str | IO[Any] | None]:
    """For a file path: a temporary path beside it, renamed over it when the block completes and
    removed if it does not. Streams and stdout pass through."""
    if not isinstance(out, (str, Path)) or out == "-":
        yield out
        return
    target = Path(out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _text_stream(out: Path | str | IO[str] | None) -> Iterator[IO[str]]:
    """A path opened for writing (closed after), or a given stream / stdout (flushed after)."""
    if out is None or out == "-":
        stream: IO[str] = sys.stdout
    elif isinstance(out, (str, Path)):
        with open(out, "w", encoding="utf-8", newline="") as fh:
            yield fh
        return
    else:
        stream = out
    try:
        yield stream
    finally:
        stream.flush()


def export_jsonl(events: Iterable[Item], privacy: PrivacyLevel, out: IO[str]) -> int:
    count = 0
    for event in events:
        out.write(json.dumps(to_record(event, privacy), ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        count += 1
    return count


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def export_csv(events: Iterable[Item], privacy: PrivacyLevel, out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for event in events:
        row = flatten(to_record(event, privacy))
        writer.writerow([_csv_value(row[c]) for c in COLUMNS])
        count += 1
    return count


def parquet_schema() -> Any:
    import pyarrow as pa

    types: dict[str, Any] = {
        "ts": pa.float64(),
        "shown": pa.bool_(),
        "latency_ms": pa.float64(),
        "decision_ms": pa.float64(),
        "persisted_30s": pa.bool_(),
        "persisted_120s": pa.bool_(),
        "persisted_600s": pa.bool_(),
        "gate_stage1": pa.float64(),
        "gate_stage2": pa.float64(),
        "gate_threshold": pa.float64(),
        **{name: pa.int64() for name in LENGTH_FIELDS},
    }
    return pa.schema([pa.field(name, types.get(name, pa.string())) for name in COLUMNS])


def export_parquet(
    events: Iterable[Item],
    privacy: PrivacyLevel,
    out: Path | str | IO[bytes],
    chunk: int = 10_000,
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    count = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}

        def emit() -> None:
            if columns["id"]:
                writer.write_table(pa.Table.from_pydict(columns, schema=schema))
                for values in columns.values():
                    values.clear()

        for event in events:
            row = flatten(to_record(event, privacy))
            for name in COLUMNS:
                columns[name].append(row[name])
            count += 1
            if len(columns["id"]) >= chunk:
                emit()
        emit()
    return count


def export(
    events: Iterable[Item],
    fmt: Format,
    privacy: PrivacyLevel,
    out: Path | str | IO[Any] | None,
) -> int:
    """Write `events` to `out` (a path, an open file, or None/'-' for stdout); returns the count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {list(FORMATS)}")
    if privacy not in PRIVACY_LEVELS:
        raise ValueError(f"unknown privacy level {privacy!r}; expected one of {list(PRIVACY_LEVELS)}")
    if fmt == "parquet" and (out is None or out == "-"):
        raise ValueError("Parquet is binary: give an output file with -o")
    with _complete_or_untouched(out) as dest:
        if fmt == "parquet":
            target: Any = str(dest) if isinstance(dest, Path) else dest
            return export_parquet(events, privacy, target)
        with _text_stream(dest) as stream:
            if fmt == "jsonl":
                return export_jsonl(events, privacy, stream)
            return export_csv(events, privacy, stream)


def export_store(
    path: Path | str,
    fmt: Format,
    privacy: PrivacyLevel,
    out: Path | str | IO[Any] | None,
    since: float | None = None,
) -> int:
    """Export a store file. Full JSONL copies the stored lines as they are (they are to_json())."""
    from heedls.server.telemetry.store import read_dicts, read_rows

    if fmt == "jsonl" and privacy == "full":
        count = 0
        with _complete_or_untouched(out) as dest, _text_stream(dest) as stream:
            for _seq, data in read_rows(path, since):
                stream.write(data)
                stream.write("\n")
                count += 1
        return count
    return export(read_dicts(path, since), fmt, privacy, out)


def read_parquet(path: Path | str) -> Iterator[dict[str, Any]]:
    """Rows of an exported Parquet file as dicts (for tests and notebooks)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    yield from table.to_pylist()


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def since_label(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


__all__ = [
    "COLUMNS",
    "FORMATS",
    "PRIVACY_LEVELS",
    "export",
    "export_store",
    "flatten",
    "hash_file",
    "lengths",
    "parse_since",
    "read_parquet",
    "since_label",
    "to_record",
]
