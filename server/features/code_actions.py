"""Code actions: ruff's fixes carried on diagnostics, and repairs proven by running the tests.

- ruff fixes come from `server.services["diagnostics"].for_uri(uri)` (`Diagnostic.fixes`):
  safe → quickfix, unsafe → quickfix titled "(unsafe)", display-only → never applied.
  Fixes with applicability "validated" (proven by tests) are offered too; "hint" never as a fix.
- `heedls/fix` ({"textDocument": {"uri"}, "position"?}) runs the repair engine (work-done progress,
  cancellable: $/cancelRequest or the progress's cancel button stops the worker processes) and
  returns {"fixed", "patch", "edit", "explanation", …}. A found fix is cached per document text, so
  a later `textDocument/codeAction` on the failing test's diagnostics offers
  "Fix: … (tests pass)" with the edit, while the test files it was proven by (and the conftest.py
  files and helper modules they read) are unchanged on disk.
- A fix is handed out (returned, or sent with `workspace/applyEdit` by `heedls.fix`) only while the
  document is still the text it was searched for: otherwise its line numbers may name other code.
  To a client that supports `documentChanges` the edit names the document's version, so the editor
  itself refuses it once the user has typed on.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heedls.analyzers.lines import split_lines
from heedls.analyzers.model import Diagnostic, Fix
from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from heedls.server.features.documents import opened
from heedls.server.features.lifecycle import PULL_TIMEOUT_S
from heedls.server.features.params import field as _field
from heedls.server.positions import UTF16, units
from lsprotocol import types
from pygls import uris
from pygls.exceptions import JsonRpcInvalidParams

log = logging.getLogger("heedls.code_actions")

FIX_METHOD = "heedls/fix"
FIX_COMMAND = "heedls.fix"  # [uri, line?]: search, then apply the validated fix through workspace/applyEdit
_ids = itertools.count(1)
# How long `heedls.fix` waits for the client's answer to workspace/applyEdit: as long as for a
# settings pull, since a client that never answers must not hold the command forever.
APPLY_TIMEOUT_S = PULL_TIMEOUT_S
STALE_FIX = "The file changed while the fix was being searched; run heedls.fix again."


_DISK_READ_CAP = 4_000_000  # bytes of a file the client never opened that an action may read


def _text_of(server: HeedlsServer, uri: str) -> str | None:
    """The client's text of an open document; else the file on disk, if it is a regular file of
    reasonable size (pygls would read any path, a FIFO too, and block the server until it is written)."""
    document = opened(server.workspace, uri)
    if document is not None:
        return str(document.source)
    path = uris.to_fs_path(uri)
    try:
        if path and Path(path).is_file() and Path(path).stat().st_size <= _DISK_READ_CAP:
            return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        pass
    return None


def _encoding(server: HeedlsServer) -> str | None:
    """The position encoding the client and server agreed on (UTF-16 unless negotiated)."""
    return getattr(getattr(server.workspace, "position_codec", None), "encoding", None)


def _position(lines: list[str], offset_line: int, col: int, encoding: str | None) -> types.Position:
    line_text = lines[offset_line] if offset_line < len(lines) else ""
    return types.Position(line=offset_line, character=units(line_text[:col], encoding))


def minimal_edit(old: str, new: str, encoding: str | None = UTF16) -> tuple[types.Range, str]:
    """One TextEdit turning old into new: the differing middle, at whole-line granularity (its
    columns in `encoding`'s code units)."""
    # the client's lines (a form feed breaks no line for it, as it does for str.splitlines)
    old_lines = split_lines(old)
    new_lines = split_lines(new)
    start = 0
    while start < min(len(old_lines), len(new_lines)) and old_lines[start] == new_lines[start]:
        start += 1
    end_old, end_new = len(old_lines), len(new_lines)
    while end_old > start and end_new > start and old_lines[end_old - 1] == new_lines[end_new - 1]:
        end_old -= 1
        end_new -= 1
    rng = types.Range(start=types.Position(line=start, character=0), end=types.Position(line=end_old, character=0))
    if end_old == len(old_lines) and old_lines and not old_lines[-1].endswith(("\n", "\r")):
        # the last line has no newline: end the range at its last character instead
        last = old_lines[-1]
        rng = types.Range(start=rng.start, end=types.Position(line=len(old_lines) - 1, character=units(last, encoding)))
    return rng, "".join(new_lines[start:end_new])


def workspace_edit(uri: str, old: str, new: str, encoding: str | None = UTF16, *, versioned: bool = False,
                   version: int | None = None) -> types.WorkspaceEdit:
    """The edit turning `old` into `new`. `versioned` (for clients that support `documentChanges`):
    as a change of the document at `version` (None: the file on disk), which the editor applies
    only while the document is at that version."""
    rng, text = minimal_edit(old, new, encoding)
    edit = types.TextEdit(range=rng, new_text=text)
    if versioned:
        document = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=document, edits=[edit])])
    return types.WorkspaceEdit(changes={uri: [edit]})


