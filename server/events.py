"""The `heedls.suggestion/1` event: one suggestion's life, as stored, exported, replayed and evaluated.

Unknown values are None (JSON null), never invented. Readers ignore fields they do not know, so
files from other tools (or a later schema) can be read as long as the core fields are there.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA = "heedls.suggestion/1"
Outcome = Literal["accepted", "rejected", "ignored"]
OUTCOMES: tuple[str, ...] = ("accepted", "rejected", "ignored")

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
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: data.get(k) for k in names if k in data}
        extra = {k: v for k, v in data.items() if k not in names}
        if "id" not in known or "session" not in known or "ts" not in known:
            raise ValueError("event needs at least id, session and ts")
        outcome = known.get("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        known["id"] = str(known["id"])
        known["session"] = str(known["session"])
        known["ts"] = float(known["ts"])  # type: ignore[arg-type]
        known["shown"] = bool(known.get("shown") or False)
        if known.get("schema") is None:
            known["schema"] = SCHEMA
        return cls(**known, extra=extra)  # type: ignore[arg-type]

    def label(self, kind: Literal["accepted", "persisted"] = "accepted") -> int | None:
        """1/0 training label, or None when the event carries no decision."""
        if self.outcome is None:
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


# to_dict()'s order: schema first, then the fields as declared; computed once (it runs per event).
_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SuggestionEvent) if f.name not in ("schema", "extra"))
# One encoder for every to_json() (json.dumps with options builds a new encoder per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# How many earlier events of its session the acceptance features see: the last 64, in training,
# evaluation and the live server alike (the engine passes exactly these), so a long session gives
# the same rows everywhere and the per-request cost stays flat.
HISTORY_WINDOW = 64

# The acceptance gate keeps its decision-time feature rows under this extra key
# ({"context": {name: value}, "suggestion": {...}}); they are stored to 4 decimals.
ROWS_KEY = "acceptance_features"


def _rounded_rows(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {stage: {k: v if not isinstance(v, float) or v.is_integer() else round(v, 4) for k, v in row.items()}
            if isinstance(row, dict) else row for stage, row in value.items()}


def read_jsonl(path: Path | str) -> Iterator[SuggestionEvent]:
    """Read events, skipping (and counting in the raised warning list) malformed lines."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield SuggestionEvent.from_dict(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a heedls.suggestion/1 event: {exc}") from exc


def write_jsonl(events: Iterable[SuggestionEvent], path: Path | str) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(event.to_json() + "\n")
            count += 1
    return count
