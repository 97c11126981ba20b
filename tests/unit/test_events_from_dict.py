"""Reading one `heedls.suggestion/1` event: unknown values are null, never invented (DESIGN.md)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from heedls.server import events as events_module
from heedls.server.events import SCHEMA, SuggestionEvent

VALID = {"schema": SCHEMA, "id": "e1", "session": "s1", "ts": 1_700_000_000.5, "language": "python",
         "file": "m.py", "prefix": "x = ", "suffix": "", "suggestion": "1", "shown": True, "outcome": "accepted",
         "latency_ms": 12, "decision_ms": 800.5, "provider": "local", "model": None, "persisted_30s": True,
         "persisted_120s": True, "persisted_600s": False, "gate": {"stage1": 0.4}, "confidence": 0.7}


def test_a_valid_event_reads_exactly_as_written() -> None:
    event = SuggestionEvent.from_dict(VALID)
    assert event.to_dict() == VALID  # ints stay ints, unknown keys stay in extra, in order
    assert json.loads(event.to_json()) == VALID
    assert event.extra == {"confidence": 0.7}


@pytest.mark.parametrize(("key", "value"), [
    ("decision_ms", "1200"), ("latency_ms", "fast"), ("latency_ms", math.nan), ("decision_ms", math.inf),
    ("latency_ms", True), pytest.param("decision_ms", 10**400, id="decision_ms-huge-int"), ("prefix", 12345), ("suffix", 0), ("suggestion", ["a", "b"]),
    ("language", 7), ("file", {"a": 1}), ("provider", 5), ("model", False), ("persisted_600s", "no"),
    ("persisted_30s", 1), ("persisted_120s", "false"), ("gate", "x"),
])
def test_an_optional_field_of_the_wrong_type_reads_as_unknown(key: str, value: object) -> None:
    event = SuggestionEvent.from_dict({**VALID, key: value})
    assert getattr(event, key) is None
    assert key not in event.extra  # not kept as an extra either: it is a known field, unknown value


@pytest.mark.parametrize("value", ["yes", "false", "true", 1, 0, [True], None])
def test_shown_is_true_only_when_it_says_true(value: object) -> None:
    assert SuggestionEvent.from_dict({**VALID, "shown": value}).shown is False
    assert SuggestionEvent.from_dict({**VALID, "shown": True}).shown is True


def test_a_persistence_that_is_not_a_boolean_is_no_persistence_check() -> None:
    event = SuggestionEvent.from_dict({**VALID, "persisted_30s": None, "persisted_120s": None,
                                       "persisted_600s": "no"})
    assert event.label("persisted") is None  # not "persisted", as bool("no") made it


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("session", None, "session must be a non-empty string"), ("session", "", "session must be"),
    ("session", 3, "session must be"), ("id", 17, "id must be a non-empty string"), ("id", "", "id must be"),
    ("ts", math.nan, "ts must be a finite number"), ("ts", math.inf, "ts must be"), ("ts", True, "ts must be"),
    ("ts", "1700000000", "ts must be"), ("ts", None, "ts must be"),
    pytest.param("ts", 10**400, "ts must be", id="ts-huge-int"),
    ("outcome", "maybe", "unknown outcome 'maybe'"), ("outcome", ["accepted"], "unknown outcome"),
])
def test_an_event_without_a_usable_identity_or_time_is_malformed(key: str, value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        SuggestionEvent.from_dict({**VALID, key: value})


def test_missing_core_fields_and_non_objects_are_malformed() -> None:
    for key in ("id", "session", "ts"):
        with pytest.raises(ValueError, match="at least id, session and ts"):
            SuggestionEvent.from_dict({k: v for k, v in VALID.items() if k != key})
    with pytest.raises(TypeError):
        SuggestionEvent.from_dict([1, 2])  # type: ignore[arg-type]


def test_an_integer_ts_is_a_float_as_before() -> None:
    event = SuggestionEvent.from_dict({**VALID, "ts": 1_700_000_000})
    assert event.ts == 1_700_000_000.0 and isinstance(event.ts, float)


def test_every_field_has_a_reading_rule() -> None:
    names = {f.name for f in dataclasses.fields(SuggestionEvent)} - {"extra"}
    assert set(events_module._FIELD_KINDS) == names


def test_only_a_decision_is_a_label_an_ignored_suggestion_is_none() -> None:
    def labels(outcome: str | None, persisted: bool | None = None) -> tuple[int | None, int | None]:
        event = SuggestionEvent(id="a", session="s", ts=1.0, outcome=outcome, persisted_600s=persisted)  # type: ignore[arg-type]
        return event.label("accepted"), event.label("persisted")

    assert labels("accepted", True) == (1, 1)
    assert labels("accepted", False) == (1, 0)
    assert labels("accepted") == (1, None)  # persistence not known yet
    assert labels("rejected") == (0, 0)
    assert labels("ignored") == (None, None)  # never reported displayed, then replaced: no decision
    assert labels(None) == (None, None)
