"""Jedi completions for the identifier or attribute being typed, bounded by a deadline.

Jedi is the only source that knows names the workspace has never spelled out (attributes of
installed libraries), but its first call in a file can take hundreds of milliseconds. So it runs on
its own single worker thread: a request waits for it only as long as its deadline allows; a late
result is kept (keyed by the document text and position) and serves the next request at the same
place; and at most one job runs at a time, so slow jobs never pile up behind each other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("heedls.local.jedi")

_RESULTS = 64


@dataclass(frozen=True)
class NameCompletion:
    name: str  # the full name
    rest: str  # what remains to be typed of it
    kind: str  # jedi's type: "function", "class", "module", "instance", "keyword", …


class JediSource:
    def __init__(self, workspace: Path | None) -> None:
        self.workspace = workspace
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="heedls-jedi")
        self._busy = threading.Lock()
        self._results: OrderedDict[tuple[str, str, int, int], list[NameCompletion]] = OrderedDict()
        self._project: object | None = None
        self._available = True

    def _key(self, code: str, path: str, line: int, column: int) -> tuple[str, str, int, int]:
        return (path, hashlib.blake2b(code.encode("utf-8", "replace"), digest_size=12).hexdigest(), line, column)

    def _run(self, key: tuple[str, str, int, int], code: str, path: str, line: int, column: int) -> None:
        try:
            import jedi

            if self._project is None and self.workspace is not None:
                self._project = jedi.Project(self.workspace, load_unsafe_extensions=False)
            script = jedi.Script(code=code, path=path or None, project=self._project)  # type: ignore[arg-type]
            found = script.complete(line, column, fuzzy=False)
            out = [NameCompletion(c.name, c.complete or "", c.type) for c in found[:50] if c.complete is not None]
        except Exception as exc:  # jedi bugs on odd code must never surface
            log.debug("jedi failed: %s", type(exc).__name__)
            out = []
        finally:
            self._busy.release()
        self._results[key] = out
        while len(self._results) > _RESULTS:
            self._results.popitem(last=False)

    async def complete(
        self, code: str, path: str, line: int, column: int, timeout_s: float
    ) -> list[NameCompletion] | None:
        """Completions at 1-based `line`, 0-based `column`; None when not ready within timeout_s."""
        if not self._available:
            return None
        key = self._key(code, path, line, column)
        if key in self._results:
            return self._results[key]
        if timeout_s <= 0 or not self._busy.acquire(blocking=False):
            return None  # a previous job is still running: don't queue behind it
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._pool, self._run, key, code, path, line, column)
        except RuntimeError:  # executor shut down
            self._busy.release()
            return None
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            return None
        return self._results.get(key)

    def close(self) -> None:
        self._available = False
        self._pool.shutdown(wait=False, cancel_futures=True)
