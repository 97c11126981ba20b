"""textDocument/inlineCompletion: thin handler over the suggestion engine (pipeline/engine.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any

from heedls.server import services
from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from heedls.server.features.documents import opened
from heedls.server.pipeline.debounce import Superseded
from heedls.server.pipeline.engine import SuggestionEngine
from heedls.server.positions import column_from_units, units
from lsprotocol import types
from pygls import uris

log = logging.getLogger(__name__)


def engine_of(server: HeedlsServer) -> SuggestionEngine:
    engine = server.services.get("engine")
    if engine is None:
        seeded = server.services.get("telemetry")
        sink = None
        if seeded is not None or "telemetry" not in server.services:  # None seeded: no telemetry
            # Each workspace folder's events go to its own store; services["telemetry"] is the
            # start-up folder's (documents in no folder, and the only one with a single folder).
            sink = services.open_telemetry(server.config, server.root, server.folder_configs, server.notify_log, seeded,
                                           on_late=lambda: _expire_later(server))
            server.services["telemetry_folders"] = sink
            server.services["telemetry"] = sink.default
        engine = services.build_engine(
            server.config,
            server.root,
            server.notify_log,
            provider=server.services.get("provider"),
            sink=sink,
            gate=server.services.get("gate"),
            folder_of=server.folder_of,
        )
        server.services["engine"] = engine
        server.services["labelled_folders"] = frozenset(server.folder_configs)  # what its labels are made for
        server.services.setdefault("gate", engine.gate)
        _share_folders(server)  # before the first build: it indexes every workspace folder
        start = getattr(engine.provider, "start_indexing", None)
        if callable(start):
            try:
                start()
            except Exception as exc:
                server.notify_log(f"workspace indexing unavailable: {exc}")
    return engine


def _local_method(server: HeedlsServer, method: str) -> Any | None:
    """`method` of the engine's provider, or else of the local provider behind it (the fallback
    of an LLM provider): the one that keeps the workspace index. None before the engine exists."""
    engine = server.services.get("engine")
    if engine is None:
        return None
    for provider in (engine.provider, getattr(engine.provider, "fallback", None)):
        found = getattr(provider, method, None)
        if callable(found):
            return found
    return None


def _folders_changed(server: HeedlsServer) -> bool:
    """Whether the workspace folders are others than when last asked (or the engine was built):
    only they decide an event's `file` label; any other setting leaves the labels as they are."""
    folders = frozenset(server.folder_configs)
    changed = server.services.get("labelled_folders") != folders
    server.services["labelled_folders"] = folders
    return changed


def _share_folders(server: HeedlsServer) -> None:
    """The local provider indexes every workspace folder the client has now (multi-root; the root
    alone for a client without folders)."""
    set_folders = _local_method(server, "set_folders")
    if set_folders is None:
        return
    set_folders(server.folders or ([server.root] if server.root is not None else []))


class _Feeder:
    """Feeds open buffers to the local provider's cache model and tracks typing speed."""

    def __init__(self, server: HeedlsServer) -> None:
        self.server = server

    def _update(self, uri: str) -> None:
        update = _local_method(self.server, "update_document")
        if update is not None:
            doc = self.server.workspace.get_text_document(uri)
            update(uris.to_fs_path(uri) or uri, doc.source)

    async def on_open(self, uri: str) -> None:
        engine_of(self.server)
        self._update(uri)

    async def on_close(self, uri: str) -> None:
        engine = self.server.services.get("engine")
        if engine is not None:
            engine.close_document(uri)
        close = _local_method(self.server, "close_document")
        if close is not None:
            close(uris.to_fs_path(uri) or uri)

    async def on_files_changed(self, changed: list[str]) -> None:
        """.py files changed on disk (watched-file events): the local provider re-indexes them (no
        engine yet: its first build reads the disk as it is then)."""
        files_changed = _local_method(self.server, "files_changed")
        if files_changed is not None:
            files_changed([uris.to_fs_path(uri) or uri for uri in changed])

    async def on_change(self, uri: str, changes: list[Any]) -> None:
        engine = self.server.services.get("engine")
        if engine is None:
            return
        inserted = sum(len(getattr(c, "text", "")) for c in changes)
        engine.note_typing(uri, inserted)
        self._update(uri)
        tracker = self.server.services.get("persistence")
        if tracker is not None:
            await _check_persistence(self.server)


async def _check_persistence(server: HeedlsServer) -> None:
    from heedls.server.features.commands import check_persistence

    check_persistence(server)


@functools.lru_cache(maxsize=256)
def _fs_path(uri: str) -> str:
    return uris.to_fs_path(uri) or ""


def _cursor(lines: Sequence[str], asked: types.Position,
            encoding: str | None) -> tuple[int, int, types.Position]:
    """(line, code-point column, the position in the client's units) of a request's cursor, moved
    to where an editor's cursor can be: editors race with edits, so a position past the end of its
    line is that line's end, one past the last line is the end of the document (the empty line after
    a final line break is a line of its own), and one inside a character (half an emoji) is just
    after it. The answer's range is that position, so text and range always agree."""
    line = max(asked.line, 0)
    if line >= len(lines):  # past the last line
        if not lines or lines[-1].endswith(("\n", "\r")):
            return len(lines), 0, types.Position(len(lines), 0)  # the empty last line
        line, count = len(lines) - 1, None
    else:
        count = asked.character
    text = lines[line].rstrip("\r\n")
    column = len(text) if count is None else column_from_units(text, count, encoding)
    # no per-character walk for ASCII text: one code unit per character in every encoding
    character = column if text.isascii() else units(text[:column], encoding)
    return line, column, types.Position(line, character)


