"""The heedls language server: a pygls LanguageServer plus the shared state feature modules use.

Each LSP feature lives in its own module under `features/` with a `register(server)` function;
handlers there are thin and async and call the pure core. Document sync is central (documents.py)
and fans out to listeners so several features can react to the same didChange/didSave.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from heedls.server import config as config_mod
from heedls.server.config import HeedlsConfig
from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.protocol.json_rpc import RPCRequest

from heedls import __version__

log = logging.getLogger("heedls")


class DocumentListener(Protocol):
    """Optional hooks; implement the ones you need (missing ones are skipped)."""

    async def on_open(self, uri: str) -> None: ...
    async def on_change(self, uri: str, changes: list[types.TextDocumentContentChangeEvent]) -> None: ...
    async def on_save(self, uri: str) -> None: ...
    async def on_close(self, uri: str) -> None: ...


ConfigListener = Callable[[HeedlsConfig], Awaitable[None] | None]


class HeedlsProtocol(LanguageServerProtocol):
    """pygls' protocol with its table of running handlers kept bounded.

    pygls 2.1 files the future of every handler it runs in `_request_futures`, but removes only a
    request's (when its response is sent): the entries for notifications (a didChange on every
    keystroke, plus the async handler it hands over to) stay for the life of the server, holding
    their tasks, coroutines and contexts. That is a leak, and a heap that grows for the garbage
    collector to walk. Finished entries are dropped here once the table has grown; a finished
    handler can no longer be cancelled ($/cancelRequest, shutdown), so nothing else changes.
    """

    _prune_at = 64
    EXIT_WAITS_FOR_FLUSH_S = 10.0  # how long an early `exit` waits for the telemetry stores' close

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._given_up: dict[Any, str] = {}  # see send_request: id -> method, oldest first
        # `shutdown` received; its handler sets `flushing` as it starts closing the telemetry
        # stores (in a worker thread) and `flushed` once they are closed: an early `exit` waits
        self._shutdown_received = False
        self._exited = False
        self.flushing = threading.Event()
        self.flushed = threading.Event()

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Every JSON object stays plain data here; `handle_message` structures the body alone.

        pygls hands this method to `json.loads` as its object_hook, which calls it for every
        object, innermost first: a setting or command argument shaped like `{"jsonrpc", "id",
        "method"}` was made a message itself, answered (InvalidParams for id 5 inside a
        didChangeConfiguration) and the message around it lost. Only the top level is a message."""
        return data

    def _structure_body(self, data: dict[str, Any]) -> Any:
        """pygls drops a request whose params it cannot read (a negative position, params: null, a
        string where a number belongs) after logging it, so the client waits for an answer that
        never comes. Answer it with the error instead (InvalidParams), as JSON-RPC asks."""
        if "id" in data and "method" not in data and "error" not in data and data.get("result") is None:
            # A null result, which JSON-RPC allows: lsprotocol's type for some requests has none
            # (workspace/configuration: an array), and pygls dropped the answer with a traceback,
            # its waiter left waiting. It gets None: the client had nothing to give.
            if self._result_types.pop(data["id"], None) is not None:
                log.debug("a null result for request %s", data["id"])
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "method" in data and "id" in data and "error" not in data:
                msg_id = data["id"]
                if _usable_id(msg_id):
                    error = exc.to_response_error()
                    error.code = JsonRpcInvalidParams.CODE  # pygls says InternalError for params: absent
                    error.message = f"Invalid params: {data['method']} params do not match the protocol"
                    self._send_response(msg_id, error=error)
            raise

    _initialize_seen = False

    def handle_message(self, message: Any) -> None:
        """The LSP lifecycle around pygls': before `initialize` a request is answered
        ServerNotInitialized and a notification dropped (an early one built the engine without the
        workspace, and its events went to another store); a second `initialize` is refused (it
        rebuilt the workspace and lost the open documents); after `shutdown` a request is answered
        InvalidRequest (pygls dropped it, and the client waited)."""
        if isinstance(message, dict) and "jsonrpc" in message:
            problem = _not_a_message(message)
            if problem is not None:  # JSON-RPC's Invalid Request, for the id it has if it is one
                ident = message.get("id")
                ident = ident if _usable_id(ident) else None
                if "method" in message and "id" in message:  # a request: never answer a notification
                    self.send_error_for(ident, JsonRpcInvalidRequest(problem))
                else:  # or a response
                    log.warning("a message was dropped: %s", problem)
                return None
            params = message.get("params")
            if message.get("method") == "$/cancelRequest" and not _usable_id(params.get("id") if isinstance(params, dict) else None):
                # an id that is no number or string: pygls failed on it with a traceback
                log.warning("a $/cancelRequest without a usable id was ignored")
                return None
            if "method" in message and "params" not in message:
                # JSON-RPC lets a request or notification leave `params` out; pygls' structuring
                # needs the key (a `heedls/status` without it was InvalidParams, an unknown method
                # without it InvalidParams rather than MethodNotFound)
                message = {**message, "params": None}
            message = self._structure_body(message)
        if isinstance(message, (dict, list, int, float, str, bool)) or message is None:
            # a JSON body that is no message (`[1, 2]`, `42`, an object without "jsonrpc"): JSON-RPC's
            # Invalid Request, for the id it has if any, else a null one
            ident = message.get("id") if isinstance(message, dict) else None
            ident = ident if _usable_id(ident) else None
            self.send_error_for(ident, JsonRpcInvalidRequest("not a JSON-RPC 2.0 message"))
            return None
        method = getattr(message, "method", None)
        is_request = isinstance(message, RPCRequest)
        if method == types.EXIT and self._shutdown_received and not self._shutdown:
            # `exit` while shutdown's clean-up still runs (a client that does not wait for the
            # answer, or gave up waiting on a slow disk): exiting then interrupted the stores'
            # close (an error in the log), and the status was 1 though shutdown had been received.
            # Waited for here, blocking: nothing is served after exit, and the loop must not read
            # on (a read of stdin in progress would keep the process from ending).
            # (A close not started yet never will: the queue is written by the stores' atexit hook.)
            if self.flushing.is_set() and not self.flushed.wait(self.EXIT_WAITS_FOR_FLUSH_S):
                log.warning("exit: the telemetry was still being written after %.0f s; exiting anyway",
                            self.EXIT_WAITS_FOR_FLUSH_S)
            self._shutdown = True
        if method == types.EXIT or getattr(message, "jsonrpc", None) != self.VERSION:
            self._exited = self._exited or method == types.EXIT
            super().handle_message(message)
            return None
        refusal: JsonRpcException | None = None
        if method == types.INITIALIZE:
            if self._initialize_seen:
                refusal = JsonRpcInvalidRequest("initialize was already received")
            self._initialize_seen = True
        elif not self._initialize_seen and method is not None:
            if not is_request:
                return None
            refusal = JsonRpcServerNotInitialized("the server is not initialized yet: send initialize first")
        elif self._shutdown_received and method is not None and is_request:
            refusal = JsonRpcInvalidRequest("the server is shutting down: no more requests")
        if refusal is None:
            super().handle_message(message)
            return None
        if is_request:
            self.send_error_for(message.id, refusal)
        return None

    def send_error_for(self, msg_id: int | str | None, error: JsonRpcException) -> None:
        """An error response, also for no id at all: JSON-RPC wants `"id": null` there, which
        pygls' serializer leaves out (a client then cannot read the message as a response)."""
        if msg_id is not None:
            self._send_response(msg_id, error=error.to_response_error())
            return
        response = error.to_response_error()
        body = json.dumps({"jsonrpc": self.VERSION, "id": None,
                           "error": {"code": response.code, "message": response.message}}).encode("utf-8")
        if self.writer is None:
            return
        written = self.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        if inspect.isawaitable(written):
            asyncio.ensure_future(written)

    def _send_data(self, data: Any) -> None:
        # after `exit` the output is closed: an answer still due (a shutdown the client did not
        # wait for) has no one to read it; pygls logged "Error sending data" with a traceback
        if self._exited:
            log.debug("after exit, not sent: %.200s", data)
            return
        super()._send_data(data)

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any, args: Any = None, kwargs: Any = None) -> None:
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        if len(self._request_futures) > self._prune_at:
            self._prune_finished()

    @lsp_method(types.SHUTDOWN)
    def lsp_shutdown(self, *args: Any) -> Generator[Any, Any, None]:
        """pygls' shutdown, cancelling what still runs over a copy of the table: cancelling a
        command's future (a heedls.fix waiting for the client's workspace/applyEdit) removes its
        entry at once, and pygls' loop over the table itself failed ("dictionary changed size
        during iteration"): shutdown answered an internal error, and exit was status 1."""
        self._shutdown_received = True
        if (user_handler := self.fm.features.get(types.SHUTDOWN)) is not None:
            yield user_handler, args, None
        current_id = self.msg_id  # the shutdown request's own future is answered, not cancelled
        for msg_id, future in list(self._request_futures.items()):
            if msg_id != current_id and not future.done():
                future.cancel()
        self._shutdown = True

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Generator[Any, Any, None]:
        """pygls' didChange, but a change to a document that is not open (no didOpen, or after its
        didClose) is ignored with a line in the log that says so: pygls failed on it, and the log
        said only "KeyError: 'file:///…'"."""
        uri = params.text_document.uri
        if unquote(uri) not in self.workspace.text_documents:
            log.warning("a change to %s, which is not open (no didOpen, or after didClose): ignored", uri)
            return
        yield from super().lsp_text_document__did_change(params)

    _given_up_kept = 1024  # ids of requests given up on, remembered for a late answer

    def send_request(self, method: str, params: Any | None = None, callback: Callable[[Any], None] | None = None,
                     msg_id: Any = None) -> Any:
        """pygls' request to the client, with its bookkeeping bounded. pygls files each request's
        future and result type until the answer comes, and keeps the result type of one answered
        with an error for ever; a request the client never answers (a `workspace/applyEdit` the
        editor sat on, a progress `create`) stayed in both tables for the life of the server even
        after its waiter gave up. A request given up on (its future cancelled: a timeout, its
        caller cancelled, shutdown) leaves both at once; its id is remembered (the latest
        `_given_up_kept`) so that a late answer is dropped quietly, not logged as unknown."""
        ident = str(uuid.uuid4()) if msg_id is None else msg_id
        future = super().send_request(method, params, callback, ident)

        def forget(done: Any) -> None:
            self._result_types.pop(ident, None)  # answered with an error, or never: pygls kept it
            if not done.cancelled():
                return
            if self._request_futures.get(ident) is done:
                self._request_futures.pop(ident, None)
            self._given_up[ident] = method
            while len(self._given_up) > self._given_up_kept:
                self._given_up.pop(next(iter(self._given_up)))

        future.add_done_callback(forget)
        return future

    def _handle_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        """A client's answer to a request the server gave up on (cancelled: its waiter stopped,
        or shutdown) is dropped quietly; pygls set it on the cancelled future, an InvalidStateError
        traceback in the log. An answer to an id the server never used is pygls' one warning."""
        future = self._request_futures.get(msg_id)
        if future is not None and future.cancelled():
            self._request_futures.pop(msg_id, None)
            log.debug("an answer to request %s, given up on: ignored", msg_id)
            return
        if future is None and _usable_id(msg_id) and msg_id in self._given_up:
            method = self._given_up.pop(msg_id)
            log.debug("a late answer to %s (request %s), given up on: ignored", method, msg_id)
            return
        super()._handle_response(msg_id, result, error)

    def _run_generator(self, future: Any, *, gen: Any, result_future: Any) -> None:
        """pygls runs a command (`workspace/executeCommand`: heedls.fix, heedls.runTests) as a
        handler of its own under a generator, and `$/cancelRequest` cancels only the generator's
        future: the command ran on, and a cancelled fix still edited the buffer. Each step the
        generator starts is cancelled with it. A step cancelled (the loop ending after `exit`)
        cancels the generator's result: pygls read its result, and asyncio logged the
        CancelledError as "Exception in callback"."""
        if future is not None and future.cancelled():
            gen.close()
            if not result_future.done():
                result_future.cancel()
            return
        before = set(self._request_futures)
        super()._run_generator(future, gen=gen, result_future=result_future)
        for key in set(self._request_futures) - before:
            step = self._request_futures[key]
            result_future.add_done_callback(lambda done, step=step: step.cancel() if done.cancelled() else None)

    def _prune_finished(self) -> None:
        # list() copies in one step: a thread-pool handler may pop its entry meanwhile
        for msg_id, future in list(self._request_futures.items()):
            if future.done() and self._request_futures.get(msg_id) is future:
                self._request_futures.pop(msg_id, None)
        # many handlers genuinely running: do not rescan on every message
        self._prune_at = max(type(self)._prune_at, 2 * len(self._request_futures))


