"""The `heedls.suggestion/1` event: one suggestion's life, as stored, exported, replayed and evaluated.

Unknown values are None (JSON null), never invented. Readers ignore fields they do not know, so
files from other tools (or a later schema) can be read as long as the core fields are there.
"""

from __future__ import annotations

import bz2
import codecs
import dataclasses
import gzip
import io
import json
import lzma
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, TextIO, cast

SCHEMA = "heedls.suggestion/1"
Outcome = Literal["accepted", "rejected", "ignored"]
OUTCOMES: tuple[str, ...] = ("accepted", "rejected", "ignored")
# Why a suggestion was rejected (`heedls/suggestionRejected`, the engine's supersede): extra `reason`.
REJECT_REASONS: frozenset[str] = frozenset({"dismissed", "superseded", "typed-over"})
# The reason of an "ignored" suggestion the user typed out in full by hand.
TYPED_THROUGH = "typed-through"
OUTCOME_REASONS: frozenset[str] = REJECT_REASONS | {TYPED_THROUGH}

# Fields whose text is code; dropped by the `nocode` privacy level (lengths are kept instead).
CODE_FIELDS: tuple[str, ...] = ("prefix", "suffix", "suggestion")


@dataclass
class SuggestionEvent:
    id: str
    session: str
    ts: float
    language: str | None = None
    file: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    suggestion: str | None = None
    shown: bool = False
    outcome: Outcome | None = None
    latency_ms: float | None = None
    decision_ms: float | None = None
    provider: str | None = None
    model: str | None = None
    persisted_30s: bool | None = None
    persisted_120s: bool | None = None
    persisted_600s: bool | None = None
    gate: dict[str, Any] | None = None
    schema: str = SCHEMA
    # Anything else a producer attached (features, lengths in nocode exports, ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        ordered: dict[str, Any] = {"schema": self.schema}
        for name in _FIELDS:
            ordered[name] = getattr(self, name)
        # list() copies the items in one step: another thread (the telemetry writer encodes events)
        # never sees the dict change size under it.
        for key, value in list(self.extra.items()):
            ordered.setdefault(key, _rounded_rows(value) if key == ROWS_KEY else value)
        return ordered

    def to_json(self) -> str:
        return _ENCODER.encode(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuggestionEvent:
        """The event of one decoded JSON object. Raises ValueError when it cannot be one: id and
        session not non-empty strings, ts not a finite number (a bool is not one), an unknown outcome.
        Any other known field of the wrong type (text not a string, a number not a finite one, a flag
        not a bool, gate not an object) reads as null, never as a guess: `"shown": "false"` is not
        shown, `"persisted_600s": "no"` is no persistence check, `"decision_ms": "1200"` is unknown.
        Valid values are kept exactly as given."""
        if not isinstance(data, Mapping):
            raise TypeError(f"event is a JSON {type(data).__name__}, not an object")
        if "id" not in data or "session" not in data or "ts" not in data:
            raise ValueError("event needs at least id, session and ts")
        ident, session, ts = data["id"], data["session"], data["ts"]
        if not isinstance(ident, str) or not ident:
            raise ValueError(f"id must be a non-empty string, not {_shown_value(ident)}")
        if not isinstance(session, str) or not session:
            raise ValueError(f"session must be a non-empty string, not {_shown_value(session)}")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not _finite(ts):
            raise ValueError(f"ts must be a finite number, not {_shown_value(ts)}")
        outcome = data.get("outcome")
        if outcome is not None and (not isinstance(outcome, str) or outcome not in OUTCOMES):
            raise ValueError(f"unknown outcome {outcome!r}")
        known: dict[str, Any] = {"id": ident, "session": session, "ts": float(ts), "outcome": outcome}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            kind = _FIELD_KINDS.get(key)
            if kind is None:
                extra[key] = value
            elif value is None or kind == "core":
                continue
            elif kind == "text":
                known[key] = value if isinstance(value, str) else None
            elif kind == "number":
                known[key] = value if not isinstance(value, bool) and isinstance(value, (int, float)) \
                    and _finite(value) else None
            elif kind == "flag":
                known[key] = value if isinstance(value, bool) else None
            elif kind == "object":
                known[key] = value if isinstance(value, dict) else None
        known["shown"] = known.get("shown") or False  # an unknown `shown` was never a shown suggestion
        if known.get("schema") is None:
            known["schema"] = SCHEMA
        return cls(**known, extra=extra)

    def label(self, kind: Literal["accepted", "persisted"] = "accepted") -> int | None:
        """1/0 training label, or None when the event carries no decision: no outcome, or
        `ignored` (a suggestion no editor reported displayed and that was then replaced: nobody
        decided on it, so it is no rejection to learn from)."""
        if self.outcome is None or self.outcome == "ignored":
            return None
        accepted = self.outcome == "accepted"
        if kind == "accepted":
            return int(accepted)
        if not accepted:
            return 0
        # persisted = accepted and still (mostly) there at the longest check we have
        for key in ("persisted_600s", "persisted_120s", "persisted_30s"):
            value = getattr(self, key)
            if value is not None:
                return int(bool(value))
        return None


# How from_dict reads each known field: "core" ones are checked first (id, session, ts, outcome).
_FIELD_KINDS: dict[str, str] = {
    "id": "core", "session": "core", "ts": "core", "outcome": "core",
    "language": "text", "file": "text", "prefix": "text", "suffix": "text", "suggestion": "text",
    "provider": "text", "model": "text", "schema": "text",
    "latency_ms": "number", "decision_ms": "number",
    "shown": "flag", "persisted_30s": "flag", "persisted_120s": "flag", "persisted_600s": "flag",
    "gate": "object",
}
_FLOAT_MAX = 1.7976931348623157e308


def _finite(value: float) -> bool:
    """A finite number, also for an int too large for a float (which is not)."""
    return -_FLOAT_MAX <= value <= _FLOAT_MAX  # False for NaN; an int is compared exactly


def _shown_value(value: Any) -> str:
    """A short description of a bad value for an error message (never a long text)."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# to_dict()'s order: schema first, then the fields as declared; computed once (it runs per event).
_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SuggestionEvent) if f.name not in ("schema", "extra"))
# One encoder for every to_json() (json.dumps with options builds a new encoder per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# How many earlier events of its session the acceptance features see: the last 64 (not counting
# the ones the gate itself skipped or hid: `history_window`), in training, evaluation and the live
# server alike (the engine passes exactly these), so a long session gives the same rows everywhere
# and the per-request cost stays flat.
HISTORY_WINDOW = 64

# The gate's own decisions: a request stage 1 skipped, a suggestion stage 2 hid. The user never
# saw them, so they decide nothing.
GATED = ("skipped", "hidden")


def is_gated(event: SuggestionEvent) -> bool:
    return isinstance(event.gate, dict) and event.gate.get("decision") in GATED


def history_window(earlier: Sequence[SuggestionEvent]) -> list[SuggestionEvent]:
    """What a request's acceptance features see of `earlier` (its session's earlier events, oldest
    first): the last HISTORY_WINDOW events the gate let through, and those of the last
    HISTORY_WINDOW events it gated that came after the oldest of these.

    Gated events never push the user's own decisions out: when they did (one window of 64 events),
    a stage that skipped a run of requests saw a user with no decisions, scored them otherwise and
    went on skipping (a live refit skipped 571 of the next 572 requests). Data without gate
    decisions (replays, CUPS) get the last 64."""
    window: list[SuggestionEvent] = []
    passed = gated = 0
    for event in reversed(earlier):
        if is_gated(event):
            if gated < HISTORY_WINDOW:
                gated += 1
                window.append(event)
            continue
        passed += 1
        window.append(event)
        if passed == HISTORY_WINDOW:
            break
    window.reverse()
    return window


class HistoryWindow:
    """`history_window` kept up to date one event at a time (the live engine's side of it)."""

    def __init__(self) -> None:
        self._passed: deque[tuple[int, SuggestionEvent]] = deque(maxlen=HISTORY_WINDOW)
        self._gated: deque[tuple[int, SuggestionEvent]] = deque(maxlen=HISTORY_WINDOW)
        self._seq = 0

    def append(self, event: SuggestionEvent) -> None:
        self._seq += 1
        (self._gated if is_gated(event) else self._passed).append((self._seq, event))

    def events(self) -> list[SuggestionEvent]:
        passed, gated = self._passed, self._gated
        if not gated:
            return [e for _, e in passed]
        oldest = passed[0][0] if len(passed) == HISTORY_WINDOW else 0
        merged = list(passed) + [g for g in gated if g[0] > oldest]
        merged.sort(key=itemgetter(0))
        return [e for _, e in merged]


# The acceptance gate keeps its decision-time feature rows under this extra key
# ({"context": {name: value}, "suggestion": {...}}); they are stored to 4 decimals.
ROWS_KEY = "acceptance_features"


def _rounded_rows(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {stage: {k: v if not isinstance(v, float) or v.is_integer() else round(v, 4) for k, v in row.items()}
            if isinstance(row, dict) else row for stage, row in value.items()}


def json_lines(path: Path | str, *, nan_as_null: bool = False) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """Each non-blank line of a JSONL file (UTF-8, a leading BOM allowed; UTF-16/32 with their BOM,
    and gzip, are told by their first bytes) as (line number, the object, "") or, when it is not a
    JSON object, (line number, None, why). The one lenient reader
    of event files (evaluation, `telemetry report --events`); `nan_as_null`: NaN/Infinity read as null.
    Raises OSError when the file cannot be read."""
    constant = (lambda _name: None) if nan_as_null else None
    with _open_text(path) as fh:
        for number, line in _read_lines(fh):
            line = line.strip()
            if not line:
                continue
            try:
                value = json.loads(line, parse_constant=constant)
            except ValueError as exc:
                yield number, None, f"not JSON ({exc.msg})" if isinstance(exc, json.JSONDecodeError) else "not JSON"
                continue
            except RecursionError:  # thousands of nested brackets: a corrupt line, not a crash
                yield number, None, "not JSON (nested too deeply)"
                continue
            if isinstance(value, dict):
                yield number, value, ""
            else:
                yield number, None, f"a JSON {json_kind(value)}, not an object"


# Byte-order marks that say a text is not UTF-8 (UTF-32's first: it begins with UTF-16 LE's).
_BOMS: tuple[tuple[bytes, str], ...] = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                                        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Without a BOM, a JSON text's first character is ASCII, so where its zero bytes fall tells the
# encoding (RFC 4627 §3); longest patterns first, False standing for a zero byte.
_NO_BOM: tuple[tuple[tuple[bool, ...], str], ...] = (
    ((False, False, False, True), "utf-32-be"), ((True, False, False, False), "utf-32-le"),
    ((False, True), "utf-16-be"), ((True, False), "utf-16-le"))
_Binary = io.BufferedReader | gzip.GzipFile | lzma.LZMAFile | bz2.BZ2File | zipfile.ZipExtFile
# Compressed exports are told by their magic bytes: gzip, xz and bzip2 (the standard library's).
_COMPRESSED: tuple[tuple[bytes, Callable[[io.BufferedReader], _Binary]], ...] = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),  # none closes its fileobj
    (b"\xfd7zXZ\x00", lambda raw: lzma.LZMAFile(raw, mode="rb")),
    (b"BZh", lambda raw: bz2.BZ2File(raw, mode="rb")),
)


