"""Jedi completions for the identifier or attribute being typed, bounded by a deadline.

Jedi is the only source that knows names the workspace has never spelled out (attributes of
installed libraries), but its first call in a file can take hundreds of milliseconds of pure-Python
CPU. So it runs in its own worker *process* (a thread would hold the GIL and slow every request
down), at a lower CPU priority, speaking JSON lines over stdin/stdout. A plain child process rather
than multiprocessing: spawn re-imports the parent's `__main__`, which for `python -m heedls` would
run the CLI again. A request waits for jedi only as long as its deadline allows; a late result is
kept (keyed by the code and position) and serves the next request at the same place; at most one job
runs at a time, so slow jobs never pile up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("heedls.local.jedi")

_RESULTS = 64
_MAX_RESTARTS = 3
Key = tuple[str, str, int, int]


@dataclass(frozen=True)
class NameCompletion:
    name: str  # the full name
    rest: str  # what remains to be typed of it at the position asked
    kind: str  # jedi's type: "function", "class", "module", "instance", "keyword", …


def _complete(project: Any, code: str, path: str, line: int, column: int) -> list[list[str]]:
    import jedi

    script = jedi.Script(code=code, path=path or None, project=project)
    found = script.complete(line, column, fuzzy=False)
    return [[c.name, c.complete or "", c.type] for c in found[:300] if c.complete is not None]


def tolerate_broken_parser_cache(set_aside: list[str]) -> bool:
    """Make parso read a cache file it cannot unpickle as a miss, and delete it, instead of failing.

    parso writes its pickles in place and catches only FileNotFoundError when it reads them: a
    process killed while writing one (an editor closed, a test run stopped) leaves a truncated file
    that makes every later jedi call that needs it fail, in every process, until it is deleted by
    hand. Jedi then answers nothing, silently. The paths deleted are appended to `set_aside` (one
    that cannot be deleted, with the reason).
    False when this parso has no such loader to wrap (a newer layout): nothing is changed then."""
    try:
        import parso.cache as cache
    except ImportError:
        return False
    load = getattr(cache, "_load_from_file_system", None)
    hashed_path = getattr(cache, "_get_hashed_path", None)
    if load is None or hashed_path is None or getattr(load, "heedls_tolerant", False):
        return load is not None and hashed_path is not None

    undeletable: set[str] = set()

    def tolerant(hashed_grammar: str, path: Any, p_time: float, cache_path: Any = None) -> Any:
        try:
            return load(hashed_grammar, path, p_time, cache_path=cache_path)
        except Exception:  # noqa: BLE001 - any unreadable cache file is a miss: parso parses and rewrites it
            broken = hashed_path(hashed_grammar, path, cache_path=cache_path)
            try:
                os.remove(broken)
            except OSError as exc:  # a read-only cache: a miss each time, said once per file
                if str(broken) not in undeletable:
                    undeletable.add(str(broken))
                    set_aside.append(f"{broken} (not deleted: {exc.strerror or exc})")
            else:
                set_aside.append(str(broken))
            return None

    tolerant.heedls_tolerant = True  # type: ignore[attr-defined]
    cache._load_from_file_system = tolerant
    return True


def worker_main() -> None:
    """The worker process: one JSON request per stdin line, one JSON answer per stdout line."""
    try:
        os.nice(10)  # background work: the server and the editor win the CPU when it is busy
    except (AttributeError, OSError):
        pass
    import jedi

    set_aside: list[str] = []
    tolerate_broken_parser_cache(set_aside)
    projects: dict[str, Any] = {}
    for raw in sys.stdin:
        try:
            req = json.loads(raw)
            ws = req.get("workspace") or ""
            if ws and ws not in projects:
                projects[ws] = jedi.Project(ws, load_unsafe_extensions=False)
            items = _complete(projects.get(ws), req["code"], req["path"], req["line"], req["column"])
        except Exception:  # noqa: BLE001 - jedi bugs on odd code must never kill the worker
            items = []
        answer: dict[str, Any] = {"id": req.get("id") if isinstance(req, dict) else None, "items": items}
        if set_aside:
            answer["brokenCache"], set_aside[:] = list(set_aside), []
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class JediSource:
    def __init__(self, workspace: Path | None, folders: list[Path] | None = None) -> None:
        self.workspace = workspace
        # The workspace folders (resolved): a file's imports are resolved from its own folder's
        # project in a multi-root workspace (from another folder's, jedi finds none of its modules).
        self.folders: list[Path] = list(folders or [])
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._pending: dict[int, tuple[Key, concurrent.futures.Future[None]]] = {}
        self._results: OrderedDict[Key, list[NameCompletion]] = OrderedDict()
        self._next_id = 0
        self._restarts = 0
        self._available = True

    @staticmethod
    def _key(code: str, path: str, line: int, column: int) -> Key:
        return (path, hashlib.blake2b(code.encode("utf-8", "replace"), digest_size=12).hexdigest(), line, column)

    def cached(self, code: str, path: str, line: int, column: int) -> list[NameCompletion] | None:
        return self._results.get(self._key(code, path, line, column))

    # -- the worker process ------------------------------------------------------------------
    def _start(self) -> subprocess.Popen[str] | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._restarts >= _MAX_RESTARTS:
            self._available = False
            return None
        self._restarts += 1
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from heedls.server.providers.jedi_source import worker_main; worker_main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
            )
        except OSError as exc:
            log.warning("cannot start the jedi worker: %s", exc)
            self._available = False
            return None
        self._proc = proc
        threading.Thread(target=self._reader, args=(proc,), name="heedls-jedi-reader", daemon=True).start()
        return proc

    def _reader(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            for broken in msg.get("brokenCache") or []:
                log.warning("jedi's parser cache had an unreadable file (a process stopped while writing "
                            "it?), read as a miss and deleted, so that jedi rebuilds it: %s", broken)
            with self._lock:
                entry = self._pending.pop(msg.get("id"), None)
                self._busy = False
            if entry is None:
                continue
            key, fut = entry
            self._results[key] = [NameCompletion(*item) for item in msg.get("items", []) if len(item) == 3]
            while len(self._results) > _RESULTS:
                self._results.popitem(last=False)
            if not fut.done():
                fut.set_result(None)
        # EOF: the worker died (or was closed); fail whatever was waiting and allow a restart.
        with self._lock:
            for _, fut in self._pending.values():
                if not fut.done():
                    fut.set_result(None)
            self._pending.clear()
            self._busy = False

    def _submit(self, key: Key, code: str, path: str, line: int, column: int) -> concurrent.futures.Future[None] | None:
        with self._lock:
            if self._busy or not self._available:
                return None  # one job at a time: never queue behind a slow one
            proc = self._start()
            if proc is None or proc.stdin is None:
                return None
            self._next_id += 1
            fut: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._pending[self._next_id] = (key, fut)
            self._busy = True
            project = self.project_for(path)
            req = {"id": self._next_id, "workspace": str(project or ""), "code": code, "path": path,
                   "line": line, "column": column}
            try:
                proc.stdin.write(json.dumps(req) + "\n")
                proc.stdin.flush()
            except (OSError, ValueError):
                self._pending.pop(self._next_id, None)
                self._busy = False
                return None
            return fut

    def project_for(self, path: str) -> Path | None:
        """The folder whose project jedi reads for the file at `path`: the innermost workspace
        folder holding it, else the workspace."""
        if path and self.folders:
            file = Path(path)
            holding = [folder for folder in self.folders if file.is_relative_to(folder)]
            if not holding and len(self.folders) > 1:  # a path by a symlink: the folders are resolved
                file = file.resolve()
                holding = [folder for folder in self.folders if file.is_relative_to(folder)]
            if holding:
                return max(holding, key=lambda folder: len(folder.parts))
        return self.workspace

    async def complete(
        self, code: str, path: str, line: int, column: int, timeout_s: float
    ) -> list[NameCompletion] | None:
        """Completions at 1-based `line`, 0-based `column`; None when not ready within timeout_s."""
        key = self._key(code, path, line, column)
        if key in self._results:
            return self._results[key]
        fut = self._submit(key, code, path, line, column)
        if fut is None or timeout_s <= 0:
            return None
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout_s)
        except Exception:  # noqa: BLE001 - timeout: the job goes on and fills the cache for the next keystroke
            return None
        return self._results.get(key)

    async def idle(self, timeout_s: float) -> bool:
        """Wait up to timeout_s for the job running now, if any (its answer is then cached);
        True when none is running any more."""
        with self._lock:
            running = [fut for _, fut in self._pending.values()]
        if not running:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(running[0])), max(timeout_s, 0.0))
        except TimeoutError:
            return False
        return True

    def warm_up(self) -> None:
        """Start the worker and import jedi there, so the first real request isn't the one paying."""
        self._submit(("", "", 0, 0), "import os\nos.", "", 2, 3)

    def close(self) -> None:
        self._available = False
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.terminate()
                proc.wait(timeout=2)
            except Exception:  # noqa: BLE001
                proc.kill()
