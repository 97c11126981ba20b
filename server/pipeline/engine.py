"""One inline-suggestion request, end to end (DESIGN.md "The suggestion pipeline"):

    debounce (cancel superseded) → typing-through reuse → stage-1 gate → cache → provider (deadline)
    → post-process → stage-2 gate → a Suggestion with a fresh id, recorded as an event.

Pure asyncio, no pygls: the LSP feature and `heedls complete` both drive this class, so what the
CLI prints is what the editor would show.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from heedls.server.config import HeedlsConfig
from heedls.server.events import TYPED_THROUGH, HistoryWindow, Outcome, SuggestionEvent
from heedls.server.pipeline.cache import SuggestionCache, cache_key
from heedls.server.pipeline.debounce import Debouncer, Superseded
from heedls.server.pipeline.gate import Gate, GateDecision, PassThroughGate
from heedls.server.pipeline.postprocess import first_shown
from heedls.server.providers.base import Candidate, CompletionRequest, Provider

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where events go. A sink may also have `bind(event_id, path)`: called once per new event,
    before its first `record`, with the path of its document."""

    def record(self, event: SuggestionEvent) -> None: ...


class NullSink:
    def record(self, event: SuggestionEvent) -> None:
        return None


@dataclass
class Suggestion:
    id: str
    text: str  # what to insert at the cursor
    event: SuggestionEvent
    reused: bool = False  # served by typing-through, no provider call


@dataclass
class _Live:
    """A suggestion the editor may still be showing (for typing-through and supersede-rejects)."""

    uri: str
    prefix: str  # document text before the cursor when it was shown
    text: str
    event: SuggestionEvent
    shown_at: float
    reject_timer: asyncio.TimerHandle | None = None


@dataclass
class EngineStats:
    requests: int = 0
    superseded: int = 0
    skipped_stage1: int = 0
    hidden_stage2: int = 0
    empty: int = 0
    shown: int = 0
    reused: int = 0
    cache_hits: int = 0
    provider_errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


_LANGUAGES = {"py": "python", "pyi": "python", "js": "javascript", "ts": "typescript"}


def language_of(path: str) -> str:
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return _LANGUAGES.get(suffix, "python")