_ZIP = b"PK\x03\x04"  # a zip archive ("Send to > Compressed folder"): its one file is read


def _zip_member(archive: zipfile.ZipFile, path: Path | str) -> zipfile.ZipExtFile:
    """The file a zip archive holds: its only one, or its only `.jsonl`/`.json` one (an archive of
    several says which it holds instead of guessing)."""
    files = [info for info in archive.infolist() if not info.is_dir()]
    if len(files) > 1:
        files = [info for info in files if info.filename.lower().endswith((".jsonl", ".json"))] or files
    if len(files) != 1:
        names = ", ".join(info.filename for info in files[:5]) or "no files"
        raise OSError(f"{path} is a zip archive of {len(files)} files ({names}): unpack the one to read")
    return cast(zipfile.ZipExtFile, archive.open(files[0]))  # what reading mode opens (typeshed: IO[bytes])


def _text_codec(head: bytes) -> str:
    """The encoding the first four bytes of a JSON text say: its BOM's, else its zero bytes'."""
    nonzero = tuple(b != 0 for b in head)  # a head shorter than a pattern never equals it
    return next((name for bom, name in _BOMS if head.startswith(bom)),
                next((name for pattern, name in _NO_BOM if nonzero[:len(pattern)] == pattern), "utf-8-sig"))


