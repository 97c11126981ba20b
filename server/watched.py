"""Watched-file reports (`workspace/didChangeWatchedFiles`), coalesced before the server acts on them.

VS Code reports each event of a watcher twice in a multi-root window (code-server, in the editors'
end-to-end test: the same (uri, type) twice in one notification), and its client batches reports
every 250 ms, so a repeat can also come in the next notification. Acting on each copy did the same
work twice with the same result (a deleted file's diagnostics cleared, a configuration re-read, an
index rebuild asked for). So the changes are collected until no report has come for `quiet_s`
(at most `max_wait_s` after the first), and each (uri, type) is handled once.

Nothing is lost by waiting: the work runs *after* the last report of a burst and reads the disk as
it is then, so a second write reported within the window is seen (handling the first copy at once
and dropping the second could have read a half-written file). A report that comes after its batch
was handled starts a new batch and is handled again.

Pure asyncio, no pygls: changes are (uri, FileChangeType value) pairs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

Change = tuple[str, int]  # (uri, FileChangeType: 1 created, 2 changed, 3 deleted)

QUIET_S = 0.3  # a report within this long of the last one joins its batch (VS Code's client: 250 ms)
MAX_WAIT_S = 2.0  # a steady stream of reports (a long checkout) is still handled this often


def merge(pending: dict[Change, None], changes: Iterable[Change]) -> None:
    """Adds `changes` to `pending`, each (uri, type) once, at the place of its last report (so
    the order of a file's last changes, e.g. deleted then created, is kept)."""
    for change in changes:
        pending.pop(change, None)
        pending[change] = None


class WatchedFiles:
    """Collects the changes of watched-file reports and hands each batch, coalesced, to `handle`
    (on the event loop, once the reports have paused)."""

    def __init__(self, handle: Callable[[list[Change]], Awaitable[None]], *,
                 quiet_s: float = QUIET_S, max_wait_s: float = MAX_WAIT_S) -> None:
        self._handle = handle
        self._quiet_s = quiet_s
        self._max_wait_s = max_wait_s
        self._pending: dict[Change, None] = {}
        self._first = 0.0  # loop time of the batch's first report
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    def add(self, changes: Iterable[Change]) -> None:
        """A report's changes (called on the event loop): handled once the reports pause."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            self._first = loop.time()
        merge(self._pending, changes)
        if not self._pending:
            return  # an empty report
        if self._timer is not None:
            self._timer.cancel()
        due = min(loop.time() + self._quiet_s, self._first + self._max_wait_s)
        self._timer = loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def flush(self) -> None:
        """Handles what has been reported so far, now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = list(self._pending), {}
        if not batch:
            return
        try:
            await self._handle(batch)
        except Exception:  # one failed batch must not stop the next ones
            log.exception("handling the watched-file changes failed")
