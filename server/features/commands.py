"""The suggestion lifecycle protocol: accept (command), shown/rejected (notifications), status,
toggle and report. See docs/architecture.md for the shapes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from heedls.server.events import REJECT_REASONS
from heedls.server.features.inline import engine_of
from heedls.server.features.params import field as _field
from lsprotocol import types
from pygls import uris
from pygls.exceptions import JsonRpcInvalidParams

log = logging.getLogger(__name__)



def _persistence(server: HeedlsServer) -> Any | None:
    if "persistence" not in server.services:
        try:
            from heedls.server.telemetry.persistence import PersistenceTracker

            scale = max(1.0, server.config.telemetry.persistence_time_scale)
            start = time.time()
            server.services["persistence"] = PersistenceTracker(clock=lambda: start + (time.time() - start) * scale)
        except Exception as exc:
            log.info("persistence tracking unavailable: %s", exc)
            server.services["persistence"] = None
    return server.services["persistence"]


def _source(server: HeedlsServer, uri: str) -> str | None:
    """The document's text as the server has it now, or None (closed, unknown)."""
    try:
        text: str = server.workspace.get_text_document(uri).source
        return text
    except Exception:
        return None


def check_persistence(server: HeedlsServer) -> None:
    tracker = server.services.get("persistence")
    if tracker is None:
        return

    engine = server.services.get("engine")
    for event in tracker.check(None, lambda uri: _source(server, uri)):
        if engine is not None:
            engine.sink.record(event)
            try:
                engine.gate.observe(event)
            except Exception:
                log.exception("gate.observe failed")
    _schedule_persistence(server, tracker)


def _schedule_persistence(server: HeedlsServer, tracker: Any) -> None:
    """Checkpoints fall due even when the user stops typing: a timer checks at the next one."""
    import asyncio

    due = tracker.next_due()
    old = server.services.get("persistence_timer")
    if old is not None:
        if server.services.get("persistence_due") == due:
            return  # already set for this checkpoint (the usual case on a keystroke)
        old.cancel()
        server.services["persistence_timer"] = None
    server.services["persistence_due"] = due
    if due is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    scale = max(1.0, server.config.telemetry.persistence_time_scale)
    delay = max(0.05, (due - tracker.clock()) / scale + 0.01)
    server.services["persistence_timer"] = loop.call_later(delay, check_persistence, server)


def _events_of(sources: list[Any]) -> Iterator[Any]:
    """The events of several folders' stores (open stores, or store files), one after the other:
    each suggestion lives in one folder's store, so nothing is counted twice."""
    from heedls.server.telemetry.export import read_store
    from heedls.server.telemetry.store import TelemetryStore

    for source in sources:
        if isinstance(source, TelemetryStore):
            yield from source.iter_events()
        else:
            yield from (row.data for row in read_store(source))


def status(server: HeedlsServer) -> dict[str, Any]:
    engine = engine_of(server)
    gate_status: dict[str, Any] = {}
    try:
        gate_status = dict(engine.gate.status())
    except Exception:
        gate_status = {"mode": getattr(engine.gate, "mode", None)}
    # The counts come from the engine, which records one event per request that ended (as the
    # store and `heedls telemetry report` count them; cancelled requests are not among them).
    # hidden_share, what the editors show as "31% hidden": of the requests that ended with a
    # suggestion or a gate decision, the share the gate held back (not asked for, or hidden);
    # requests the provider had nothing for are not the gate's doing and are left out.
    stats = engine.stats
    held_back = stats.skipped_stage1 + stats.hidden_stage2
    decided = held_back + stats.shown
    gate_status.update({
        "requests": decided + stats.empty,
        "skipped": stats.skipped_stage1,
        "hidden": stats.hidden_stage2,
        "shown": stats.shown,
        "empty": stats.empty,
        "hidden_share": (round(held_back / decided, 4) if decided else 0.0)
        if gate_status.get("mode") != "off" else None,
    })
    provider_status = getattr(engine.provider, "status", None)
    return {
        "enabled": engine.enabled,
        "provider": getattr(engine.provider, "name", None),
        "provider_status": provider_status() if callable(provider_status) else None,
        "shown": stats.shown,
        "gate": gate_status,
    }