@contextmanager
def _open_text(path: Path | str) -> Iterator[TextIO]:
    """The file as text, whatever its first bytes say it is: Windows PowerShell's `>` writes UTF-16
    (with a BOM; other tools without), and exports are often passed still compressed. Peeked, not
    re-opened: a pipe (/dev/stdin) cannot be read twice."""
    with ExitStack() as stack:
        file = stack.enter_context(open(path, "rb"))
        magic = file.peek(6)[:6]
        opener = next((opener for head, opener in _COMPRESSED if magic.startswith(head)), None)
        raw: _Binary = file
        if opener is not None:
            raw = opener(file)
            stack.callback(raw.close)
        elif magic.startswith(_ZIP):
            with _damage_is_unreadable():  # cut short, its directory or a header damaged
                raw = stack.enter_context(_zip_member(stack.enter_context(zipfile.ZipFile(file)), path))
        with _damage_is_unreadable():
            head = raw.peek(4)[:4]
        yield stack.enter_context(io.TextIOWrapper(raw, encoding=_text_codec(head), errors="replace"))


def _read_lines(fh: TextIO) -> Iterator[tuple[int, str]]:
    """(number, line) of each line; compressed data cut short or damaged is an unreadable file
    (OSError), not the decompressor's own error, which the callers would not expect."""
    with _damage_is_unreadable():
        yield from enumerate(fh, 1)


@contextmanager
def _damage_is_unreadable() -> Iterator[None]:
    """Damaged compressed data, which each decompressor reports its own way (zlib.error,
    LZMAError, BadZipFile, EOFError when cut short), as the OSError an unreadable file is."""
    try:
        yield
    except EOFError as exc:
        raise OSError(f"the compressed data ends too early ({exc})") from exc
    except (zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise OSError(f"damaged compressed data ({exc})") from exc


def json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "boolean" if isinstance(value, bool) else "number"


def read_jsonl(path: Path | str) -> Iterator[SuggestionEvent]:
    """Read events strictly: the first line that is not a `heedls.suggestion/1` event raises
    ValueError naming it (`json_lines` is the lenient reader, which skips and counts them)."""
    for number, data, reason in json_lines(path):
        try:
            if data is None:
                raise ValueError(reason)
            yield SuggestionEvent.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a heedls.suggestion/1 event: {exc}") from exc


def write_jsonl(events: Iterable[SuggestionEvent], path: Path | str) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(event.to_json() + "\n")
            count += 1
    return count
