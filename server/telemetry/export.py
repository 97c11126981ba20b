"""Export events as JSONL, CSV or Parquet, at a privacy level.

- `full`: JSONL lines are exactly `SuggestionEvent.to_dict()` (the `heedls.suggestion/1` schema).
- `nocode`: `prefix`, `suffix` and `suggestion` become null and four fields are added in their place:
  `prefix_len`, `suffix_len` (characters), `suggestion_len` (characters), `suggestion_lines` (null when
  the text was unknown; a record without text keeps the lengths it carries). `file` is replaced by a
  hash that keeps the extension (`3f2a9c01d4e5.py`), so per-file-type figures survive but names do
  not; a record that is nocode already (a nocode store's row) keeps its hash. Only what heedls itself
  writes survives, because there is no way to tell code from non-code in an arbitrary string: the
  extra fields heedls writes (HEEDLS_EXTRAS; any other name is dropped) with numbers, booleans or null, lists of them, objects of them keyed by heedls's own names
  (feature and stage names), strings from heedls's enumerations (SAFE_STRING_EXTRAS); in `gate`,
  scores, thresholds, the decision, the mode and a model version name.
CSV and Parquet have one stable set of columns whatever the events hold: the schema fields, the
`gate` object flattened to `gate_stage1`, `gate_stage2`, `gate_threshold`, `gate_model_version`,
`gate_decision` (plus `gate_json`, the whole object, for anything else), the four length columns
(at both privacy levels; handy for analysis), and `extra_json` for the remaining extra fields.
Everything is streamed: memory does not grow with the number of events. A file is written next to
its destination and renamed over it only when complete: an export that fails or is interrupted
half-way leaves the previous file at that path as it was (devices and pipes are written in place).
All JSON is strict (NaN/Infinity become null); odd values become null in typed columns; store rows
that are not events are skipped and counted (`Skipped`).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, TypeAlias

from heedls.server.events import CODE_FIELDS, OUTCOME_REASONS, ROWS_KEY, SuggestionEvent
from heedls.server.files import output_file

log = logging.getLogger("heedls.telemetry")

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
_LENGTH_SET = frozenset(LENGTH_FIELDS)
# String values `nocode` keeps: the enumerations heedls itself writes (any other string is dropped,
# since code cannot be told from non-code in an arbitrary string).
SAFE_STRING_EXTRAS: dict[str, frozenset[str]] = {
    "reason": OUTCOME_REASONS,
    "gate_skipped": frozenset({"stage1", "stage2"}),
    "source": frozenset({"ngram", "retrieval", "jedi", "chat", "fim", "raw-fim", "completion", "infill"}),
}
SAFE_GATE_STRINGS: dict[str, frozenset[str]] = {
    "decision": frozenset({"skipped", "hidden", "shown", "empty"}),
    "mode": frozenset({"off", "stage1", "cascade"}),
}
# gate.model_version: a version name heedls gives its models (`default-20261129-s0-1033ff91`, `…+user1700000000`).
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}")
# Numeric gate entries: a score, a boolean, or {"score": .., "show": ..}; thresholds per stage.
_GATE_NUMERIC_KEYS = frozenset({"stage1", "stage2", "threshold"})
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
    try:
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()  # naive = the user's local time
        return parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        # a date at the calendar's ends (0001-01-01, 9999-12-31T23:00 east or west of UTC): before
        # or after every event, not a traceback or "year 0 is out of range"
        return -math.inf if parsed.year < 1970 else math.inf


# -- JSON that strict parsers accept ---------------------------------------------------------------
def finite(value: Any) -> Any:
    """`value` with every NaN/Infinity (anywhere inside) replaced by None: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


