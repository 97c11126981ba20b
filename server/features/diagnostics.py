"""Diagnostics: syntax errors while typing, ruff while typing and on open/save, test failures on save.

- syntax: on open at once, on change after one debounce (`lint.syntaxDebounceMs`; a newer change
  cancels the pending one); the tree-sitter tree is kept per document for incremental re-parsing.
- ruff: on open and on save, and after an edit once typing pauses (`lint.lintDebounceMs`), in a
  worker thread (it is a subprocess). Until a rerun has seen the text, the findings and fixes on
  screen are the earlier text's: code actions leave out fixes computed on another text (their
  edits name that text's lines), syntax findings' fixes too (`fixes_current`).
- tests: on save after `tests.debounceMs`, only the tests related to the saved file, only when the
  workspace is trusted, never more than one run per workspace (a newer save cancels the older run,
  whose process group is killed), with `$/progress` (server-initiated work-done progress) and the
  client's cancel button wired to the run. A run killed at `tests.timeoutS` becomes a diagnostic
  saying so. The command `heedls.runTests [uri?]` runs the same thing on demand; a save's run due
  while such a run, started after that save, is going joins it when it runs the same tests (else
  runs after it) rather than cancel it. Cancelling the command stops its run, unless a save's run
  still waits for it.

`server.services["diagnostics"]` is this module's store: `.for_uri(uri)` gives the analyzer-level
diagnostics (with fixes, explanations and facts) that code actions and hover build on; each LSP
diagnostic carries `data.id`, which `.get(id)` maps back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import weakref
from collections.abc import Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heedls.analyzers import check, lint, syntax
from heedls.analyzers.model import Diagnostic, Range
from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from heedls.server.features.documents import opened
from lsprotocol import types
from pygls import uris

log = logging.getLogger("heedls.diagnostics")

SYNTAX, RUFF, PYTEST = "syntax", "ruff", "pytest"
_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}
# Above this size the parse and compile() run in a worker thread so typing stays responsive:
# tree-sitter can be slow on some small files too (quadratic in a run of comment lines after an
# indented block: 1.3 s for 4,000 such lines, ~100 kB), and a thread hop costs ~0.1 ms.
_THREAD_THRESHOLD = 20_000
_PROGRESS_TICK_S = 1.0
_RELATED_EXPLANATION_CHARS = 400
_SUPERSEDED: dict[str, Any] = {"ran": False, "outcome": "cancelled", "reason": "superseded by a newer run"}
_SHUTTING_DOWN: dict[str, Any] = {"ran": False, "outcome": "cancelled", "reason": "the server is shutting down"}


@dataclass(eq=False)
class _TestRun:
    """A workspace's test run in progress and the parties waiting for its result: the caller that
    started it, and on-save runs that joined it (the code they were saved for is what it tests)."""

    task: asyncio.Task[dict[str, Any]]
    paths: tuple[str, ...] | None  # the files whose related tests it runs; None: all tests
    explicit: bool  # asked for (heedls.runTests), not started by a save
    saves: int  # the workspace's saves before it started: it tests the code they saved
    targets: asyncio.Future[list[str] | None]  # the test files it runs, once it knows them
    waiters: int = 0
    # Files of on-save runs that joined it: a newer save that cancels it must run their tests too.
    joined: tuple[str, ...] = ()


def _path_of(uri: str) -> str | None:
    """The file `uri` names on this machine (resolved), None for none. A path pygls makes that is
    not absolute here (`file:///c%3A/…` from a Windows client is `c:/…`) names none: resolving it
    made it a path under the server's working directory, and heedls.runTests ran that project's
    tests."""
    path = uris.to_fs_path(uri)
    return str(Path(path).resolve()) if path and os.path.isabs(path) else None


def _gone_paths(uris_: Iterable[str]) -> set[str]:
    """`_path_of` of files deleted: each folder resolved once (a file that is gone is no symlink),
    not every file (a checkout deletes thousands, each resolved on the event loop)."""
    folders: dict[str, str] = {}
    paths: set[str] = set()
    for uri in uris_:
        path = uris.to_fs_path(uri)
        if not path or not os.path.isabs(path):
            continue
        head, name = os.path.split(path)
        if name in ("", ".", ".."):
            paths.add(str(Path(path).resolve()))
            continue
        if head not in folders:
            folders[head] = str(Path(head).resolve())
        paths.add(os.path.join(folders[head], name))
    return paths


def _uri_of(path: str) -> str:
    return uris.from_fs_path(path) or Path(path).as_uri()


class _DocumentJobs:
    """One debounced job per document: scheduling it again replaces the pending or running one.

    A keystroke only moves the document's due time; one loop timer per pending job fires at the
    first due time and, when keystrokes pushed it back since, re-arms for the rest. So typing costs
    no task, no timer and no extra turn of the event loop per keystroke (and leaves no cancelled
    timers in the loop's heap); the job becomes a task once it is due.
    """

    def __init__(self, job: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        self._job = job
        self._due: dict[str, float] = {}  # loop time at which the pending job should start
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def schedule(self, uri: str, delay_s: float) -> None:
        task = self._tasks.pop(uri, None)
        if task is not None and not task.done():
            task.cancel()
        if delay_s <= 0:
            self._drop_timer(uri)
            self._start(uri)
            return
        loop = asyncio.get_running_loop()
        due = self._due[uri] = loop.time() + delay_s
        timer = self._timers.get(uri)
        if timer is not None and timer.when() <= due:
            return  # the pending timer fires first and re-arms for the new due time
        if timer is not None:
            timer.cancel()  # the delay was shortened (configuration): fire earlier
        self._timers[uri] = loop.call_at(due, self._fire, uri)

    def _fire(self, uri: str) -> None:
        loop = asyncio.get_running_loop()
        due = self._due.get(uri)
        if due is not None and due > loop.time():
            self._timers[uri] = loop.call_at(due, self._fire, uri)
            return
        self._timers.pop(uri, None)
        self._due.pop(uri, None)
        self._start(uri)

    def _start(self, uri: str) -> None:
        task = asyncio.ensure_future(self._job(uri))
        self._tasks[uri] = task
        task.add_done_callback(lambda t: DiagnosticsService._log_failure(t, "diagnostics"))

    def _drop_timer(self, uri: str) -> None:
        self._due.pop(uri, None)
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()

    def cancel(self, uri: str) -> None:
        self._drop_timer(uri)
        task = self._tasks.pop(uri, None)
        if task is not None and not task.done():
            task.cancel()

    def cancel_all(self) -> list[asyncio.Task[None]]:
        """Cancels everything; returns the tasks that were started (to await their end)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._due.clear()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        return tasks


class DiagnosticsService:
    """Per-document analyzer results, the tasks computing them, and publishing to the client."""

    def __init__(self, server: HeedlsServer) -> None:
        self.server = server
        self._docs: dict[str, syntax.SyntaxDocument] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._store: dict[str, dict[str, list[Diagnostic]]] = {}
        # (uri, source) -> the text the syntax or ruff findings of an open document were computed on:
        # their fixes' edits name lines of that text, and an edit since moves them (fixes_current)
        self._computed_on: dict[tuple[str, str], str] = {}
        # The URI the client opened a file by, where it is not the one derived from the path (through
        # a symlinked folder the analyzers report the resolved path: results published there would be
        # another file to the client). Only those: one entry per file ever opened grew for good.
        self._client_uris: dict[str, str] = {}
        self._by_id: dict[str, Diagnostic] = {}
        self._ids = itertools.count(1)
        self._syntax_jobs = _DocumentJobs(self.refresh_syntax)
        self._lint_jobs = _DocumentJobs(self.refresh_lint)
        # tests: per workspace, the pending debounce, the latest run, a generation counter and the
        # number of saves scheduling a run (to tell a run started after a save from an older one)
        self._test_timers: dict[Path, asyncio.Task[Any]] = {}
        self._test_runs: dict[Path, _TestRun] = {}
        self._test_gen: dict[Path, int] = {}
        self._saves: dict[Path, int] = {}
        # Files saved since the workspace's last run started (Save All saves several at once): a
        # run cancelled by a newer save hands its files on.
        self._saved: dict[Path, dict[str, None]] = {}
        # pytest diagnostics per workspace, keyed by the test file (or run) that produced them
        self._test_results: dict[Path, dict[str, list[Diagnostic]]] = {}
        self._lint_problem_reported = False
        self._untrusted_reported = False
        self._problems_told: set[str] = set()
        self._too_large_told: set[str] = set()  # documents said to be above lint.maxFileKb
        self.last_syntax_ms: float = 0.0
        self.runs_started = 0
        self.runs_cancelled = 0
        self._closing = False  # shutdown cancels the runs: their callers are told why
        # Why a run was cancelled, when not by a newer run (tests turned off, the progress's cancel
        # button): its progress and its waiters say so.
        self._cancelled_why: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = weakref.WeakKeyDictionary()

    # -- the store ------------------------------------------------------------------------------
    def for_uri(self, uri: str) -> list[Diagnostic]:
        found: list[Diagnostic] = []
        for items in self._store.get(uri, {}).values():
            found.extend(items)
        return check.order(found)

    def get(self, diagnostic_id: str) -> Diagnostic | None:
        return self._by_id.get(diagnostic_id)

    def fixes_current(self, uri: str, diagnostic: Diagnostic) -> bool:
        """Whether `diagnostic`'s fixes were computed on the open document's text as it is now.
        ruff reruns a debounce after an edit: in between, its fix for the line of an unused import
        would delete whatever line holds that place now (three lines typed above: a comment)."""
        seen = self._computed_on.get((uri, diagnostic.source))
        if seen is None:  # not from an analysis of an open document (pytest's, a closed file's)
            return True
        current = self._text(uri)
        return current is None or current == seen

    def _set(self, uri: str, source: str, diagnostics: list[Diagnostic], text: str | None = None) -> None:
        """`text`: the open document's text the findings were computed on (see fixes_current)."""
        if text is not None and diagnostics:
            self._computed_on[(uri, source)] = text
        else:
            self._computed_on.pop((uri, source), None)
        per_source = self._store.setdefault(uri, {})
        for old in per_source.get(source, []):
            self._by_id.pop(str(old.data.get("id")), None)
        for diagnostic in diagnostics:
            if "id" not in diagnostic.data:
                diagnostic.data["id"] = f"d{next(self._ids)}"
            self._by_id[str(diagnostic.data["id"])] = diagnostic
        if diagnostics:
            per_source[source] = diagnostics
        else:
            per_source.pop(source, None)
        if not per_source:
            self._store.pop(uri, None)

    # -- configuration --------------------------------------------------------------------------
    def _for(self, where: str | Path | None) -> Any:
        """The configuration for a document or workspace at `where` (a resolved path): its
        workspace folder's lint, tests and repair settings."""
        return self.server.config_for(where)

    def _for_uri(self, uri: str) -> Any:
        if len(self.server.folder_configs) < 2:
            return self.server.config  # one folder: no path to resolve on every keystroke
        return self._for(_path_of(uri))

    def _workspace_for(self, path: str | None) -> Path:
        root = self.server.root
        if path is None:
            return (root or Path.cwd()).resolve()
        folder = self.server.folder_of(path)
        if folder is not None:
            return folder
        if root is not None:
            resolved = root.resolve()
            if Path(path).is_relative_to(resolved):
                return resolved
        return check.find_workspace([Path(path)])

    def _text(self, uri: str) -> str | None:
        """The client's text of an open document (None for others: callers read the file)."""
        document = opened(self.server.workspace, uri)
        return str(document.source) if document is not None else None

    def _is_open(self, uri: str) -> bool:
        return opened(self.server.workspace, uri) is not None

    def _uri_of(self, path: str) -> str:
        """The URI the client knows `path` by: the one it opened it by, else, under a workspace it
        named through a symlink, the path through that link."""
        opened = self._client_uris.get(path)
        return opened if opened is not None else self._derived_uri(path)

    def _remember_client_uri(self, uri: str) -> None:
        path = _path_of(uri)
        if path is None:
            return
        if self._derived_uri(path) != uri:
            self._client_uris[path] = uri
        else:
            self._client_uris.pop(path, None)

    def _derived_uri(self, path: str) -> str:
        root = self.server.root
        for folder in dict.fromkeys([*([root] if root is not None else []), *self.server.folders]):
            if folder.resolve() != folder.absolute():
                try:
                    return _uri_of(str(folder / Path(path).relative_to(folder.resolve())))
                except ValueError:
                    pass
        return _uri_of(path)

    # -- conversion to LSP ----------------------------------------------------------------------
    def _lines_for(self, path: str, cache: dict[str, list[str] | None]) -> list[str] | None:
        if path not in cache:
            uri = self._uri_of(path)
            text = self._text(uri)
            if text is None:
                try:
                    text = syntax.read_source(path).text
                except OSError:
                    text = None
            cache[path] = text.split("\n") if text is not None else None
        return cache[path]

    def _position(self, lines: list[str] | None, line: int, character: int) -> types.Position:
        # Analyzers count Python characters; the client counts in the negotiated encoding (UTF-16).
        if lines is not None and 0 <= line < len(lines):
            text = lines[line]
            if not text.isascii():
                character = self.server.workspace.position_codec.client_num_units(text[:character])
        return types.Position(line=max(line, 0), character=max(character, 0))

    def _range(self, path: str, rng: Range, cache: dict[str, list[str] | None]) -> types.Range:
        lines = self._lines_for(path, cache)
        return types.Range(
            start=self._position(lines, rng.start.line, rng.start.character),
            end=self._position(lines, rng.end.line, rng.end.character),
        )

    def lsp_range(self, path: str, rng: Range) -> types.Range:
        """An analyzer range (Python characters) in the client's position encoding, e.g. for the
        TextEdits of a fix."""
        return self._range(path, rng, {})

    def to_lsp(self, diagnostic: Diagnostic, cache: dict[str, list[str] | None]) -> types.Diagnostic:
        related = [
            types.DiagnosticRelatedInformation(
                location=types.Location(uri=self._uri_of(rel.path), range=self._range(rel.path, rel.range, cache)),
                message=rel.message,
            )
            for rel in diagnostic.related
        ]
        own_range = self._range(diagnostic.path, diagnostic.range, cache)
        if diagnostic.explanation and diagnostic.source != RUFF:
            # DESIGN: the explanation also travels in the related information (hover has it in full).
            text = diagnostic.explanation
            if len(text) > _RELATED_EXPLANATION_CHARS:
                text = text[: _RELATED_EXPLANATION_CHARS - 1] + "…"
            related.insert(
                0,
                types.DiagnosticRelatedInformation(
                    location=types.Location(uri=self._uri_of(diagnostic.path), range=own_range), message=text
                ),
            )
        tags = [types.DiagnosticTag.Unnecessary] if "unnecessary" in diagnostic.data.get("tags", ()) else None
        return types.Diagnostic(
            range=own_range,
            message=diagnostic.message,
            severity=_SEVERITY.get(diagnostic.severity, types.DiagnosticSeverity.Warning),
            code=diagnostic.code,
            code_description=types.CodeDescription(href=diagnostic.url) if diagnostic.url else None,
            source=f"heedls/{diagnostic.source}",
            related_information=related or None,
            tags=tags,
            data={
                "id": diagnostic.data.get("id"),
                "source": diagnostic.source,
                "fixable": any(f.applicability in ("safe", "unsafe", "validated") for f in diagnostic.fixes),
            },
        )

    def publish(self, uris_: Iterable[str]) -> None:
        cache: dict[str, list[str] | None] = {}
        for uri in dict.fromkeys(uris_):
            found = self.for_uri(uri)
            limit = self._for_uri(uri).lint.max_diagnostics
            items = [self.to_lsp(d, cache) for d in (found[:limit] if limit else found)]
            if limit and len(found) > limit:
                items.append(self._not_shown(found[limit:], limit, cache))
            version = None
            if self._is_open(uri):
                version = self.server.workspace.get_text_document(uri).version
            try:
                self.server.text_document_publish_diagnostics(
                    types.PublishDiagnosticsParams(uri=uri, diagnostics=items, version=version)
                )
            except Exception:
                log.debug("publish failed for %s", uri, exc_info=True)

    def _not_shown(self, rest: list[Diagnostic], limit: int, cache: dict[str, list[str] | None]) -> types.Diagnostic:
        """The one diagnostic that stands for those over `lint.maxDiagnostics`, at the first of them."""
        first = rest[0]
        return types.Diagnostic(
            range=self._range(first.path, first.range, cache),
            message=(f"{len(rest):,} more diagnostics in this file are not shown (lint.maxDiagnostics = {limit:,}); "
                     f"`heedls check {Path(first.path).name}` lists them all"),
            severity=types.DiagnosticSeverity.Information,
            source="heedls",
            code="too-many-diagnostics",
        )

    # -- syntax ---------------------------------------------------------------------------------
    def _syntax_now(self, uri: str, text: str) -> list[Diagnostic]:
        path = _path_of(uri) or uri
        started = time.perf_counter()
        doc = self._docs.get(uri)
        if doc is None:
            doc = self._docs[uri] = syntax.SyntaxDocument(path, text)
        else:
            doc.update(text)
        found = doc.diagnostics()
        self.last_syntax_ms = (time.perf_counter() - started) * 1000
        if found:
            check.explain_all(found)  # a handful at most; hover and relatedInformation show it
        return found

    def _too_large(self, uri: str, text: str) -> bool:
        """Is the buffer above `lint.maxFileKb`? Said once per opened document, in the log only (no
        diagnostic: nothing is wrong with the file), as ruff and pyright do for huge files."""
        limit_kb = self._for_uri(uri).lint.max_file_kb
        if not limit_kb or len(text) <= limit_kb * 1024:
            return False
        if uri not in self._too_large_told:
            self._too_large_told.add(uri)
            name = Path(_path_of(uri) or uri).name
            self.server.notify_log(
                f"{name} is {len(text) / 1024:,.0f} kB, above lint.maxFileKb ({limit_kb} kB): no syntax or ruff "
                "diagnostics for it (raise the limit, or 0 for none, to have them)", types.MessageType.Info)
        return True

    def _is_python(self, uri: str) -> bool:
        if uri.endswith((".py", ".pyi")):
            return True
        try:
            return self.server.workspace.get_text_document(uri).language_id == "python"
        except Exception:  # noqa: BLE001
            return False

    async def refresh_syntax(self, uri: str) -> None:
        text = self._text(uri)
        if text is None or not self._is_python(uri):
            return
        lock = self._locks.setdefault(uri, asyncio.Lock())
        async with lock:  # one parse per document at a time (the tree is not thread-safe)
            if self._too_large(uri, text):
                self._docs.pop(uri, None)  # its tree is most of the memory the limit is there to save
                found = []
            elif len(text) > _THREAD_THRESHOLD:
                found = await asyncio.to_thread(self._syntax_now, uri, text)
            else:
                found = self._syntax_now(uri, text)
        if self._is_open(uri):
            self._set(uri, SYNTAX, found, text)
            self.publish([uri])

    @staticmethod
    def _log_failure(task: asyncio.Task[Any], what: str) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task failed", what, exc_info=task.exception())

    # -- lint -----------------------------------------------------------------------------------
    async def refresh_lint(self, uri: str) -> None:
        path = _path_of(uri)
        config = self._for(path)
        cfg = config.lint
        text = self._text(uri)
        if not cfg.enabled or path is None or text is None or not path.endswith((".py", ".pyi")):
            return
        if self._too_large(uri, text):
            if self._store.get(uri, {}).get(RUFF):  # findings from before it grew are stale
                self._set(uri, RUFF, [])
                self.publish([uri])
            return
        workspace = self._workspace_for(path)
        result = await asyncio.to_thread(lint.lint_text, text, path, workspace=workspace, ruff=cfg.ruff,
                                         trusted=config.tests.trusted)
        if result.problem and not self._lint_problem_reported:
            self._lint_problem_reported = True  # one warning per session, not one per keystroke
            self.server.notify_log(result.problem, types.MessageType.Warning)
        # lint may have been turned off while ruff ran (a settings answer, a saved pyproject.toml):
        # on_config cleared the document's findings then, and these must not bring them back
        if self._is_open(uri) and self._for(path).lint.enabled:
            self._set(uri, RUFF, result.diagnostics, text)
            self.publish([uri])

    # -- tests ----------------------------------------------------------------------------------
    def _tests_allowed(self, workspace: Path) -> str | None:
        cfg = self._for(workspace).tests
        if not cfg.enabled:
            return "tests are disabled (tests.enabled = false)"
        if not cfg.trusted:
            return "the workspace is not trusted (tests.trusted = false); tests are not run"
        return None

    def schedule_tests(self, uri: str) -> None:
        path = _path_of(uri)
        if path is None or not path.endswith(".py"):
            return
        workspace = self._workspace_for(path)
        saved = self._saved.setdefault(workspace, {})
        self._saves[workspace] = self._saves.get(workspace, 0) + 1
        old = self._test_timers.pop(workspace, None)
        if old is not None and not old.done():
            old.cancel()
        running = self._test_runs.get(workspace)
        if running is not None and not running.task.done():
            running.task.cancel()  # it tests code that just changed: stop it now, not after the debounce
            saved.update(dict.fromkeys((*(running.paths or ()), *running.joined)))  # its files still need a run
        saved[path] = None
        delay = self._for(workspace).tests.debounce_ms / 1000

        async def later() -> None:
            await asyncio.sleep(delay)
            paths = tuple(self._saved.pop(workspace, {}) or (path,))
            await self._run_saved(workspace, paths)

        task = asyncio.ensure_future(later())
        self._test_timers[workspace] = task
        task.add_done_callback(lambda t: self._log_failure(t, "test run"))

    async def _run_saved(self, workspace: Path, paths: tuple[str, ...]) -> None:
        """The run for the files saved: as `run_tests`, but an explicit run started after those
        saves is never superseded by it (with auto-save, a save comes just before nearly every
        "Run Related Tests"): it joins that run when it covers their tests, else runs after it."""
        while (run := self._test_runs.get(workspace)) is not None and self._tests_saved_code(workspace, run):
            if not await self._covers(workspace, run, paths):
                await asyncio.wait({run.task})
            elif self._test_runs.get(workspace) is run and self._tests_saved_code(workspace, run):  # after the await too
                run.joined += paths
                await self._wait_for(run)
                return
        await self.run_tests(workspace, paths, explicit=False)

    def _tests_saved_code(self, workspace: Path, run: _TestRun) -> bool:
        """Is `run` an explicit run still running, started after the workspace's last save?"""
        return run.explicit and not run.task.done() and run.saves == self._saves.get(workspace, 0)

    async def _covers(self, workspace: Path, run: _TestRun, paths: tuple[str, ...]) -> bool:
        """Does `run` run every test related to `paths`?"""
        if run.paths is None or set(paths) <= set(run.paths):
            return True
        mine = await self._targets(workspace, paths)
        # the run too: cancelled before its first step, it never got to settle its targets
        either: set[asyncio.Future[Any]] = {run.targets, run.task}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not run.targets.done() or run.targets.cancelled():
            return False  # it ended before it knew its tests
        theirs = run.targets.result()
        return theirs is None or (mine is not None and set(mine) <= set(theirs))

    async def _wait_for(self, run: _TestRun) -> dict[str, Any]:
        """`run`'s summary, for one of the parties waiting for it. The run is shared, so a waiter
        that is cancelled (the client cancelled the command, a newer save the on-save run) does not
        cancel it for the others (hence the shield); the last one to go stops it, as nobody wants
        its result any more: its process group is killed before the cancellation goes on."""
        run.waiters += 1
        try:
            return await asyncio.shield(run.task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if run.task.cancelled() and not (me is not None and me.cancelling()):
                # the run itself was cancelled: a newer run, the cancel button, or shutdown
                return self._cancelled(run.task)
            raise
        finally:
            run.waiters -= 1
            if not run.waiters and not run.task.done():
                run.task.cancel()
                await asyncio.gather(run.task, return_exceptions=True)

    async def run_tests(self, workspace: Path, path: str | Sequence[str] | None, *, explicit: bool = True) -> dict[str, Any]:
        """Run the tests related to `path` (one file or several; all tests when None) in
        `workspace`; a newer call for the same workspace cancels this one (`explicit`: asked for,
        not started by a save). Returns a summary for the command's caller."""
        paths = (path,) if isinstance(path, str) else tuple(path) if path is not None else None
        reason = self._tests_allowed(workspace)
        if reason is not None:
            if not self._untrusted_reported:
                self._untrusted_reported = True
                self.server.notify_log(reason, types.MessageType.Info)
            return {"ran": False, "reason": reason}
        generation = self._test_gen[workspace] = self._test_gen.get(workspace, 0) + 1
        old = self._test_runs.get(workspace)
        if old is not None and not old.task.done():
            old.task.cancel()  # kills the old run's process group (proc.run_async)
            await asyncio.gather(old.task, return_exceptions=True)
        if self._test_gen.get(workspace) != generation:
            return dict(_SUPERSEDED)
        targets: asyncio.Future[list[str] | None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self._run(workspace, paths, targets))
        run = _TestRun(task, paths, explicit, self._saves.get(workspace, 0), targets)
        self._test_runs[workspace] = run
        self.runs_started += 1
        return await self._wait_for(run)

    async def _targets(self, workspace: Path, paths: Sequence[str] | None) -> list[str] | None:
        """The tests related to any of `paths`; None (the whole suite) when one has none found."""
        if not paths:
            return None
        from heedls.analyzers import testrun

        targets: dict[str, None] = {}
        for path in paths:
            found = await asyncio.to_thread(testrun.related_tests, workspace, Path(path))
            if not found:
                return None
            targets.update(dict.fromkeys(found))
        return list(targets)

    def _progress_supported(self) -> bool:
        caps = self.server.client_capabilities
        return bool(caps and caps.window and caps.window.work_done_progress)

    async def _progress_begin(self, title: str, message: str) -> str | None:
        if not self._progress_supported():
            return None
        token = f"heedls-tests-{next(self._ids)}"
        progress = self.server.work_done_progress
        try:
            # Not shielded: a request given up on (no answer in 5 s, or the run superseded) leaves
            # pygls' table of pending requests, and a late answer is dropped quietly (app.py).
            await asyncio.wait_for(progress.create_async(token), 5.0)
        except Exception:
            log.debug("work done progress create failed", exc_info=True)
            return None
        progress.begin(token, types.WorkDoneProgressBegin(title=title, message=message, cancellable=True))
        return token

    def _progress_end(self, token: str | None, message: str) -> None:
        if token is None:
            return
        progress = self.server.work_done_progress
        try:
            progress.end(token, types.WorkDoneProgressEnd(message=message))
        finally:
            progress.tokens.pop(token, None)

    async def _run(
        self, workspace: Path, paths: tuple[str, ...] | None, known: asyncio.Future[list[str] | None]
    ) -> dict[str, Any]:
        """One test run; `known` gets its test files as soon as they are known."""
        from heedls.analyzers import testrun

        cfg = self._for(workspace).tests
        try:
            targets = await self._targets(workspace, paths)
        except BaseException:
            known.cancel()  # whoever waits for the targets must not wait for ever
            raise
        known.set_result(targets)
        shown = ", ".join(Path(t).name for t in targets[:3]) + (" …" if len(targets) > 3 else "") if targets else "all tests"
        token = await self._progress_begin("heedls: running tests", shown)
        me = asyncio.current_task()
        if token is not None:
            # The client's cancel button on the progress cancels this run.
            future = self.server.work_done_progress.tokens.get(token)
            if future is not None and me is not None:
                future.add_done_callback(lambda f: self._cancel_run(me, "cancelled") if f.cancelled() else None)
        started = time.monotonic()

        async def ticker() -> None:
            while token is not None:
                await asyncio.sleep(_PROGRESS_TICK_S)
                self.server.work_done_progress.report(
                    token, types.WorkDoneProgressReport(message=f"{shown} ({time.monotonic() - started:.0f}s)")
                )

        tick = asyncio.ensure_future(ticker())
        end_message = "cancelled"
        try:
            run = await testrun.run_tests_async(
                workspace, targets, python=cfg.python or None, timeout_s=cfg.timeout_s,
                memory_limit_gb=cfg.memory_limit_gb
            )
            found = await asyncio.to_thread(testrun.failures_to_diagnostics, run, workspace)
            if run.outcome == "timeout" and not any(d.code == "timeout" for d in found):
                found.append(self._timeout_diagnostic(workspace, paths[0] if paths else None, targets, cfg.timeout_s))
            self._store_test_results(workspace, targets, found)
            if run.problem and run.problem not in self._problems_told:
                self._problems_told.add(run.problem)  # once: it stays true until the user acts
                self.server.notify_log(run.problem, types.MessageType.Warning)
            if run.problem:
                end_message = run.problem
            elif run.outcome == "timeout":
                end_message = f"killed after {cfg.timeout_s:g} s (time limit)"
            elif run.incomplete:  # counts of a run that stopped short read as a pass ("0 failed")
                end_message = f"did not complete: {run.incomplete}"
            elif run.collect_errors and not run.total:
                end_message = f"the tests could not be collected ({len(run.collect_errors)} error"
                end_message += "s)" if len(run.collect_errors) != 1 else ")"
            else:
                end_message = f"{run.failed} failed, {run.passed} passed" + (f", {run.errors} errors" if run.errors else "")
            return {
                "ran": True,
                "outcome": run.outcome,
                "passed": run.passed,
                "failed": run.failed,
                "errors": run.errors,
                "seconds": round(run.seconds, 3),
                "targets": targets,
                "diagnostics": len(found),
            }
        except asyncio.CancelledError:
            self.runs_cancelled += 1
            reason = self._cancelled(me)["reason"] if me is not None else _SUPERSEDED["reason"]
            end_message = reason if reason == "cancelled" else f"cancelled: {reason}"
            raise
        finally:
            tick.cancel()
            self._progress_end(token, end_message)

    @staticmethod
    def _timeout_diagnostic(workspace: Path, path: str | None, targets: Sequence[str] | None, timeout_s: float) -> Diagnostic:
        where = (targets[0] if targets else path) or str(workspace)
        return Diagnostic(
            path=where,
            range=Range.of(0, 0, 0, 1),
            severity="error",
            source=PYTEST,
            code="timeout",
            message=f"the test run was killed after {timeout_s:g} s (time limit)",
            rank=2.0,
            data={"kind": "timeout", "timeout_s": timeout_s},
        )

    @staticmethod
    def _result_key(workspace: Path, diagnostic: Diagnostic, run_key: str) -> str:
        test_id = diagnostic.data.get("test_id")
        if isinstance(test_id, str) and "::" in test_id and diagnostic.data.get("kind") != "timeout":
            return str((workspace / test_id.split("::", 1)[0]).resolve())
        nodeid = diagnostic.data.get("nodeid")
        if diagnostic.data.get("kind") == "collect_error" and isinstance(nodeid, str) and nodeid:
            # the test file that could not be collected: a later run of that file replaces it
            return str((workspace / nodeid.split("::", 1)[0]).resolve())
        return run_key

    def _store_test_results(self, workspace: Path, targets: Sequence[str] | None, found: list[Diagnostic]) -> None:
        results = self._test_results.setdefault(workspace, {})
        touched: set[str] = set()
        if targets is None:
            stale = list(results)
        else:
            covered = {str(Path(t).resolve()) for t in targets}
            run_key = "run:" + "\0".join(sorted(covered))
            stale = [k for k in results if k in covered or k == run_key]
        for key in stale:
            touched.update(self._uri_of(d.path) for d in results.pop(key))
        run_key = "run:" + ("\0".join(sorted(str(Path(t).resolve()) for t in targets)) if targets else "*")
        for diagnostic in found:
            results.setdefault(self._result_key(workspace, diagnostic, run_key), []).append(diagnostic)
            touched.add(self._uri_of(diagnostic.path))
        self._republish_tests(touched)

    def _republish_tests(self, touched: Iterable[str], gone: Collection[str] = ()) -> None:
        """Rebuild the pytest layer of every touched document from all runs' results, and publish
        them (a `gone` document, one that no longer exists, is published empty)."""
        by_uri: dict[str, list[Diagnostic]] = {uri: [] for uri in touched}
        for results in self._test_results.values():
            for items in results.values():
                for diagnostic in items:
                    uri = self._uri_of(diagnostic.path)
                    if uri in by_uri:
                        by_uri[uri].append(diagnostic)
        for uri, items in by_uri.items():
            if uri not in gone:
                self._set(uri, PYTEST, items)
        self.publish(by_uri)

    def forget_files(self, uris: Sequence[str]) -> None:
        """Files that no longer exist: their diagnostics are cleared and no test result from them
        stays (a renamed test file's old failures doubled those of the new one)."""
        gone = _gone_paths(uris)
        # The documents with diagnostics among them, also by the URI the client opened them by (a
        # symlinked folder): looked up from the documents that have some, not from every file
        # gone. Only those are published (empty): a checkout that deleted 30,000 files sent as
        # many notifications for files that never had one, and held the event loop for seconds.
        gone_uris = set(uris)
        gone_uris |= {uri for uri in self._store if uri not in gone_uris and _path_of(uri) in gone}
        touched: set[str] = {uri for uri in gone_uris if uri in self._store}
        for results in self._test_results.values():
            for key in [k for k in results if k in gone]:
                touched.update(self._uri_of(d.path) for d in results.pop(key))
            for key, items in results.items():
                kept = [d for d in items if d.path not in gone and str(Path(d.path).resolve()) not in gone]
                if len(kept) != len(items):
                    touched.update(self._uri_of(d.path) for d in items)
                    results[key] = kept
        for uri in gone_uris:
            self._store.pop(uri, None)
            for source in (SYNTAX, RUFF):
                self._computed_on.pop((uri, source), None)
        self._republish_tests(touched, gone_uris)

    async def on_deleted(self, uris: list[str]) -> None:
        self.forget_files(uris)

    # -- document listener ----------------------------------------------------------------------
    async def on_open(self, uri: str) -> None:
        self._remember_client_uri(uri)
        await self.refresh_syntax(uri)
        self._lint_jobs.schedule(uri, 0)

    async def on_change(self, uri: str, changes: list[types.TextDocumentContentChangeEvent]) -> None:
        cfg = self._for_uri(uri).lint
        self._syntax_jobs.schedule(uri, cfg.syntax_debounce_ms / 1000)
        # ruff too, as its own language server does: its findings on the text before an edit sat at
        # stale positions (three lines added above an F401 left it on a comment)
        self._lint_jobs.schedule(uri, cfg.lint_debounce_ms / 1000)

    async def on_save(self, uri: str) -> None:
        self._lint_jobs.schedule(uri, 0)
        if self._for_uri(uri).tests.on_save:
            # The verdict on the text being saved, not the one a debounce behind: a fix saved at
            # once (format-on-save, a quick Ctrl+S) must run the tests, a break saved at once not.
            self._syntax_jobs.cancel(uri)
            await self.refresh_syntax(uri)
            if self._store.get(uri, {}).get(SYNTAX):
                # pytest would only report the same syntax error as a collection error.
                log.info("not running tests for %s: it has a syntax error", uri)
                return
            self.schedule_tests(uri)

    async def on_close(self, uri: str) -> None:
        self._syntax_jobs.cancel(uri)
        self._lint_jobs.cancel(uri)
        self._docs.pop(uri, None)
        self._locks.pop(uri, None)
        self._too_large_told.discard(uri)
        # Test failures describe files on disk and stay; buffer-only findings go.
        self._set(uri, SYNTAX, [])
        self._set(uri, RUFF, [])
        self.publish([uri])

    async def on_config(self, config: Any) -> None:
        # `config` is the first folder's; each document and workspace goes by its own folder's
        linted_off = [uri for uri in self._store if not self._for_uri(uri).lint.enabled]
        for uri in linted_off:
            self._set(uri, RUFF, [])
        if linted_off:
            self.publish(linted_off)
        await self._cancel_tests([w for w in {*self._test_timers, *self._test_runs} if self._tests_allowed(w) is not None])

    async def _cancel_tests(self, workspaces: Collection[Path]) -> None:
        """Cancel the pending and running test runs of `workspaces` (their tests were turned off)."""
        tasks: list[asyncio.Task[Any]] = []
        for workspace in workspaces:
            why = self._tests_allowed(workspace) or "tests were turned off"
            timer, run = self._test_timers.pop(workspace, None), self._test_runs.pop(workspace, None)
            for task in (timer, run.task if run is not None else None):
                if task is not None:
                    self._cancel_run(task, why)
                    tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)

    def _cancel_run(self, task: asyncio.Task[Any], why: str) -> None:
        """Cancel `task` for a reason other than a newer run."""
        if not task.done():
            self._cancelled_why.setdefault(task, why)
            task.cancel()

    def _cancelled(self, task: asyncio.Task[Any]) -> dict[str, Any]:
        """What the waiters of a cancelled run are told."""
        if self._closing:
            return dict(_SHUTTING_DOWN)
        why = self._cancelled_why.get(task)
        return {**_SUPERSEDED, "reason": why} if why else dict(_SUPERSEDED)

    async def shutdown(self) -> None:
        """Cancel pending and running work (running tests' process groups are killed)."""
        self._closing = True
        tasks: list[asyncio.Task[Any]] = [*self._test_timers.values(), *(r.task for r in self._test_runs.values())]
        for task in tasks:
            task.cancel()
        tasks += self._syntax_jobs.cancel_all() + self._lint_jobs.cancel_all()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._test_timers.clear()
        self._test_runs.clear()


def register(server: HeedlsServer) -> None:
    service = DiagnosticsService(server)
    server.services["diagnostics"] = service
    server.document_listeners.append(service)
    server.config_listeners.append(service.on_config)

    @server.command("heedls.runTests")
    async def run_tests_command(ls: HeedlsServer, *args: Any) -> dict[str, Any]:
        uri = args[0] if args else None
        if isinstance(uri, list):  # some clients wrap the arguments once more
            uri = uri[0] if uri else None
        if isinstance(uri, dict):
            uri = uri.get("uri")
        path = _path_of(uri) if isinstance(uri, str) and uri else None
        workspace = service._workspace_for(path)
        if not workspace.is_dir():  # a document of a folder deleted or never on this disk
            return {"ran": False, "reason": f"there is no folder {workspace} to run tests in"}
        return await service.run_tests(workspace, path)