def _document_changes(server: HeedlsServer) -> bool:
    """Does the client take versioned `documentChanges` in a WorkspaceEdit?"""
    caps = getattr(server, "client_capabilities", None)  # none known outside a session (the unit tests' fakes)
    workspace = caps.workspace if caps else None
    edits = workspace.workspace_edit if workspace else None
    return bool(edits and edits.document_changes)


def _edit_of_current(server: HeedlsServer, uri: str, current: str, new: str) -> types.WorkspaceEdit:
    """The edit turning the document's text as the server has it now (`current`) into `new`,
    carrying the document's version for a client that checks versions."""
    if not _document_changes(server):
        return workspace_edit(uri, current, new, _encoding(server))
    document = opened(server.workspace, uri)
    version = document.version if document is not None else None  # None: the file on disk
    return workspace_edit(uri, current, new, _encoding(server), versioned=True, version=version)


def _lsp_range(d: Diagnostic) -> types.Range:
    return types.Range(
        start=types.Position(line=d.range.start.line, character=d.range.start.character),
        end=types.Position(line=d.range.end.line, character=d.range.end.character),
    )


def _overlaps(d: Diagnostic, rng: types.Range) -> bool:
    return not (d.range.end.line < rng.start.line or d.range.start.line > rng.end.line)


def _same_file(path: str, uri: str) -> bool:
    """Is `path` (as an analyzer reports it, symlinks resolved) the document at `uri` (as the client
    opened it, maybe through a symlinked folder)? The edit must then go to the client's URI."""
    own = uris.to_fs_path(uri)
    try:
        return own is not None and Path(path).resolve() == Path(own).resolve()
    except OSError:
        return False


def _fix_edit(server: HeedlsServer, uri: str, fix: Fix) -> types.WorkspaceEdit:
    changes: dict[str, list[types.TextEdit]] = {}
    encoding = _encoding(server)
    for e in fix.edits:
        target = uri if not e.path or _same_file(e.path, uri) else (uris.from_fs_path(e.path) or uri)
        lines = (_text_of(server, target) or "").split("\n")
        changes.setdefault(target, []).append(
            types.TextEdit(
                range=types.Range(
                    start=_position(lines, e.range.start.line, e.range.start.character, encoding),
                    end=_position(lines, e.range.end.line, e.range.end.character, encoding),
                ),
                new_text=e.new_text,
            )
        )
    return types.WorkspaceEdit(changes=changes)


def _stats(paths: list[str]) -> list[tuple[int, int] | None]:
    """(size, modification time) of each file, None for one that is gone: a stat each, cheap
    enough for every code-action request."""
    out: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_size, st.st_mtime_ns))
    return out


@dataclass
class _CachedFix:
    digest: str  # of the document's text the fix was searched for
    result: Any  # the RepairResult
    files: list[str]  # the tests and what they read (conftest.py, helper modules)
    stats: list[tuple[int, int] | None]  # theirs when the search started