def _not_a_message(data: dict[str, Any]) -> str | None:
    """Why a JSON object with a "jsonrpc" key is no JSON-RPC 2.0 message (None: it may be one).
    pygls dropped a request of another version without an answer, and answered a method that is no
    string or an id that is an object with an internal error carrying its own traceback."""
    if data.get("jsonrpc") != "2.0":
        return f'not a JSON-RPC 2.0 message ("jsonrpc" is {json.dumps(data.get("jsonrpc"))[:40]}, not "2.0")'
    if "method" in data and not isinstance(data["method"], str):
        return '"method" must be a string'
    ident = data.get("id")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (int, float, str))):
        return '"id" must be a string, a number or null'
    return None


class HeedlsServer(LanguageServer):
    def report_server_error(self, error: Exception, source: Any) -> None:
        """pygls pops up "Error in server: …" for errors outside a request (a notification with bad
        params, a change to a document never opened, a malformed message). Those are the client's
        or the server's business, not the user's: they go to the log, never into a pop-up."""
        log.warning("%s (%s)", error, getattr(source, "__name__", source))
        # JSON-RPC: a body that cannot be read as JSON is a Parse error, answered with a null id:
        # bad syntax, bytes that are not UTF-8, or nesting too deep for the decoder
        if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError, RecursionError)):
            message = "JSON nested too deeply" if isinstance(error, RecursionError) else str(error)
            try:
                if isinstance(self.protocol, HeedlsProtocol):  # always, unless a test swaps it
                    self.protocol.send_error_for(None, JsonRpcParseError(message))
            except Exception:  # noqa: BLE001 - the connection may be gone
                log.debug("parse error response failed", exc_info=True)

    def start_tcp(self, host: str, port: int) -> None:
        """pygls' TCP server, reading each connection through the lenient framing stdio has
        (framing.py): pygls' own reader lost every message after one with a lower-case header."""
        from threading import Event

        from heedls.server.framing import AsyncLenientFrames
        from pygls.io_ import run_async

        self._stop_event = stop_event = Event()

        async def lsp_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.protocol.set_writer(writer)
            await run_async(stop_event=stop_event, reader=AsyncLenientFrames(reader),
                            protocol=self.protocol, logger=logging.getLogger("pygls.server"),
                            error_handler=self.report_server_error)
            self.shutdown()  # type: ignore[no-untyped-call]

        async def tcp_server() -> None:
            self._server = server = await asyncio.start_server(lsp_connection, host, port)
            async with server:
                await server.serve_forever()

        try:
            asyncio.run(tcp_server())
        except asyncio.CancelledError:
            pass

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("protocol_cls", HeedlsProtocol)
        super().__init__(
            "heedls",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            **kwargs,
        )
        self.config: HeedlsConfig = HeedlsConfig()
        self.root: Path | None = None
        # The workspace folders in the client's order (root is the first at initialize); each one's
        # configuration, keyed by its resolved path: see config_for.
        self.folders: list[Path] = []
        self.folder_configs: dict[Path, HeedlsConfig] = {}
        self.init_options: Any = None
        self.client_settings: Any = None
        # The editor's settings for each folder (workspace/configuration with the folder as
        # scopeUri), keyed by its resolved path; only their lint, tests and repair sections count.
        self.folder_settings: dict[Path, Any] = {}
        # How many times the window's settings, and the folders', have been asked for (or, the
        # window's, pushed): an answer to an older request than the latest is stale (lifecycle.py).
        self.settings_asked: dict[str, int] = {"window": 0, "folders": 0}
        self.document_listeners: list[Any] = []
        self.config_listeners: list[ConfigListener] = []
        # Services created lazily by feature modules, keyed by name (engine, telemetry, ...).
        self.services: dict[str, Any] = {}
        self._config_warnings: set[str] = set()

    # -- logging -----------------------------------------------------------------------------
    def notify_log(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        """Log to stderr and to the client's output panel. Never call with code or keys."""
        log.log(logging.WARNING if kind <= types.MessageType.Warning else logging.INFO, message)
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=f"heedls: {message}"))
        except Exception:  # no client connected yet (tests, CLI)
            pass

    # -- configuration ------------------------------------------------------------------------
    def folder_of(self, path: str | Path) -> Path | None:
        """The workspace folder (resolved) holding `path`, the innermost of nested ones; None when
        no folder holds it."""
        return config_mod.folder_of(Path(path), self.folder_configs) if self.folder_configs else None

    def config_for(self, path: str | Path | None) -> HeedlsConfig:
        """The configuration for a document at `path` (resolved): its folder's lint, tests and repair
        settings (config.PROJECT_SECTIONS) in a multi-root workspace, else `self.config`."""
        if path is None or len(self.folder_configs) < 2:
            return self.config  # one folder (the common case): nothing to look up
        folder = self.folder_of(path)
        return self.folder_configs[folder] if folder is not None else self.config

    async def reload_config(self) -> None:
        # The first folder of the window supplies the shared settings (provider, inline, gate,
        # telemetry timings): once the first folder of `initialize` (root) is removed, the next one
        # does, through the same listeners as any settings change. The services keep running where
        # they were built (root: its local index, the event store of documents in no folder); with
        # no folder left, root's file. Each folder's own events go to its own store (its own
        # telemetry enabled/privacy/path: telemetry/folders.py).
        folders = self.folders or ([self.root] if self.root is not None else [])
        new, self.folder_configs, warnings = config_mod.load_folders(
            folders, self.init_options, self.client_settings, self.folder_settings)
        # Each change re-reads every source: say only what is newly wrong, not the start-up
        # warnings again on every didChangeConfiguration.
        for warning in warnings:
            if warning not in self._config_warnings:
                self.notify_log(f"configuration: {warning}")
        self._config_warnings = set(warnings)
        self.config = new
        if not os.environ.get("HEEDLS_LOG_LEVEL"):
            logging.getLogger("heedls").setLevel(new.log_level.upper())
        for listener in list(self.config_listeners):
            try:
                result = listener(new)
                if result is not None:
                    await result
            except Exception as exc:  # a broken listener must not take the server down
                log.exception("config listener failed: %s", exc)

    async def dispatch(self, hook: str, *args: Any) -> None:
        for listener in list(self.document_listeners):
            method = getattr(listener, hook, None)
            if method is None:
                continue
            try:
                await method(*args)
            except Exception:
                log.exception("%s listener %r failed", hook, listener)