def register(server: HeedlsServer) -> None:
    @server.command("heedls.accept")
    async def accept(ls: HeedlsServer, *args: Any) -> dict[str, Any]:
        suggestion_id = args[0] if args else None
        if isinstance(suggestion_id, list):  # some clients wrap arguments once more
            suggestion_id = suggestion_id[0] if suggestion_id else None
        engine = engine_of(ls)
        if not isinstance(suggestion_id, str):
            return {"accepted": False, "reason": "missing suggestion id"}
        where = engine.placement(suggestion_id)
        event = engine.resolve(suggestion_id, "accepted")
        if event is None:
            return {"accepted": False, "reason": "unknown or already decided"}
        tracker = _persistence(ls)
        if tracker is not None and where is not None and event.suggestion:
            try:
                tracker.track(event, where[0], event.suggestion, where[1],
                              before=event.prefix or "", after=event.suffix or "",
                              document=_source(ls, where[0]))
                _schedule_persistence(ls, tracker)
            except Exception:
                log.exception("persistence tracking failed")
        return {"accepted": True, "id": suggestion_id}

    @server.feature("heedls/suggestionShown")
    async def shown(ls: HeedlsServer, params: Any) -> None:
        suggestion_id = _field(params, "id")
        if isinstance(suggestion_id, str):
            engine_of(ls).mark_displayed(suggestion_id)

    @server.feature("heedls/suggestionRejected")
    async def rejected(ls: HeedlsServer, params: Any) -> None:
        suggestion_id = _field(params, "id")
        reason = _field(params, "reason")
        log.debug("suggestionRejected %s (%s)", suggestion_id, reason)
        if isinstance(suggestion_id, str):
            # the protocol's reasons only: anything else is unknown (null), never made up, and free
            # text from a client must not reach the store
            engine_of(ls).resolve(suggestion_id, "rejected", reason if reason in REJECT_REASONS else None)

    @server.feature("heedls/status")
    async def status_request(ls: HeedlsServer, params: Any) -> dict[str, Any]:
        return status(ls)

    @server.command("heedls.toggleSuggestions")
    async def toggle(ls: HeedlsServer, *args: Any) -> dict[str, Any]:
        engine = engine_of(ls)
        if args and args[0] is not None and not isinstance(args[0], bool):
            # "yes", 0, "false": a guess either way could turn suggestions the wrong way
            raise JsonRpcInvalidParams(f"heedls.toggleSuggestions: the argument must be true, false or left out, "
                                       f"not {repr(args[0])[:40]}")
        wanted = args[0] if args and isinstance(args[0], bool) else not engine.enabled
        engine.enabled = wanted
        return {"enabled": engine.enabled}

    @server.command("heedls.report")
    async def report(ls: HeedlsServer, *args: Any) -> dict[str, Any]:
        """The report of the whole window: every workspace folder's store (each folder keeps its
        own); with a document URI argument, of that document's folder only."""
        sink = ls.services.get("telemetry_folders")
        uri = args[0] if args and isinstance(args[0], str) else None
        path_arg = (uris.to_fs_path(uri) or None) if uri else None
        sources = sink.sources(path_arg) if sink is not None else []
        if not sources:
            return {"html": None, "reason": "telemetry is disabled"}
        try:
            from heedls.server.services import data_dir
            from heedls.server.telemetry.report import write_html_report

            target = sources[0] if len(sources) == 1 else _events_of(sources)
            # flushing can wait on a locked disk: never on the event loop
            path = await asyncio.to_thread(write_html_report, target, data_dir() / "report.html")
            return {"html": str(path)}
        except Exception as exc:
            ls.notify_log(f"report failed: {exc}")
            return {"html": None, "reason": str(exc)}

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: HeedlsServer, params: Any) -> None:
        # Suggestions superseded in the last seconds are decided before the store closes: their
        # reject timers would fire after the exit, and the rejections were lost.
        engine = ls.services.get("engine")
        settle = getattr(engine, "settle_pending", None)
        if callable(settle):
            try:
                settle()
            except Exception:
                log.exception("settling the pending rejections failed")
        # Telemetry first: nothing the user did may be lost, whatever fails after this. Every
        # workspace folder's store is closed (services["telemetry"] is the start-up folder's).
        stores = ls.services.get("telemetry_folders") or ls.services.get("telemetry")
        flushing, flushed = getattr(ls.protocol, "flushing", None), getattr(ls.protocol, "flushed", None)

        def close_stores() -> None:  # an early `exit` waits for it (HeedlsProtocol.handle_message)
            if flushing is not None:
                flushing.set()
            try:
                if stores is not None:
                    stores.close()
            finally:
                if flushed is not None:
                    flushed.set()

        try:
            await asyncio.to_thread(close_stores)
        except asyncio.CancelledError:
            # the client's `exit` came before this answer: the close it waited for has finished
            # (else the queue is written by the stores' atexit hook)
            if flushed is None or not flushed.is_set():
                log.warning("exit came while the telemetry was being closed; its queue is written at exit")
            raise
        except BaseException:
            log.exception("telemetry close failed")
        diagnostics = ls.services.get("diagnostics")
        stop = getattr(diagnostics, "shutdown", None)
        if stop is not None:
            try:
                await stop()  # kills a test run still going
            except BaseException:  # a cancelled run raises CancelledError here; we are exiting anyway
                log.debug("diagnostics shutdown interrupted")
        engine = ls.services.get("engine")
        if engine is not None:
            engine.debouncer.cancel_all()
            engine.cache.close()
            close = getattr(engine.provider, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    pass
            try:
                from heedls.server.providers.http import aclose_shared_client

                await aclose_shared_client()
            except Exception:
                pass