class RepairService:
    """Runs `heedls/fix` requests and remembers their validated fixes per document text."""

    def __init__(self, server: HeedlsServer) -> None:
        self.server = server
        self.cache: dict[str, _CachedFix] = {}  # by document uri
        self.running: dict[str, threading.Event] = {}
        self.last_workers: list[int] = []  # pids of the runner processes of the latest repair (tests)

    @staticmethod
    def digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def cached(self, uri: str, text: str) -> Any | None:
        """The fix found for this text of the document, while the tests it was proven by (and the
        conftest.py files and helper modules they read) are as they were then."""
        entry = self.cache.get(uri)
        if entry and entry.digest == self.digest(text) and entry.stats == _stats(entry.files):
            return entry.result
        return None

    def remember(self, uri: str, text: str, result: Any, files: list[str], stats: list[tuple[int, int] | None]) -> None:
        """The fix found for `text`, proven by runs that read `files` as they were at `stats`."""
        self.cache[uri] = _CachedFix(self.digest(text), result, files, stats)

    async def on_files_changed(self, changed: list[str]) -> None:
        """Modules changed on disk (the editor's file watcher): a fix cached for another document
        was proven with the old ones, which its module or tests may import. The document's own
        save (the text the fix was searched for) keeps its fix."""
        for uri in [uri for uri in self.cache if any(other != uri for other in changed)]:
            del self.cache[uri]

    async def on_deleted(self, deleted: list[str]) -> None:
        await self.on_files_changed(deleted)

    def _chat(self, use_provider: bool) -> Any | None:
        if not use_provider:
            return None
        for candidate in (self.server.services.get("chat"), getattr(self.server.services.get("engine"), "provider", None),
                          self.server.services.get("provider")):
            if candidate is not None and hasattr(candidate, "chat"):
                return _LoopBridge(candidate, asyncio.get_running_loop())
        return None

    async def fix(self, params: Any) -> dict[str, Any]:
        from heedls.analyzers import check, testrun
        from heedls.analyzers.repair.engine import Repairer, RepairRequest

        uri = _field(_field(params, "textDocument"), "uri")
        empty = {"fixed": False, "patch": "", "edit": None, "explanation": ""}
        if not isinstance(uri, str):
            return {**empty, "explanation": "no document given"}
        path_str = uris.to_fs_path(uri)
        if not path_str or not Path(path_str).is_file():
            return {**empty, "explanation": "the document is not a file on disk"}
        path = Path(path_str).resolve()
        text = _text_of(self.server, uri)
        if text is None:
            return {**empty, "explanation": "the document could not be read"}
        cfg = self.server.config_for(path)  # the tests and repair settings of the document's folder
        if not cfg.repair.enabled:
            return {**empty, "explanation": "repair is turned off (repair.enabled = false)"}
        if not cfg.tests.trusted:
            return {**empty, "explanation": "the workspace is not trusted: tests are not run"}
        workspace = (self.server.folder_of(path) or self.server.root or check.find_workspace([path])).resolve()
        if testrun.is_test_file(path):
            return {**empty, "explanation": "open the module under test to repair it (this is a test file)"}
        tests = await asyncio.to_thread(testrun.related_tests, workspace, path)
        if not tests:
            return {**empty, "explanation": "no test file imports this module"}
        position = _field(params, "position")
        line = _field(position, "line") if position is not None else None
        if position is not None and (isinstance(line, bool) or not isinstance(line, int) or line < 0):
            raise JsonRpcInvalidParams(f"heedls/fix: position must be {{line, character}} with a line number "
                                       f"of 0 or more, got {position!r}")
        focus = line + 1 if isinstance(line, int) else None
        cancel = threading.Event()
        previous = self.running.pop(uri, None)
        if previous is not None:
            previous.set()  # a newer request for the same document wins
        self.running[uri] = cancel
        token = await self._progress_begin()
        loop = asyncio.get_running_loop()

        def progress(message: str, fraction: float) -> None:
            if token is not None:
                loop.call_soon_threadsafe(self._progress_report, token, message, fraction)

        req = RepairRequest(
            module=path, tests=[Path(t) for t in tests], root=workspace, budget_s=cfg.repair.budget_s,
            jobs=cfg.repair.jobs, python=cfg.tests.python, chat=self._chat(cfg.repair.use_provider), focus_line=focus, source=text,
        )
        repairer = Repairer(req, cancel, progress)
        self._watch_workers(repairer)
        if token is not None:
            future = self.server.work_done_progress.tokens.get(token)
            if future is not None:
                future.add_done_callback(lambda f: cancel.set() if f.cancelled() else None)
        end = "cancelled"
        try:
            # what the fix will have been proven against, as it is before the runs start (a test
            # saved during the search is not what they ran)
            files = [str(p) for p in (*req.tests, *await asyncio.to_thread(repairer.support_files))]
            stats = _stats(files)
            result = await asyncio.shield(asyncio.to_thread(repairer.run))
            end = "fix found (tests pass)" if result.fixed else "no fix found"
        except asyncio.CancelledError:
            cancel.set()  # stops the search and kills its worker process groups
            raise
        finally:
            if self.running.get(uri) is cancel:
                self.running.pop(uri, None)
            self._progress_end(token, end)
        out: dict[str, Any] = result.to_json()
        edit = None
        stale = False
        if result.fixed and result.new_text is not None:
            self.remember(uri, text, result, files, stats)  # the code action offers it if the text comes back
            # The search read the text when it began; the user may have typed since. The edit's
            # lines are those of that text, so on another text it would overwrite other code.
            if _text_of(self.server, uri) == text:
                edit = _edit_of_current(self.server, uri, text, result.new_text)
            else:
                stale = True
                out["explanation"] = f"{STALE_FIX} (For the earlier text: {out.get('explanation', '')})"
        out["edit"] = edit
        out["stale"] = stale
        return out

    def _watch_workers(self, repairer: Any) -> None:
        """Record the runner pids as they start (the cancellation test checks they are gone)."""
        original = repairer._start_workers

        def start() -> None:
            original()
            self.last_workers = [w.proc.pid for w in repairer.workers if w.proc is not None]

        repairer._start_workers = start

    # -- progress -----------------------------------------------------------------------------
    async def _progress_begin(self) -> str | None:
        caps = self.server.client_capabilities
        if not (caps and caps.window and caps.window.work_done_progress):
            return None
        token = f"heedls-fix-{next(_ids)}"
        progress = self.server.work_done_progress
        try:
            await asyncio.wait_for(progress.create_async(token), 5.0)
        except Exception:  # noqa: BLE001 - a client refusing progress must not stop the repair
            return None
        progress.begin(token, types.WorkDoneProgressBegin(title="heedls: searching for a fix", cancellable=True,
                                                          percentage=0))
        return token

    def _progress_report(self, token: str, message: str, fraction: float) -> None:
        try:
            self.server.work_done_progress.report(
                token, types.WorkDoneProgressReport(message=message, percentage=int(fraction * 100))
            )
        except Exception:
            log.debug("progress update failed", exc_info=True)

    def _progress_end(self, token: str | None, message: str) -> None:
        if token is None:
            return
        try:
            self.server.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        except Exception:
            log.debug("progress update failed", exc_info=True)
        finally:
            self.server.work_done_progress.tokens.pop(token, None)


