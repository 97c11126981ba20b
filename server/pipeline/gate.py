"""The acceptance-gate protocol the pipeline calls, and the pass-through gate.

Both stages see a `SuggestionEvent` (the same record that is stored, exported and trained on, so
serving and training share one feature extractor) plus the session's earlier events, newest last.
At stage 1 `event.suggestion` is None; at stage 2 it holds the post-processed suggestion and
`event.extra` may carry provider facts (`confidence`, `logprob`, `source`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from heedls.server.events import SuggestionEvent


@dataclass(frozen=True)
class GateDecision:
    show: bool
    stage: Literal["stage1", "stage2"]
    score: float | None = None  # predicted acceptance probability
    threshold: float | None = None
    model_version: str | None = None


@runtime_checkable
class Gate(Protocol):
    mode: str

    def stage1(self, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> GateDecision: ...

    def stage2(self, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> GateDecision: ...

    def observe(self, event: SuggestionEvent) -> None:
        """Called when an event's outcome (or persistence) becomes known."""
        ...

    def status(self) -> dict[str, Any]:
        """For the editors' status item: mode, model_version, shares skipped/hidden so far."""
        ...


class PassThroughGate:
    """Shows everything; used when the gate is off or no model can be loaded."""

    mode = "off"

    def __init__(self) -> None:
        self._requests = 0

    def stage1(self, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> GateDecision:
        self._requests += 1
        return GateDecision(True, "stage1")

    def stage2(self, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> GateDecision:
        return GateDecision(True, "stage2")

    def observe(self, event: SuggestionEvent) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "model_version": None, "requests": self._requests, "skipped": 0, "hidden": 0}