async def _reopen_telemetry(server: HeedlsServer, config: Any) -> None:
    """Telemetry turned off, switched to nocode or moved while the server runs (in the editor's
    settings or a folder's pyproject.toml), or workspace folders added or removed: from the next
    event on, each folder's store follows its settings (the user's privacy choice cannot wait for
    a restart). A store that is replaced, or whose folder left, is flushed and closed, so nothing
    already logged is lost."""
    sink = server.services.get("telemetry_folders")
    if sink is None:
        return  # telemetry seeded off (tests)
    folders = {folder: each.telemetry for folder, each in server.folder_configs.items()}
    # The new stores first: an event recorded while an old store closes must not meet a closed store.
    old_stores, changes = sink.configure(config.telemetry, folders)
    server.services["telemetry"] = sink.default
    _expire_later(server)  # a removed folder's store reopened by a late update: closed in time
    await _close_stores(server, old_stores)
    for change in changes:
        server.notify_log(f"telemetry settings changed: now {change}", types.MessageType.Info)


async def _close_stores(server: HeedlsServer, stores: list[Any]) -> None:
    for store in stores:
        try:
            await asyncio.to_thread(store.close)  # flushing can wait on a locked disk
        except Exception as exc:
            server.notify_log(f"telemetry store did not close cleanly: {exc}")


def _expire_later(server: HeedlsServer) -> None:
    """One loop timer closes the stores of removed folders once their late updates are over
    (FolderStores.expire); a timer already set stays (firing early only sets the next one)."""
    sink = server.services.get("telemetry_folders")
    delay = sink.next_expiry() if sink is not None else None
    if delay is None or server.services.get("telemetry_expiry") is not None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop (a test calling the sink directly): configure or shutdown closes them

    def fire() -> None:
        server.services["telemetry_expiry"] = None
        task = loop.create_task(_expire(server))
        server.services["telemetry_expiring"] = task  # a reference: the loop keeps only weak ones

    server.services["telemetry_expiry"] = loop.call_later(delay + 0.1, fire)


async def _expire(server: HeedlsServer) -> None:
    sink = server.services.get("telemetry_folders")
    if sink is None:
        return
    await _close_stores(server, sink.expire())
    _expire_later(server)  # a store reopened meanwhile, or one due later


def register(server: HeedlsServer) -> None:
    server.document_listeners.append(_Feeder(server))

    async def on_config(config: Any) -> None:
        engine = server.services.get("engine")
        if engine is None:
            return
        old = engine.config
        engine.config = config
        if old.inline.enabled != config.inline.enabled:
            # only when the setting itself changed: heedls.toggleSuggestions holds otherwise
            engine.enabled = config.inline.enabled
        await _reopen_telemetry(server, config)  # the folders' stores follow their settings
        if _folders_changed(server):  # an event's `file` is relative to its folder: worked out again
            clear_labels = getattr(engine.file_label, "cache_clear", None)
            if callable(clear_labels):
                clear_labels()
        if old.provider != config.provider and "provider" not in server.services:
            local = getattr(engine.provider, "fallback", None) if engine.provider.name != "local" else engine.provider
            engine.provider = services.build_provider(config, local or services.build_local(server.root), server.notify_log)
        # Folders added or removed (workspace/didChangeWorkspaceFolders reloads the configuration)
        _share_folders(server)
        learning_moved = old.telemetry.enabled != config.telemetry.enabled  # where the gate keeps what it learns
        if old.gate != config.gate or learning_moved:
            reconfigure = getattr(engine.gate, "reconfigure", None)
            if callable(reconfigure) and config.gate.mode != "off" and old.gate.mode != "off" and not learning_moved:
                reconfigure(config.gate)  # keeps the session's counters and learned rows
            else:
                retire = getattr(engine.gate, "retire", None)
                if callable(retire):  # its refit in flight must not save where telemetry is now off
                    retire()
                engine.gate = services.build_gate(config, server.notify_log)
            server.services["gate"] = engine.gate

    server.config_listeners.append(on_config)

    @server.feature(
        types.TEXT_DOCUMENT_INLINE_COMPLETION,
        types.InlineCompletionOptions(),
    )
    async def inline_completion(ls: HeedlsServer, params: types.InlineCompletionParams) -> types.InlineCompletionList | None:
        engine = engine_of(ls)
        uri = params.text_document.uri
        doc = opened(ls.workspace, uri)
        if doc is None:
            return None  # never opened (documents.opened)
        try:
            source = doc.source
            lines = doc.lines  # splits the whole document: once per request
        except Exception:
            return None
        line, column, position = _cursor(lines, params.position, doc.position_codec.encoding)
        offset = sum(map(len, lines[:line])) + column
        path = _fs_path(uri)
        try:
            suggestion = await engine.suggest(uri, path, source, offset, line, column)
        except Superseded:
            return None  # a newer request of the same document answers instead: leave the screen alone
        if suggestion is None:
            # Nothing to show here: an empty list, not null, so that a client clears the ghost text
            # it still draws (Neovim 0.12's vim.lsp.inline_completion keeps showing the last item
            # after a null answer, so text typed over it left the old suggestion on screen).
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(
            insert_text=suggestion.text,
            range=types.Range(position, position),
            command=types.Command(title="heedls: accept", command="heedls.accept", arguments=[suggestion.id]),
        )
        return types.InlineCompletionList(items=[item])