class _LoopBridge:
    """Runs the server's chat provider on the server's loop for the engine's own threads/loops."""

    def __init__(self, chat: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.chat_obj = chat
        self.loop = loop

    async def chat(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, n: int = 1,
                   deadline_s: float) -> list[str]:
        fut = asyncio.run_coroutine_threadsafe(
            self.chat_obj.chat(messages, max_tokens=max_tokens, temperature=temperature, n=n, deadline_s=deadline_s),
            self.loop,
        )
        result: list[str] = await asyncio.wrap_future(fut)
        return result


def _repair_on(server: HeedlsServer, uri: str) -> bool:
    """`repair.enabled` of the document's folder: off, no search for a fix is offered."""
    path = uris.to_fs_path(uri)
    return server.config_for(Path(path).resolve() if path else None).repair.enabled


def code_actions(server: HeedlsServer, service: RepairService, params: types.CodeActionParams) -> list[types.CodeAction]:
    uri = params.text_document.uri
    store = server.services.get("diagnostics")
    cache: dict[str, list[str] | None] = {}

    def as_published(d: Diagnostic) -> types.Diagnostic:
        """The diagnostic as the client has it (range in its position encoding, source, code)."""
        to_lsp = getattr(store, "to_lsp", None)
        if callable(to_lsp):
            try:
                return to_lsp(d, cache)  # type: ignore[no-any-return]
            except Exception:  # noqa: BLE001 - a code action must not fail on one diagnostic
                log.exception("diagnostic conversion failed")
        return types.Diagnostic(range=_lsp_range(d), message=d.message, source=d.source, code=d.code)

    diagnostics: list[Diagnostic] = []
    if store is not None and hasattr(store, "for_uri"):
        try:
            diagnostics = list(store.for_uri(uri))
        except Exception:
            log.exception("diagnostics store failed")
    only = set(params.context.only or []) if params.context and params.context.only else None
    actions: list[types.CodeAction] = []
    wanted_ids = {str(_field(d.data, "id")) for d in (params.context.diagnostics if params.context else []) if d.data}
    current = getattr(store, "fixes_current", None)
    for d in diagnostics:
        if not (_overlaps(d, params.range) or str(d.data.get("id")) in wanted_ids):
            continue
        if callable(current) and d.fixes and not current(uri, d):
            continue  # computed on an earlier text (the rerun is a debounce away): its edits name other lines now
        for fix in d.fixes:
            if fix.applicability in ("display-only", "hint") or not fix.edits:
                continue
            title = fix.title
            if fix.applicability == "unsafe":
                title += " (unsafe)"
            elif fix.applicability == "validated" and "(tests pass)" not in title:
                title += " (tests pass)"
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[as_published(d)],
                    edit=_fix_edit(server, uri, fix),
                    is_preferred=fix.applicability in ("safe", "validated"),
                )
            )
    text = _text_of(server, uri)
    result = service.cached(uri, text) if text is not None else None
    if result is not None and result.fixed and result.new_text is not None and text is not None:
        failing = [d for d in diagnostics if d.source == "pytest"]
        best = result.fixes[0] if result.fixes else None
        # the search's runs passed every test; the fresh-process check may have run out of time first
        proven = "tests pass" if best is None or best.confirmed else "tests pass; not confirmed in a fresh process"
        title = f"Fix: {best.description if best else 'repair'} ({proven})"
        actions.insert(
            0,
            types.CodeAction(
                title=title,
                kind=types.CodeActionKind.QuickFix,
                diagnostics=[as_published(d) for d in failing] or None,
                edit=_edit_of_current(server, uri, text, result.new_text),
                is_preferred=True,
                data={"explanation": result.explanation, "patch": result.patch},
            ),
        )
    elif text is not None and any(d.source == "pytest" for d in diagnostics) and _repair_on(server, uri):
        # no proven fix yet: offer to search for one (runs the tests; applies only a validated fix)
        failing = [d for d in diagnostics if d.source == "pytest" and _overlaps(d, params.range)]
        if failing:
            actions.append(
                types.CodeAction(
                    title="Search for a fix that makes the tests pass",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[as_published(d) for d in failing],
                    command=types.Command(title="Search for a fix", command=FIX_COMMAND,
                                          arguments=[uri, params.range.start.line]),
                )
            )
    if only is not None:
        # Kinds are hierarchical strings ("quickfix", "source.fixAll"); compare their values, not
        # the enum's repr ('CodeActionKind.QuickFix' would match nothing a client sends).
        wanted = [_kind_value(k) for k in only]
        actions = [a for a in actions if a.kind is None or any(_matches(_kind_value(a.kind), k) for k in wanted)]
    return actions