# Encoders built once: json.dumps() with options builds one per call (13 µs a nocode row, 9 µs here).
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_COMPACT_ASCII = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON, non-finite numbers written as null (never the invalid `NaN`/`Infinity`), and
    always encodable as UTF-8 (a lone surrogate is written as its `\\udXXX` escape, which reads back
    as the same string)."""
    try:
        text = _COMPACT.encode(value)
    except ValueError:
        value = finite(value)
        text = _COMPACT.encode(value)
    if not text.isascii() and _LONE_SURROGATE.search(text):
        text = _COMPACT_ASCII.encode(value)
    return text


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (strings, booleans, NaN, ints beyond float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


_INT64 = 2**63 - 1


def count_value(value: Any) -> int | None:
    """A non-negative int that fits int64 (a length), or None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64:
        return None
    return value


# -- privacy ---------------------------------------------------------------------------------------
def _lines(text: str | None) -> int | None:
    if text is None:
        return None
    return text.count("\n") + 1 if text else 0


_LENGTH_OF: tuple[tuple[str, str], ...] = tuple((name, f"{name}_len") for name in CODE_FIELDS)


def lengths(record: Mapping[str, Any] | SuggestionEvent) -> dict[str, int | None]:
    """Character lengths of the code fields (and suggestion lines); None when the text is unknown.

    A field whose text is null keeps the length already recorded beside it (`prefix_len`, …): rows
    written by a `nocode` store, or a nocode export read back, carry lengths but no text."""
    data = record.to_dict() if isinstance(record, SuggestionEvent) else record
    sizes: dict[str, int | None] = {}
    for name, key in _LENGTH_OF:
        text = data.get(name)
        sizes[key] = len(text) if isinstance(text, str) else count_value(data.get(key))
    suggestion = data.get("suggestion")
    sizes["suggestion_lines"] = (
        _lines(suggestion) if isinstance(suggestion, str) else count_value(data.get("suggestion_lines"))
    )
    return sizes


_SUFFIX = re.compile(r"\.[A-Za-z0-9_+-]{1,12}")
_HASHED = re.compile(r"[0-9a-f]{12}(?:\.[A-Za-z0-9_+-]{1,12})?")


@functools.lru_cache(maxsize=4096)
def hash_file(file: str | None) -> str | None:
    if file is None:
        return None
    suffix = os.path.splitext(file)[1]
    if not _SUFFIX.fullmatch(suffix):
        suffix = ""
    return hashlib.sha256(file.encode("utf-8", "surrogateescape")).hexdigest()[:12] + suffix


def already_nocode(data: Mapping[str, Any]) -> bool:
    """A record that went through `nocode` already (a nocode store's row, a nocode export read back):
    no code text, the four length fields present, and `file` null or in hash form."""
    if any(data.get(k) is not None for k in CODE_FIELDS) or not data.keys() >= _LENGTH_SET:
        return False
    file = data.get("file")
    return file is None or (isinstance(file, str) and _HASHED.fullmatch(file) is not None)


@functools.lru_cache(maxsize=1)
def _known_names() -> frozenset[str]:
    """Keys heedls writes inside numeric objects: the acceptance features and their stage names."""
    try:
        from heedls.server.acceptance.features import STAGE_FEATURES
    except Exception:  # noqa: BLE001 -- without the acceptance package, no feature row survives
        return frozenset()
    names = {name for row in STAGE_FEATURES.values() for name in row}
    return frozenset(names | set(STAGE_FEATURES) | set(LENGTH_FIELDS) | {"stage1", "stage2", "score", "show"})


_SCALARS = frozenset({type(None), bool, int, float})
_STR_ONLY = frozenset({str})