def create_server(**services: Any) -> HeedlsServer:
    """Build a server with every feature registered. `services` pre-seeds server.services
    (tests and the latency benchmark inject an instant provider this way)."""
    from heedls.server.features import FEATURES

    server = HeedlsServer()
    server.services.update(services)
    for feature in FEATURES:
        feature.register(server)
    return server


class RoutineProtocolErrors(logging.Filter):
    """pygls logs a malformed message from a client (params that do not match the protocol, a
    command's InvalidParams) with one or two full tracebacks, 60 lines on stderr, which an editor
    shows in its log. The client is answered with the error and heedls logs one line for it
    (report_server_error), so pygls' records of the protocol's errors are dropped; a traceback
    stays for anything else (a bug), and for debug logging, where this filter is not used."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Unable to deserialize message"):
            return False  # the error it leads to is logged next (report_server_error), in one line
        error = record.exc_info[1] if record.exc_info else None
        # report_server_error logs it, in one line (pygls calls it after each of these records);
        # a body that is not JSON (bad syntax, bytes that are not UTF-8) is answered a Parse error
        return not isinstance(error, (JsonRpcException, json.JSONDecodeError, UnicodeDecodeError))


def _usable_id(ident: Any) -> bool:
    """Whether `ident` is a JSON-RPC id pygls can answer and look up (a number or a string)."""
    return isinstance(ident, (int, str)) and not isinstance(ident, bool)


def configure_logging(level: str = "WARNING") -> None:
    handler = logging.StreamHandler(sys.stderr)  # stdout is the LSP channel
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("heedls")
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pygls' own records (Python's last-resort handler printed them bare), in the same format
    protocol = logging.StreamHandler(sys.stderr)
    protocol.setFormatter(handler.formatter)
    if logging.getLevelName(level) != logging.DEBUG:
        protocol.addFilter(RoutineProtocolErrors())
    pygls_log = logging.getLogger("pygls")
    pygls_log.handlers[:] = [protocol]
    pygls_log.propagate = False
    # pygls logs each message's body at INFO: code, which the log holds only when debug is asked for
    pygls_log.setLevel(logging.DEBUG if logging.getLevelName(level) == logging.DEBUG else logging.WARNING)
