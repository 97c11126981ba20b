"""The suggestion engine: debounce, cache, typing-through, gates and outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from heedls.server.config import HeedlsConfig
from heedls.server.events import SuggestionEvent
from heedls.server.pipeline.cache import SuggestionCache, cache_key
from heedls.server.pipeline.debounce import Superseded
from heedls.server.pipeline.engine import SuggestionEngine
from heedls.server.pipeline.gate import GateDecision
from heedls.server.providers.base import Candidate, CompletionRequest


class CountingProvider:
    name = "counting"

    def __init__(self, text: str = "values)", delay: float = 0.0, fail: bool = False) -> None:
        self.text, self.delay, self.fail = text, delay, fail
        self.calls = 0
        self.started = 0

    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        self.started += 1
        await asyncio.sleep(self.delay)
        self.calls += 1
        if self.fail:
            raise RuntimeError("backend exploded")
        return [Candidate(self.text, provider=self.name, confidence=0.5)]

    async def aclose(self) -> None:
        return None


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(self, event: SuggestionEvent) -> None:
        self.events.append(event.to_dict())


class ThresholdGate:
    mode = "cascade"

    def __init__(self, skip_stage1: bool = False, hide_stage2: bool = False) -> None:
        self.skip_stage1, self.hide_stage2 = skip_stage1, hide_stage2
        self.observed: list[SuggestionEvent] = []

    def stage1(self, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> GateDecision:
        assert event.suggestion is None
        return GateDecision(not self.skip_stage1, "stage1", 0.1 if self.skip_stage1 else 0.9, 0.2, "test-1")

    def stage2(self, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> GateDecision:
        assert event.suggestion
        return GateDecision(not self.hide_stage2, "stage2", 0.1 if self.hide_stage2 else 0.9, 0.3, "test-1")

    def observe(self, event: SuggestionEvent) -> None:
        self.observed.append(event)

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode}


def config(debounce_ms: int = 0) -> HeedlsConfig:
    c = HeedlsConfig()
    return replace(c, inline=replace(c.inline, debounce_ms=debounce_ms))


DOC = "n = len("


async def test_a_suggestion_is_minted_with_an_id_and_recorded_as_shown() -> None:
    sink = RecordingSink()
    engine = SuggestionEngine(CountingProvider(), config(), sink=sink)
    s = await engine.suggest("file:///a.py", "/a.py", DOC, len(DOC), 0, len(DOC))
    assert s is not None and s.text == "values)"
    assert sink.events[-1]["id"] == s.id and sink.events[-1]["shown"] is True
    assert sink.events[-1]["outcome"] is None and sink.events[-1]["latency_ms"] is not None


async def test_superseded_requests_are_cancelled_before_the_provider_is_called() -> None:
    provider = CountingProvider()
    engine = SuggestionEngine(provider, config(debounce_ms=50))
    tasks = [asyncio.ensure_future(engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)) for _ in range(5)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, Superseded) for r in results) == 4
    assert provider.started == 1  # only the last request reached the provider


async def test_a_request_superseded_while_waiting_on_the_provider_is_dropped() -> None:
    provider = CountingProvider(delay=0.2)
    engine = SuggestionEngine(provider, config())
    first = asyncio.ensure_future(engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8))
    await asyncio.sleep(0.05)
    second = await engine.suggest("u", "/a.py", DOC + "v", len(DOC) + 1, 0, 9)
    with pytest.raises(Superseded):
        await first
    assert second is not None and provider.calls == 1


async def test_a_cancelled_request_propagates_the_cancellation_not_superseded() -> None:
    provider = CountingProvider(delay=0.2)
    engine = SuggestionEngine(provider, config())
    first = asyncio.ensure_future(engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8))
    await asyncio.sleep(0.05)
    first.cancel()  # $/cancelRequest
    with pytest.raises(asyncio.CancelledError):
        await first
    # the engine is not left with a stale running request: the next one is not superseded
    assert await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8) is not None
    assert engine.stats.superseded == 0


async def test_a_superseded_request_is_not_left_cancelled() -> None:
    provider = CountingProvider(delay=0.2)
    engine = SuggestionEngine(provider, config())

    async def first_then_more() -> int:
        with pytest.raises(Superseded):
            await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
        await asyncio.sleep(0)  # would raise CancelledError if the supersede had leaked out
        current = asyncio.current_task()
        return current.cancelling() if current is not None else -1

    first = asyncio.ensure_future(first_then_more())
    await asyncio.sleep(0.05)
    second = await engine.suggest("u", "/a.py", DOC + "v", len(DOC) + 1, 0, 9)
    assert await first == 0 and second is not None


async def test_same_context_is_served_from_the_cache() -> None:
    provider = CountingProvider()
    engine = SuggestionEngine(provider, config())
    await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    engine.resolve(engine.history[-1].id, "rejected")
    await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    assert provider.calls == 1 and engine.stats.cache_hits == 1


async def test_typing_through_reuses_the_shown_suggestion_without_a_request() -> None:
    provider = CountingProvider()
    engine = SuggestionEngine(provider, config())
    first = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    assert first is not None
    doc = DOC + "val"
    again = await engine.suggest("u", "/a.py", doc, len(doc), 0, len(doc))
    assert again is not None and again.text == "ues)" and again.id == first.id and again.reused
    assert provider.calls == 1


async def test_asking_again_at_the_same_place_is_the_same_suggestion_not_a_second_one() -> None:
    # VS Code refetches, an explicit trigger: one suggestion on screen is one event, one id
    provider, sink = CountingProvider(), RecordingSink()
    engine = SuggestionEngine(provider, config(), sink=sink)
    first = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    again = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    assert first is not None and again is not None
    assert again.id == first.id and again.text == first.text and again.reused
    assert provider.calls == 1 and [e["id"] for e in sink.events] == [first.id]
    assert engine.resolve(first.id, "accepted") is not None  # and Tab accepts that one event


async def test_typing_something_else_asks_again() -> None:
    provider = CountingProvider()
    engine = SuggestionEngine(provider, config())
    await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    doc = DOC + "items"
    await engine.suggest("u", "/a.py", doc, len(doc), 0, len(doc))
    assert provider.calls == 2


async def test_stage1_skip_avoids_the_provider_call_and_is_recorded() -> None:
    provider, sink = CountingProvider(), RecordingSink()
    engine = SuggestionEngine(provider, config(), gate=ThresholdGate(skip_stage1=True), sink=sink)
    assert await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8) is None
    assert provider.started == 0
    assert sink.events[-1]["shown"] is False and sink.events[-1]["gate"]["stage1"] == 0.1


async def test_stage2_hide_records_the_suggestion_unshown() -> None:
    sink = RecordingSink()
    engine = SuggestionEngine(CountingProvider(), config(), gate=ThresholdGate(hide_stage2=True), sink=sink)
    assert await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8) is None
    last = sink.events[-1]
    assert last["shown"] is False and last["suggestion"] == "values)"
    assert last["gate"]["stage2"] == 0.1 and last["gate"]["model_version"] == "test-1"


async def test_a_failing_provider_yields_no_suggestion_and_no_error() -> None:
    engine = SuggestionEngine(CountingProvider(fail=True), config())
    assert await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8) is None
    assert engine.stats.provider_errors == 1


async def test_a_request_with_no_suggestion_is_recorded_and_stays_in_the_session_history() -> None:
    # One event per request that reached the pipeline (the report's "empty"), and later requests'
    # history features see it, as they do in replays, the shipped model's training data.
    sink = RecordingSink()
    engine = SuggestionEngine(CountingProvider(fail=True), config(), gate=ThresholdGate(), sink=sink)
    assert await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8) is None
    assert len(sink.events) == 1
    empty = sink.events[0]
    assert empty["shown"] is False and empty["suggestion"] is None and empty["outcome"] is None
    assert empty["gate"]["decision"] == "empty" and empty["gate"]["stage1"] == 0.9
    assert [e.id for e in engine.history] == [empty["id"]]


class SkipAfterGate(ThresholdGate):
    """Shows the first `show` requests, then skips every request; keeps the history it was given."""

    def __init__(self, show: int) -> None:
        super().__init__()
        self.show, self.seen = show, 0
        self.histories: list[list[str]] = []

    def stage1(self, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> GateDecision:
        self.seen += 1
        self.histories.append([h.id for h in history])
        skip = self.seen > self.show
        return GateDecision(not skip, "stage1", 0.1 if skip else 0.9, 0.2, "test-1")


async def test_requests_the_gate_skipped_never_push_the_users_decisions_out_of_the_history() -> None:
    # A stage that skipped a run of requests once saw a user with no decisions (the 64-event window
    # held only its own skips), scored that user lower still and skipped on: 571 of 572 requests.
    sink, gate = RecordingSink(), SkipAfterGate(show=70)
    engine = SuggestionEngine(CountingProvider(), config(), gate=gate, sink=sink)
    decided: list[str] = []
    for i in range(300):
        doc = f"x{i} = len("
        s = await engine.suggest("u", "/a.py", doc, len(doc), 0, len(doc))
        if s is not None:
            engine.resolve(s.id, "accepted" if i % 3 == 0 else "rejected")
            decided.append(s.id)
    assert len(decided) == 70
    last = gate.histories[-1]
    skipped = [e["id"] for e in sink.events if e["gate"]["decision"] == "skipped"]
    before_last = skipped[:-1]  # the last request's history is what came before it
    assert last == decided[-64:] + before_last[-64:]  # the user's last 64 decisions stay, beside the latest skips
    # and training and evaluation read an export of these events the same way (one extractor)
    from heedls.server.acceptance.features import session_histories

    latest = {e["id"]: e for e in sink.events}  # each suggestion's last snapshot, as an export has it
    exported = [SuggestionEvent.from_dict(e) for e in latest.values()]
    assert [h.id for h in session_histories(exported)[-1]] == last
    assert len(session_histories(exported)[80]) == 64 + 10  # 70 shown, then the first 10 skips


async def test_first_decision_wins_and_the_gate_observes_it() -> None:
    gate = ThresholdGate()
    engine = SuggestionEngine(CountingProvider(), config(), gate=gate)
    s = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    assert s is not None
    assert engine.resolve(s.id, "accepted") is not None
    assert engine.resolve(s.id, "rejected") is None
    assert gate.observed[-1].outcome == "accepted" and gate.observed[-1].decision_ms is not None


async def test_a_new_suggestion_at_the_same_place_rejects_the_old_one_after_the_timeout() -> None:
    engine = SuggestionEngine(CountingProvider(), _quick_reject())
    first = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    assert first is not None
    engine.mark_displayed(first.id)  # the editor reported it on screen
    doc = DOC + "x, "
    await engine.suggest("u", "/a.py", doc, len(doc), 0, len(doc))
    await asyncio.sleep(0.1)
    assert first is not None
    event = engine.event(first.id)
    assert event is not None and event.outcome == "rejected" and event.extra["reason"] == "superseded"


async def test_supersede_rejects_fall_due_each_after_its_own_timeout() -> None:
    c = config()
    engine = SuggestionEngine(CountingProvider(), replace(c, telemetry=replace(c.telemetry, reject_timeout_s=0.3)))
    docs = [DOC + "a" * i for i in range(4)]
    shown = [await engine.suggest("u", "/a.py", d, len(d), 0, len(d)) for d in docs[:2]]  # 0 waits 0.3 s
    engine.config = replace(c, telemetry=replace(c.telemetry, reject_timeout_s=0.05))  # reloaded config
    shown += [await engine.suggest("u", "/a.py", d, len(d), 0, len(d)) for d in docs[2:]]  # 1, 2 wait 0.05 s
    assert all(s is not None for s in shown)
    ids = [s.id for s in shown if s is not None]
    for i in ids:
        engine.mark_displayed(i)
    assert engine.resolve(ids[2], "accepted") is not None  # a late accept wins over the pending reject
    await asyncio.sleep(0.15)
    outcomes = [e.outcome if (e := engine.event(i)) else None for i in ids]
    assert outcomes == [None, "rejected", "accepted", None]
    await asyncio.sleep(0.3)
    outcomes = [e.outcome if (e := engine.event(i)) else None for i in ids]
    assert outcomes == ["rejected", "rejected", "accepted", None]  # the live one is never rejected


def test_cache_is_bounded_and_keyed_by_context() -> None:
    cache = SuggestionCache(entries=2)
    keys = [cache_key("p", None, f"prefix{i}", "") for i in range(3)]
    assert len(set(keys)) == 3
    for k in keys:
        cache.put(k, [k])
    assert len(cache) == 2 and cache.get(keys[0]) is None and cache.get(keys[2]) == [keys[2]]
    # text far before the cursor does not change the key
    tail = "t" * 2000
    assert cache_key("p", None, "x" * 5000 + tail, "") == cache_key("p", None, "y" * 5000 + tail, "")


def test_disk_cache_survives_a_new_process_object(tmp_path) -> None:
    first = SuggestionCache(entries=4, disk_dir=tmp_path)
    first.put("k", ["v"])
    first.close()
    second = SuggestionCache(entries=4, disk_dir=tmp_path)
    assert second.get("k") == ["v"]


def test_an_unusable_disk_cache_degrades_to_memory(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = SuggestionCache(entries=4, disk_dir=blocker / "cache")
    cache.put("k", 1)
    assert cache.get("k") == 1


async def test_typing_through_then_accept_is_one_accepted_event_with_the_original_id() -> None:
    # An editor that lets the request after each typed character through (no reject of its own)
    # gets the same id back with the rest; Tab then accepts the original event, once.
    sink, gate = RecordingSink(), ThresholdGate()
    engine = SuggestionEngine(CountingProvider(), config(), gate=gate, sink=sink)
    first = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    assert first is not None
    engine.mark_displayed(first.id)
    for typed in ("v", "va", "val"):
        doc = DOC + typed
        again = await engine.suggest("u", "/a.py", doc, len(doc), 0, len(doc))
        assert again is not None and again.id == first.id and again.text == "values)"[len(typed):]
    assert engine.resolve(first.id, "accepted") is not None
    mine = [e for e in sink.events if e["id"] == first.id]
    assert mine[-1]["outcome"] == "accepted" and mine[-1]["suggestion"] == "values)"
    assert {e["outcome"] for e in sink.events} == {None, "accepted"}  # nothing rejected, one event
    assert len({e["id"] for e in sink.events}) == 1
    assert [e.outcome for e in gate.observed] == ["accepted"]


def _quick_reject(timeout_s: float = 0.05) -> HeedlsConfig:
    c = config()
    return replace(c, telemetry=replace(c.telemetry, reject_timeout_s=timeout_s))


async def test_a_superseded_suggestion_never_reported_displayed_is_ignored_and_not_learned() -> None:
    # The answer went back but no editor said it was on screen (VS Code cancelled it, Neovim
    # dropped a stale answer): its supersede is no decision of the user's.
    gate, sink = ThresholdGate(), RecordingSink()
    engine = SuggestionEngine(CountingProvider(), _quick_reject(), gate=gate, sink=sink)
    first = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    doc = DOC + "x, "
    await engine.suggest("u", "/a.py", doc, len(doc), 0, len(doc))
    await asyncio.sleep(0.1)
    assert first is not None
    event = engine.event(first.id)
    assert event is not None and event.outcome == "ignored" and event.extra["reason"] == "superseded"
    assert event.decision_ms is None  # no decision, so no decision time
    assert gate.observed == []  # nothing learned
    assert [e["outcome"] for e in sink.events if e["id"] == first.id][-1] == "ignored"


async def test_a_clients_superseded_of_an_undisplayed_suggestion_is_ignored_but_explicit_rejects_stay() -> None:
    gate = ThresholdGate()
    engine = SuggestionEngine(CountingProvider(), config(), gate=gate)
    ids = []
    for i in range(4):
        doc = DOC + "a" * i
        s = await engine.suggest(f"u{i}", "/a.py", doc, len(doc), 0, len(doc))
        assert s is not None
        ids.append(s.id)
    engine.mark_displayed(ids[3])
    engine.resolve(ids[0], "rejected", "superseded")
    engine.resolve(ids[1], "rejected", "dismissed")
    engine.resolve(ids[2], "rejected", "typed-over")
    engine.resolve(ids[3], "rejected", "superseded")
    outcomes = [e.outcome if (e := engine.event(i)) else None for i in ids]
    assert outcomes == ["ignored", "rejected", "rejected", "rejected"]
    assert [e.id for e in gate.observed] == ids[1:]


async def test_a_late_accept_wins_over_ignored() -> None:
    # e.g. Neovim 0.12's native front end reports "shown" only with its accept
    gate = ThresholdGate()
    engine = SuggestionEngine(CountingProvider(), config(), gate=gate)
    s = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    assert s is not None
    engine.resolve(s.id, "rejected", "superseded")
    engine.mark_displayed(s.id)
    event = engine.resolve(s.id, "accepted")
    assert event is not None and event.outcome == "accepted" and "reason" not in event.extra
    assert event.decision_ms is not None and [e.outcome for e in gate.observed] == ["accepted"]
    assert engine.resolve(s.id, "rejected", "dismissed") is None  # and the accept is final


async def test_typing_the_whole_suggestion_out_by_hand_is_no_rejection() -> None:
    # No Tab, so not accepted (that is `heedls.accept`); but the user wrote what was suggested, so
    # it must not be learned as a rejection either, as its supersede would have recorded it.
    sink, gate = RecordingSink(), ThresholdGate()
    engine = SuggestionEngine(CountingProvider(), _quick_reject(), gate=gate, sink=sink)
    first = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    assert first is not None and first.text == "values)"
    engine.mark_displayed(first.id)
    doc = DOC + "values)"
    await engine.suggest("u", "/a.py", doc, len(doc), 0, len(doc))
    await asyncio.sleep(0.1)
    mine = [e for e in sink.events if e["id"] == first.id]
    assert mine[-1]["outcome"] == "ignored" and mine[-1]["reason"] == "typed-through"
    assert gate.observed == []


async def test_pending_supersede_rejections_are_decided_at_shutdown() -> None:
    """The editor closes a second after a displayed suggestion was replaced: its reject timer
    would fire after the exit, and the rejection was never recorded."""
    sink, gate = RecordingSink(), ThresholdGate()
    engine = SuggestionEngine(CountingProvider(), _quick_reject(60.0), gate=gate, sink=sink)
    first = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    assert first is not None
    engine.mark_displayed(first.id)
    doc = DOC + "x, "
    second = await engine.suggest("u", "/a.py", doc, len(doc), 0, len(doc))
    assert second is not None
    assert engine.settle_pending() == 2  # the second, still showing and never reported displayed: ignored
    mine = [e for e in sink.events if e["id"] == first.id]
    assert mine[-1]["outcome"] == "rejected" and mine[-1]["reason"] == "superseded"
    assert [e.outcome for e in gate.observed] == ["rejected"]


async def test_suggestions_still_showing_at_shutdown_are_decided_as_a_close_would_decide_them() -> None:
    """The editor quits with ghost text on screen (and another suggestion it never reported
    displayed): the displayed one is rejected, the other ignored, as closing their documents
    would have them; both kept outcome null for ever."""
    sink, gate = RecordingSink(), ThresholdGate()
    engine = SuggestionEngine(CountingProvider(), _quick_reject(60.0), gate=gate, sink=sink)
    displayed = await engine.suggest("u", "/a.py", DOC, len(DOC), 0, 8)
    unreported = await engine.suggest("v", "/b.py", DOC, len(DOC), 0, 8)
    assert displayed is not None and unreported is not None
    engine.mark_displayed(displayed.id)

    assert engine.settle_pending() == 2

    last = {e["id"]: e for e in sink.events}
    assert (last[displayed.id]["outcome"], last[displayed.id]["reason"]) == ("rejected", "superseded")
    assert last[unreported.id]["outcome"] == "ignored" and last[unreported.id]["decision_ms"] is None
    assert [e.id for e in gate.observed] == [displayed.id]  # only a decision of the user's is learned


async def test_closing_documents_leaves_nothing_of_them_behind_and_settles_what_they_showed() -> None:
    """A long day opens and closes hundreds of documents. Each closed one's live suggestion (with
    the document's text up to the cursor) and typing speed were kept for the life of the server:
    after 200 documents, 200 of each. A closed document's suggestion goes as a supersede does."""
    engine = SuggestionEngine(CountingProvider(), _quick_reject())
    shown = []
    for i in range(200):
        uri = f"file:///m{i}.py"
        engine.note_typing(uri, 1)
        s = await engine.suggest(uri, f"/m{i}.py", DOC, len(DOC), 0, 8)
        assert s is not None
        if i % 2 == 0:
            engine.mark_displayed(s.id)
        shown.append(s.id)
        engine.close_document(uri)
        assert engine.typing_cps(uri) is None
    assert len(engine._live) == 0 and len(engine._typing) == 0
    await asyncio.sleep(0.15)
    outcomes = [e.outcome if (e := engine.event(i)) else None for i in shown]
    assert outcomes == ["rejected", "ignored"] * 100  # displayed ones rejected, the others ignored
    # a document opened again starts afresh: its old suggestion is not typed through
    again = await engine.suggest("file:///m0.py", "/m0.py", DOC, len(DOC), 0, 8)
    assert again is not None and again.id not in shown