def _numeric_only(value: Any) -> bool:
    """Numbers, booleans and null, or lists of them, or objects of them keyed by names heedls uses."""
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, dict):
        known = _known_names()
        # A feature row (~100 known names, plain numbers) is decided by set operations in C; any
        # other object goes through the item-by-item rule below, which is the definition.
        if set(map(type, value)) <= _STR_ONLY:
            if not known.issuperset(value):
                return False
            if set(map(type, value.values())) <= _SCALARS:
                return True
        return all(isinstance(k, str) and k in known and _numeric_only(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_numeric_only(v) for v in value)
    return False


# The extra fields heedls itself writes (engine, gate, persistence, replay): at `nocode` only these
# names survive. A name is free text like any other: `{"hunter2_key": 1}` from elsewhere is dropped.
HEEDLS_EXTRAS: frozenset[str] = frozenset({
    "confidence", "logprob", "source", "jedi_agree", "typing_cps", "displayed_ts", "gate_skipped",
    "reason", "persisted_similarity", "synthetic", "suffix_known", ROWS_KEY,
})


def _safe_extra(key: str, value: Any) -> bool:
    if key in CODE_FIELDS or key not in HEEDLS_EXTRAS:
        return False
    if isinstance(value, str):
        return value in SAFE_STRING_EXTRAS.get(key, ())
    return _numeric_only(value)  # objects only when keyed by names heedls uses (feature names)


def _safe_gate(gate: Any) -> dict[str, Any] | None:
    """Only what heedls's gate writes: scores, thresholds, the decision, the mode, the model version."""
    if not isinstance(gate, dict):
        return None
    safe: dict[str, Any] = {}
    for key, value in gate.items():
        if key in _GATE_NUMERIC_KEYS:
            keep = _numeric_only(value)
        elif key == "model_version":
            keep = value is None or (isinstance(value, str) and _VERSION.fullmatch(value) is not None)
        elif key in SAFE_GATE_STRINGS:  # a non-string (a list, an object) is dropped, never a TypeError
            keep = value is None or (isinstance(value, str) and value in SAFE_GATE_STRINGS[key])
        else:
            keep = False
        if keep:
            safe[key] = value
    return safe


_SCHEMA_KEYS = frozenset(SCHEMA_COLUMNS) | {"gate"}


def to_record(event: SuggestionEvent | Mapping[str, Any], privacy: PrivacyLevel) -> dict[str, Any]:
    """The exported dict: exactly to_dict() for `full`; code removed and lengths added for `nocode`.

    Accepts a SuggestionEvent or its to_dict() form (the store's rows, parsed), which saves the
    dataclass round trip when exporting 100k rows. A record that is nocode already (a nocode
    store's row) keeps its lengths and its hashed `file` (hashed once, not twice).
    """
    data: dict[str, Any] = event.to_dict() if isinstance(event, SuggestionEvent) else dict(event)
    if privacy == "full":
        return data
    if privacy != "nocode":
        raise ValueError(f"unknown privacy level {privacy!r}")
    hashed = already_nocode(data)
    sizes = lengths(data)
    for key in data.keys() - _SCHEMA_KEYS:  # the extra fields (a set: the order of deletion is moot)
        if key in _LENGTH_SET or not _safe_extra(key, data[key]):
            del data[key]
    for key in CODE_FIELDS:
        data[key] = None
    file = data.get("file")
    data["file"] = file if hashed else hash_file(file if isinstance(file, str) else None)
    data["gate"] = _safe_gate(data.get("gate"))
    data.update(sizes)
    return data


# -- flattening (CSV, Parquet) ---------------------------------------------------------------------
_FLOAT_COLUMNS = frozenset({"ts", "latency_ms", "decision_ms"})
_BOOL_COLUMNS = frozenset({"shown", "persisted_30s", "persisted_120s", "persisted_600s"})


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return number(value)


def _as_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_text(value: Any) -> str | None:
    """A string column: strings as they are, anything else as its JSON text (never a type error)."""
    if value is None or isinstance(value, str):
        return value
    return dumps(value)


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One row with the stable COLUMNS from an exported record (already privacy-filtered). Every
    value has its column's type (float, bool, int64 or string) or is None: a stored value of
    another type (a `ts` in a string, a length beyond int64, NaN) becomes None rather than failing
    the whole export."""
    row: dict[str, Any] = {}
    for key in SCHEMA_COLUMNS:
        value = record.get(key)
        if key in _FLOAT_COLUMNS:
            row[key] = number(value)
        elif key in _BOOL_COLUMNS:
            row[key] = _as_bool(value)
        else:
            row[key] = _as_text(value)
    row.update(zip(GATE_COLUMNS, _gate_cells(record.get("gate")), strict=True))
    row.update(lengths(record))
    row["extra_json"] = _extra_json(record)
    for key, value in row.items():
        if isinstance(value, str) and not value.isascii():
            row[key] = _LONE_SURROGATE.sub("\ufffd", value)
    return row


# A lone surrogate (an editor's broken UTF-16) survives in JSON as an escape, but a CSV or Parquet
# string must be UTF-8: it is written as U+FFFD, the replacement character, there.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


# -- flattening a batch (what the CSV and Parquet exports write) -----------------------------------
# flatten() is the definition, one record at a time. The exports flatten a batch column by column
# instead, to the same values (a test pins the two together on varied records): one comprehension
# per column rather than a dict per row, the common case (a finite float, a string, null) decided
# inline, each JSON encoder built once, and an object re-encoded with NaN made null only when the
# strict encoder finds one.
_SORTED_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, allow_nan=False)
_GATE_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str, allow_nan=False)
_NOT_EXTRA = frozenset(SCHEMA_COLUMNS) | frozenset(LENGTH_FIELDS) | {"gate"}
_NOT_TEXT = _FLOAT_COLUMNS | _BOOL_COLUMNS | _LENGTH_SET | {"gate_stage1", "gate_stage2", "gate_threshold"}
_TEXT_COLUMNS: tuple[str, ...] = tuple(name for name in COLUMNS if name not in _NOT_TEXT)
Columns: TypeAlias = dict[str, list[Any]]


def _floats(values: list[Any]) -> list[float | None]:
    """number() of each value; `v - v == 0.0` is true only for a finite float (not NaN, not ±inf)."""
    return [v if type(v) is float and v - v == 0.0 else None if v is None else number(v) for v in values]


def _bools(values: list[Any]) -> list[bool | None]:
    return [v if v is True or v is False else None for v in values]


def _texts(values: list[Any]) -> list[str | None]:
    return [v if v is None or type(v) is str else _as_text(v) for v in values]


def _gate_cells(gate: Any) -> tuple[Any, ...]:
    """The six gate columns of one record, in GATE_COLUMNS order (flatten and flatten_batch)."""
    if not isinstance(gate, dict):
        return (None, None, None, None, None, None if gate is None else dumps(gate))
    threshold = gate.get("threshold")
    if isinstance(threshold, dict):
        # The live gate keeps one threshold per stage: the column holds the one this request's
        # decision was judged against (stage 1 for a skip or an empty answer, else stage 2).
        stage = "stage1" if gate.get("decision") in ("skipped", "empty") else "stage2"
        threshold = threshold.get(stage, threshold.get("stage1"))
        if threshold is None:
            threshold = gate["threshold"].get("stage1")
    version = gate.get("model_version")
    decision = gate.get("decision")
    try:
        text = _GATE_JSON.encode(gate)
    except ValueError:  # NaN/Infinity inside: encoded again with them as null
        text = json.dumps(finite(gate), ensure_ascii=False, sort_keys=True, default=str)
    stage1, stage2 = gate.get("stage1"), gate.get("stage2")
    return (
        stage1 if type(stage1) is float and stage1 - stage1 == 0.0 else _as_float(stage1),
        stage2 if type(stage2) is float and stage2 - stage2 == 0.0 else _as_float(stage2),
        threshold if type(threshold) is float and threshold - threshold == 0.0 else _as_float(threshold),
        None if version is None else str(version),
        None if decision is None else str(decision),
        text,
    )


def _extra_json(record: Mapping[str, Any]) -> str | None:
    if record.keys() <= _NOT_EXTRA:  # most records: no extra field at all, decided in C
        return None
    extra = {k: v for k, v in record.items() if k not in _NOT_EXTRA}
    try:
        return _SORTED_JSON.encode(extra)
    except ValueError:
        return json.dumps(finite(extra), ensure_ascii=False, sort_keys=True)


def _length_columns(records: list[Mapping[str, Any]], texts: Columns) -> Columns:
    """lengths() of each record, a column at a time (`texts`: the raw values of the code fields)."""
    columns: Columns = {}
    for name in CODE_FIELDS:
        key = f"{name}_len"
        columns[key] = [
            len(t) if isinstance(t, str) else count_value(r.get(key))
            for t, r in zip(texts[name], records, strict=True)
        ]
    columns["suggestion_lines"] = [
        _lines(t) if isinstance(t, str) else count_value(r.get("suggestion_lines"))
        for t, r in zip(texts["suggestion"], records, strict=True)
    ]
    return columns


def flatten_batch(records: list[Mapping[str, Any]]) -> Columns:
    """The COLUMNS of `records` (exported records, already privacy-filtered), one list per column,
    holding exactly the values flatten() gives row by row; strings with a lone surrogate are left
    as they are here (the writers replace them: a CSV batch's text at once, a Parquet column)."""
    raw: Columns = {key: [r.get(key) for r in records] for key in SCHEMA_COLUMNS}
    columns: Columns = {}
    for key in SCHEMA_COLUMNS:
        if key in _FLOAT_COLUMNS:
            columns[key] = _floats(raw[key])
        elif key in _BOOL_COLUMNS:
            columns[key] = _bools(raw[key])
        else:
            columns[key] = _texts(raw[key])
    gates = [_gate_cells(r.get("gate")) for r in records]
    for index, key in enumerate(GATE_COLUMNS):
        columns[key] = [cells[index] for cells in gates]
    columns.update(_length_columns(records, raw))
    columns["extra_json"] = [_extra_json(r) for r in records]
    return columns


def _replace_surrogates(values: list[str | None]) -> list[str | None]:
    return [v if v is None or v.isascii() else _LONE_SURROGATE.sub("\ufffd", v) for v in values]


# -- reading a store -------------------------------------------------------------------------------
# The latest snapshot of every suggestion, oldest first (store.LATEST_SQL, plus the storage class).
# `data` is read as bytes whatever its class and decoded row by row: one bad row cannot stop the others.
class UnreadableRow(ValueError):
    """A stored row that is not an event: undecompressable, not UTF-8, not JSON, not an object."""


@dataclass
class Skipped:
    """Rows skipped because they cannot be read as events: counted, reported once."""

    unit: str = "row"  # "row" of a store, "line" of a file
    count: int = 0
    first: str | None = None

    def add(self, where: int, reason: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{self.unit} {where}: {reason}"

    def message(self, source: Path | str) -> str | None:
        if not self.count:
            return None
        what = f"{self.unit} of {source} that is not a readable event" if self.count == 1 else (
            f"{self.unit}s of {source} that are not readable events"
        )
        return f"skipped {self.count} {what} (first: {self.first})"


class StoredRow(NamedTuple):
    seq: int
    text: str | None  # the stored JSON as it is, when it can be written out unchanged (else None)
    data: dict[str, Any]


def _loads_noting_constants(text: str) -> tuple[Any, bool]:
    """json.loads with NaN and Infinity read as None; True when there was one."""
    constants: list[str] = []

    def constant(name: str) -> None:
        constants.append(name)
        return None

    return json.loads(text, parse_constant=constant), bool(constants)


def parse_row(raw: Any, compressed: bool) -> tuple[str | None, dict[str, Any]]:
    """(the JSON text if it is strict JSON on one line, else None; the parsed object). Raises
    UnreadableRow. NaN and Infinity are read as None (unknown)."""
    from heedls.server.telemetry.store import row_text

    try:
        text = raw if isinstance(raw, str) else row_text(raw, compressed)
    except zlib.error as exc:
        raise UnreadableRow(f"cannot decompress ({exc})") from None
    except UnicodeDecodeError as exc:
        raise UnreadableRow(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        # A NaN or Infinity token needs those letters: without them (nearly every row) json.loads'
        # shared decoder reads the row (10 µs here, against 12 µs building one that notices them).
        if "NaN" in text or "Infinity" in text:
            value, constants = _loads_noting_constants(text)
        else:
            value, constants = json.loads(text), False
    except ValueError as exc:
        raise UnreadableRow(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UnreadableRow(f"a JSON {type(value).__name__}, not an object")
    verbatim = not constants and "\n" not in text and "\r" not in text
    return (text if verbatim else None), value


def read_store(path: Path | str, since: float | None = None, skipped: Skipped | None = None) -> Iterator[StoredRow]:
    """The latest snapshot of every suggestion in the store at `path`, oldest first (streamed),
    skipping the rows that are not events. Read-only. With no `skipped` to count them in, the
    skipped rows are logged once, at the end."""
    from heedls.server.telemetry.store import latest_rows

    own = skipped is None
    counter = Skipped() if skipped is None else skipped
    for seq, raw, compressed in latest_rows(path, since):
        try:
            text, data = parse_row(raw, compressed)
        except UnreadableRow as exc:
            counter.add(seq, str(exc))
            continue
        yield StoredRow(seq, text, data)
    message = counter.message(path) if own else None
    if message:
        log.warning("telemetry: %s", message)


# -- writers ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def complete_or_untouched(out: Path | str | IO[Any] | None) -> Iterator[Path | str | IO[Any] | None]:
    """For a file path: files.output_file (a temporary path beside it, renamed over it when the
    block completes and removed if it does not; through a symlink, its target). Streams, stdout
    and special files (devices, pipes) pass through."""
    if not isinstance(out, (str, Path)) or out == "-":
        yield out
        return
    target = Path(out)
    if str(out) == "" or not target.name:
        raise IsADirectoryError(errno.EISDIR, "not a file name", str(out))
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(out))
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"no directory {target.parent}", str(out))
    with output_file(target) as dest:
        yield dest


def write_text_file(path: Path | str, text: str) -> Path:
    """Write `text` to `path` completely or not at all (the previous file is kept on failure)."""
    target = Path(path)
    with complete_or_untouched(target) as dest:
        assert isinstance(dest, Path)
        with open(dest, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    return target


@contextlib.contextmanager
def _text_stream(out: Path | str | IO[str] | None) -> Iterator[IO[str]]:
    """A path opened for writing (closed after), or a given stream / stdout (flushed after)."""
    if out is None or out == "-":
        with _utf8_stdout() as stdout:
            yield stdout
        return
    if isinstance(out, (str, Path)):
        with open(out, "w", encoding="utf-8", newline="") as fh:
            yield fh
        return
    stream = out
    try:
        yield stream
    finally:
        stream.flush()


@contextlib.contextmanager
def _utf8_stdout() -> Iterator[IO[str]]:
    """stdout for an export: UTF-8 and no newline translation, the same bytes a file gets at -o,
    whatever the locale. Through the locale's encoding (Windows' cp1252 for `> out.csv`, a POSIX
    `LANG=en_US.ISO-8859-1`) a character it lacks (U+FFFD, any CJK or emoji in code) stopped the
    export half way with a traceback, and Windows' text mode doubled the CSV's `\r` line ends."""
    stdout = sys.stdout
    buffer = getattr(stdout, "buffer", None)
    if buffer is None:  # a stream of text only (replaced by a caller): it has its own encoding
        try:
            yield stdout
        finally:
            stdout.flush()
        return
    stdout.flush()
    wrapper = io.TextIOWrapper(buffer, encoding="utf-8", newline="")
    try:
        yield wrapper
    finally:
        try:
            wrapper.flush()
        finally:
            wrapper.detach()  # stdout's own buffer stays open


def export_jsonl(events: Iterable[Item], privacy: PrivacyLevel, out: IO[str]) -> int:
    count = 0
    for event in events:
        out.write(dumps(to_record(event, privacy)))
        out.write("\n")
        count += 1
    return count


_CSV_BOOL: dict[Any, str] = {None: "", True: "true", False: "false"}
# Records flattened at once: enough for the per-column work to pay, few enough to stay in cache.
_BATCH = 2048


def _records(events: Iterable[Item], privacy: PrivacyLevel, size: int) -> Iterator[list[Mapping[str, Any]]]:
    """The exported records in lists of `size` (memory stays bounded). At `full` a stored row is
    flattened as it is: to_record() would only copy it."""
    batch: list[Mapping[str, Any]] = []
    for event in events:
        batch.append(event if privacy == "full" and isinstance(event, dict) else to_record(event, privacy))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _csv_cells(name: str, values: list[Any]) -> list[Any]:
    if name in _BOOL_COLUMNS:
        return [_CSV_BOOL[v] for v in values]
    return ["" if v is None else v for v in values]


def csv_text(columns: Columns) -> str:
    """CSV lines (no header) of flattened columns: null is empty, booleans `true`/`false`, a lone
    surrogate U+FFFD (replaced in the text at once: only string cells can hold one)."""
    cells = [_csv_cells(name, columns[name]) for name in COLUMNS]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(zip(*cells, strict=True))
    text = buffer.getvalue()
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


def export_csv(events: Iterable[Item], privacy: PrivacyLevel, out: IO[str], batch: int = _BATCH) -> int:
    csv.writer(out, lineterminator="\n").writerow(COLUMNS)
    count = 0
    for records in _records(events, privacy, batch):
        out.write(csv_text(flatten_batch(records)))
        count += len(records)
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
    pending: list[Any] = []  # Arrow tables of the next row group: compact, unlike Python lists
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        # Flattened a small batch at a time and made Arrow data at once: holding a row group's
        # Python values until it was complete made the whole export ~20% slower (memory).
        for records in _records(events, privacy, min(chunk, _BATCH)):
            columns = flatten_batch(records)
            for name in _TEXT_COLUMNS:
                columns[name] = _replace_surrogates(columns[name])
            pending.append(pa.Table.from_pydict(columns, schema=schema))
            rows += len(records)
            count += len(records)
            while rows >= chunk:  # row groups of exactly `chunk` rows, as one contiguous table each
                whole = pa.concat_tables(pending)
                writer.write_table(whole.slice(0, chunk).combine_chunks())
                rest = whole.slice(chunk)
                pending, rows = ([rest] if rest.num_rows else []), rest.num_rows
        if rows:
            writer.write_table(pa.concat_tables(pending).combine_chunks())
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
    if isinstance(out, Path) and str(out) == "-":
        out = None  # `-o -`: stdout, never a file named "-"
    with complete_or_untouched(out) as dest:
        if fmt == "parquet":
            # stdout's bytes (a pipe or a file: the CLI refuses a terminal); pyarrow writes Parquet
            # front to back, so no seeking is needed
            target: Any = str(dest) if isinstance(dest, Path) else sys.stdout.buffer if dest in (None, "-") else dest
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
    skipped: Skipped | None = None,
) -> int:
    """Export a store file. Full JSONL copies the stored lines as they are (they are to_json()),
    except a line holding NaN/Infinity, which is written again with null in their place. Rows that
    are not events are skipped (counted in `skipped`, else logged once), whatever the format."""
    rows = read_store(path, since, skipped)
    if fmt == "jsonl" and privacy == "full":
        if isinstance(out, Path) and str(out) == "-":
            out = None
        count = 0
        with complete_or_untouched(out) as dest, _text_stream(dest) as stream:
            for row in rows:
                stream.write(row.text if row.text is not None else dumps(row.data))
                stream.write("\n")
                count += 1
        return count
    return export((row.data for row in rows), fmt, privacy, out)


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
    "Skipped",
    "complete_or_untouched",
    "dumps",
    "finite",
    "read_store",
    "write_text_file",
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