class SuggestionEngine:
    def __init__(
        self,
        provider: Provider,
        config: HeedlsConfig,
        *,
        gate: Gate | None = None,
        sink: EventSink | None = None,
        cache: SuggestionCache | None = None,
        session: str | None = None,
        clock: Callable[[], float] = time.time,
        file_label: Callable[[str], str] | None = None,
    ) -> None:
        self.provider = provider
        self.config = config
        self.gate: Gate = gate or PassThroughGate()
        self.sink: EventSink = sink or NullSink()
        self.cache = cache or SuggestionCache(config.inline.cache_entries)
        self.session = session or f"s-{uuid.uuid4().hex[:12]}"
        self.clock = clock
        self.file_label = file_label or (lambda path: path)
        self.debouncer = Debouncer()
        self.stats = EngineStats()
        self.enabled = config.inline.enabled
        self.history: deque[SuggestionEvent] = deque(maxlen=200)
        self._window = HistoryWindow()  # what the gate's session features see of `history`
        self._live: dict[str, _Live] = {}  # by uri
        self._by_id: dict[str, SuggestionEvent] = {}
        self._placement: dict[str, tuple[str, int]] = {}  # id -> (uri, offset where shown)
        self._typing: dict[str, tuple[float, int]] = {}  # uri -> (last change ts, chars/sec EMA*1000)
        # Suggestion ids only need to be unique, not secret: a generator seeded once from the OS
        # instead of a uuid4 (a getrandom system call) per request.
        self._ids = random.Random()
        # Pending supersede-rejects, (loop time due, suggestion id), a heap; one loop timer (for
        # the earliest) serves them all instead of one timer per shown suggestion.
        self._rejects: list[tuple[float, str]] = []
        self._reject_timer: asyncio.TimerHandle | None = None
        self._reject_loop: asyncio.AbstractEventLoop | None = None

    # -- inputs from the editor ------------------------------------------------------------------
    def note_typing(self, uri: str, inserted_chars: int) -> None:
        """Keeps a typing-speed estimate (chars/s) per document; a context feature for the gate."""
        now = self.clock()
        last, cps_milli = self._typing.get(uri, (now, 0))
        gap = max(now - last, 1e-3)
        inst = min(inserted_chars / gap, 50.0) if gap < 5 else 0.0
        cps = 0.7 * (cps_milli / 1000) + 0.3 * inst
        self._typing[uri] = (now, int(cps * 1000))

    def typing_cps(self, uri: str) -> float | None:
        entry = self._typing.get(uri)
        return None if entry is None else entry[1] / 1000

    # -- the request ---------------------------------------------------------------------------
    async def suggest(self, uri: str, path: str, document: str, offset: int, line: int, character: int) -> Suggestion | None:
        """Returns the suggestion to show at `offset`, or None. Raises Superseded when a newer
        request for the same document replaced this one during the debounce or provider wait."""
        self.stats.requests += 1
        if not self.enabled:
            return None
        prefix_full = document[:offset]
        reused = self._typing_through(uri, prefix_full)
        if reused is not None:
            self.stats.reused += 1
            return reused
        delay = self.config.inline.debounce_ms / 1000
        try:
            result: Suggestion | None = await self.debouncer.run(
                uri, delay, lambda: self._compute(uri, path, document, offset, line, character)
            )
            return result
        except Superseded:
            self.stats.superseded += 1
            raise

    def _typing_through(self, uri: str, prefix_full: str) -> Suggestion | None:
        live = self._live.get(uri)
        if live is None or live.event.outcome is not None:
            return None
        if not prefix_full.startswith(live.prefix):
            return None
        typed = prefix_full[len(live.prefix) :]
        # Nothing typed (a re-request at the very place: VS Code refetches, an explicit trigger) is
        # the same suggestion too: one id, not a rejection of it and a second event.
        if not live.text.startswith(typed):
            return None
        rest = live.text[len(typed) :]
        if not rest.strip():
            # The user typed the whole suggestion out instead of taking it: no accept (that is
            # `heedls.accept`), but no rejection either, which its supersede would have recorded.
            self.resolve(live.event.id, "ignored", TYPED_THROUGH)
            return None
        return Suggestion(live.event.id, rest, live.event, reused=True)

    def _base_event(self, uri: str, path: str, request: CompletionRequest) -> SuggestionEvent:
        extra: dict[str, Any] = {}
        cps = self.typing_cps(uri)
        if cps is not None:
            extra["typing_cps"] = round(cps, 3)
        event = SuggestionEvent(
            id=f"h-{self._ids.getrandbits(64):016x}",
            session=self.session,
            ts=self.clock(),
            language=request.language,
            file=self.file_label(path) if path else None,
            prefix=request.prefix,
            suffix=request.suffix,
            provider=getattr(self.provider, "name", None),
            extra=extra,
        )
        # A sink that keeps each workspace folder's events apart (telemetry.folders.FolderStores)
        # learns which document the event is of; its later snapshots are recorded by id alone.
        bind = getattr(self.sink, "bind", None)
        if bind is not None:
            bind(event.id, path)
        return event

    async def _compute(self, uri: str, path: str, document: str, offset: int, line: int, character: int) -> Suggestion | None:
        cfg = self.config.inline
        request = CompletionRequest(
            prefix=document[max(0, offset - cfg.max_prefix_chars) : offset],
            suffix=document[offset : offset + cfg.max_suffix_chars],
            path=path,
            language=language_of(path),
            line=line,
            character=character,
            max_lines=cfg.max_lines,
            document=document,
        )
        event = self._base_event(uri, path, request)
        # The gate's session features see the last HISTORY_WINDOW events it did not gate (and the
        # gated ones among them), as in training and evaluation.
        history = self._window.events()
        started = time.perf_counter()

        decision1 = self._gate_stage(self.gate.stage1, event, history, "stage1")
        if not decision1.show:
            self.stats.skipped_stage1 += 1
            event.gate = self._gate_info(decision1, None, "skipped")
            event.extra["gate_skipped"] = "stage1"
            self._finish(event, shown=False)
            return None

        key = cache_key(event.provider or "", None, request.prefix, request.suffix)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            candidates: list[Candidate] = cached
        else:
            deadline = self.config.provider.deadline_ms / 1000 if self.config.provider.name != "local" else 0.25
            try:
                # asyncio.timeout runs the call in this task (wait_for would wrap it in a new one)
                async with asyncio.timeout(deadline + 0.5):
                    candidates = await self.provider.complete(request, deadline)
            except TimeoutError:
                candidates = []
                self.stats.provider_errors += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a provider must never surface an error to the editor
                log.warning("provider %s failed: %s", event.provider, type(exc).__name__)
                self.stats.provider_errors += 1
                candidates = []
            # Only cache what the configured provider itself answered: a fallback answer given
            # while the remote was down should not outlive the outage.
            if candidates and all(c.provider == event.provider for c in candidates):
                self.cache.put(key, candidates)

        shown = first_shown(candidates, request)
        event.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        if shown is None:
            self.stats.empty += 1
            event.gate = self._gate_info(decision1, None, "empty")
            # Recorded and kept in the session's history like every request that reached the
            # pipeline: the report counts them, and replays (the shipped model's training data)
            # keep their empty requests in the history too.
            self._finish(event, shown=False)
            return None

        text, chosen = shown
        event.suggestion = text
        event.provider = chosen.provider
        event.model = chosen.model
        if chosen.confidence is not None:
            event.extra["confidence"] = chosen.confidence
        if chosen.logprob is not None:
            event.extra["logprob"] = chosen.logprob
        if chosen.source:
            event.extra["source"] = chosen.source
        decision2 = self._gate_stage(self.gate.stage2, event, history, "stage2")
        event.gate = self._gate_info(decision1, decision2, "shown" if decision2.show else "hidden")
        if not decision2.show:
            self.stats.hidden_stage2 += 1
            event.extra["gate_skipped"] = "stage2"
            self._finish(event, shown=False)
            return None
        self.stats.shown += 1
        self._finish(event, shown=True)
        self._supersede(uri)
        self._live[uri] = _Live(uri, document[:offset], text, event, self.clock())
        self._placement[event.id] = (uri, offset)
        if len(self._placement) > 2000:
            for old in list(self._placement)[:500]:
                del self._placement[old]
        return Suggestion(event.id, text, event)

    def _gate_stage(self, fn: Callable[[SuggestionEvent, list[SuggestionEvent]], GateDecision], event: SuggestionEvent, history: list[SuggestionEvent], stage: str) -> GateDecision:
        try:
            return fn(event, history)
        except Exception as exc:  # a broken model shows everything rather than nothing
            log.warning("acceptance gate %s failed (%s); showing", stage, type(exc).__name__)
            return GateDecision(True, "stage1" if stage == "stage1" else "stage2")

    def _gate_info(self, d1: GateDecision, d2: GateDecision | None, decision: str) -> dict[str, Any]:
        return {
            "decision": decision,  # skipped (stage 1) | hidden (stage 2) | shown | empty
            "mode": getattr(self.gate, "mode", None),
            "stage1": d1.score,
            "stage2": d2.score if d2 else None,
            "threshold": {"stage1": d1.threshold, "stage2": d2.threshold if d2 else None},
            "model_version": (d2 or d1).model_version,
        }

    def _finish(self, event: SuggestionEvent, shown: bool) -> None:
        event.shown = shown
        self.history.append(event)
        self._window.append(event)
        self._by_id[event.id] = event
        if len(self._by_id) > 2000:
            for old in list(self._by_id)[:500]:
                del self._by_id[old]
        self.sink.record(event)

    # -- outcomes ------------------------------------------------------------------------------
    def event(self, suggestion_id: str) -> SuggestionEvent | None:
        return self._by_id.get(suggestion_id)

    def placement(self, suggestion_id: str) -> tuple[str, int] | None:
        """(uri, document offset) where the suggestion was shown."""
        return self._placement.get(suggestion_id)

    def mark_displayed(self, suggestion_id: str) -> SuggestionEvent | None:
        event = self._by_id.get(suggestion_id)
        if event is None or "displayed_ts" in event.extra:
            return event
        event.extra["displayed_ts"] = self.clock()
        self.sink.record(event)
        return event

    def resolve(self, suggestion_id: str, outcome: Outcome, reason: str | None = None) -> SuggestionEvent | None:
        """Record accept/reject once; later contradicting reports are ignored (first decision wins).

        A supersede (the engine's own timeout or a client's "superseded") of a suggestion no client
        ever reported displayed (`heedls/suggestionShown`, extra `displayed_ts`) is no decision of
        the user's: it is recorded "ignored" (no label, nothing learned), and a late accept still
        wins over it. Explicit rejects ("dismissed", "typed-over") stay rejected."""
        event = self._by_id.get(suggestion_id)
        late_accept = event is not None and event.outcome == "ignored" and outcome == "accepted"
        if event is None or (event.outcome is not None and not late_accept):
            log.debug("%s for %s ignored: %s", outcome, suggestion_id, "unknown id" if event is None else f"already {event.outcome}")
            return None
        if outcome == "rejected" and reason == "superseded" and "displayed_ts" not in event.extra:
            outcome = "ignored"
        event.outcome = outcome
        shown_at = event.extra.get("displayed_ts") or event.ts
        # shown → decision; an ignored one had no decision (null, never invented)
        event.decision_ms = None if outcome == "ignored" else round(max(0.0, self.clock() - float(shown_at)) * 1000, 1)
        event.extra.pop("reason", None)  # a late accept replaces the supersede
        if reason and outcome != "accepted":
            event.extra["reason"] = reason
        for uri, live in list(self._live.items()):
            if live.event.id == suggestion_id:
                if live.reject_timer:
                    live.reject_timer.cancel()
                del self._live[uri]
        self.sink.record(event)
        if outcome == "ignored":
            return event  # not a decision: the gate learns nothing from it
        try:
            self.gate.observe(event)
        except Exception:
            log.exception("gate.observe failed")
        return event

    def _supersede(self, uri: str) -> None:
        """A new suggestion at the same place without an accept: the old one counts as rejected
        after the configured timeout (unless an accept for it arrives late), or as "ignored" when
        no client reported it displayed (see resolve)."""
        live = self._live.pop(uri, None)
        if live is None or live.event.outcome is not None:
            return
        timeout = self.config.telemetry.reject_timeout_s
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.resolve(live.event.id, "rejected", "superseded")
            return
        due = loop.time() + timeout
        heapq.heappush(self._rejects, (due, live.event.id))
        timer = self._reject_timer if self._reject_loop is loop else None
        if timer is None or due < timer.when():
            if timer is not None:
                timer.cancel()
            self._reject_timer, self._reject_loop = loop.call_at(self._rejects[0][0], self._rejects_due), loop

    def settle_pending(self) -> int:
        """At shutdown: the suggestions superseded within the reject timeout are decided now, as
        that timeout would have (no accept can arrive after exit), and so are those still showing,
        as closing their documents would decide them (rejected when a client reported them
        displayed, else ignored; they kept outcome null); how many there were."""
        for uri in list(self._live):
            self._supersede(uri)
        if self._reject_timer is not None:
            self._reject_timer.cancel()
            self._reject_timer = None
        pending, self._rejects = self._rejects, []
        for _, suggestion_id in sorted(pending):
            self.resolve(suggestion_id, "rejected", "superseded")
        return len(pending)

    def _rejects_due(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._reject_timer = None
        while self._rejects and self._rejects[0][0] <= now:
            _, suggestion_id = heapq.heappop(self._rejects)
            self.resolve(suggestion_id, "rejected", "superseded")
        if self._rejects:
            self._reject_timer = loop.call_at(self._rejects[0][0], self._rejects_due)

    def close_document(self, uri: str) -> None:
        """The editor closed the document at `uri`: nothing of it is kept per URI. A suggestion it
        was showing goes as a new request at the same place would have it go (`_supersede`:
        rejected after the timeout when it was reported displayed, else ignored; a late accept
        still wins), and its typing-speed estimate is dropped (a reopened document starts afresh)."""
        self._supersede(uri)
        self._typing.pop(uri, None)

    def dismiss_live(self, uri: str) -> None:
        live = self._live.get(uri)
        if live is not None:
            self.resolve(live.event.id, "rejected", "dismissed")