def register(server: HeedlsServer) -> None:
    service = RepairService(server)
    server.services["repair"] = service
    server.document_listeners.append(service)  # on_files_changed / on_deleted

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix], resolve_provider=False),
    )
    async def on_code_action(ls: HeedlsServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        return code_actions(ls, service, params) or None

    @server.feature(FIX_METHOD)
    async def on_fix(ls: HeedlsServer, params: Any) -> dict[str, Any]:
        return await service.fix(params)

    @server.command(FIX_COMMAND)
    async def fix_command(ls: HeedlsServer, *args: Any) -> dict[str, Any]:
        values = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
        if not values or not isinstance(values[0], str):
            return {"fixed": False, "patch": "", "edit": None, "explanation": "heedls.fix expects [uri, line?]"}
        params: dict[str, Any] = {"textDocument": {"uri": values[0]}}
        if len(values) > 1 and isinstance(values[1], int):
            params["position"] = {"line": values[1], "character": 0}
        result = await service.fix(params)
        edit = result.get("edit")
        message = result.get("explanation") or ("No fix found." if not result.get("fixed") else "Fixed.")
        level = types.MessageType.Warning if result.get("stale") else types.MessageType.Info
        applied: bool | None = False  # nothing is sent without a fix for the document's current text
        if result.get("fixed") and edit is not None:
            applied, reason = await _apply_edit(ls, edit)
            if reason:
                result["failure_reason"] = reason
            if applied is False:
                level = types.MessageType.Warning
                message = f"Found a fix but it was not applied ({reason or 'the editor refused it'}). {message}"
            elif applied is None:
                level = types.MessageType.Warning
                message = (f"Found a fix and sent it to the editor, which did not confirm within "
                           f"{APPLY_TIMEOUT_S:g} s that it applied it. {message}")
        result["applied"] = applied
        try:
            ls.window_show_message(types.ShowMessageParams(type=level, message=f"heedls: {message}"))
        except Exception:
            log.debug("showMessage failed", exc_info=True)
        return result


async def _apply_edit(ls: HeedlsServer, edit: types.WorkspaceEdit) -> tuple[bool | None, str | None]:
    """Sends `edit` with workspace/applyEdit: (whether the client applied it, its reason if not).
    (None, None) when it did not answer within APPLY_TIMEOUT_S."""
    request = ls.workspace_apply_edit(types.ApplyWorkspaceEditParams(edit=edit, label="heedls: validated fix"))
    try:
        outcome = await asyncio.wait_for(asyncio.wrap_future(request), APPLY_TIMEOUT_S)
    except TimeoutError:
        log.warning("workspace/applyEdit: no answer within %gs; given up (a later answer is ignored)", APPLY_TIMEOUT_S)
        return None, None
    except Exception as exc:  # noqa: BLE001 - an error answer: the client did not apply it
        log.warning("workspace/applyEdit failed: %s", exc)
        return False, str(exc) or type(exc).__name__
    finally:
        # Given up (timed out, or the command was cancelled): the request leaves the protocol's
        # table (app.HeedlsProtocol.send_request); it stayed there for ever, waiting for an answer.
        request.cancel()
    if not isinstance(outcome, types.ApplyWorkspaceEditResult):
        return None, None  # an answer that says nothing (null)
    return outcome.applied, outcome.failure_reason


def _kind_value(kind: object) -> str:
    return str(getattr(kind, "value", kind))


def _matches(kind: str, wanted: str) -> bool:
    return wanted == "" or kind == wanted or kind.startswith(wanted + ".")
