"""Debounce by cancel/reschedule: a newer request for the same key cancels the older one.

The superseded request is cancelled while it sleeps (so no provider call is made for it), or while
it waits on the provider (so its result is dropped and the HTTP call aborted).

The work runs in the caller's own task: no task is created per request, so with no delay a
request that the provider answers at once completes without giving up the event loop. A
superseded caller is cancelled and the cancellation is taken back (`Task.uncancel`) before it
learns that it was superseded; a cancellation from anywhere else (`$/cancelRequest`) propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Superseded(Exception):
    """Raised to the caller whose request was replaced by a newer one."""


class _Slot:
    """The request currently running for a key."""

    __slots__ = ("task", "superseded")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.superseded = False


class Debouncer:
    def __init__(self) -> None:
        self._running: dict[str, _Slot] = {}
        self.cancelled = 0
        self.started = 0

    async def run(self, key: str, delay_s: float, work: Callable[[], Awaitable[T]]) -> T:
        task = asyncio.current_task()
        if task is None:  # not driven by asyncio: nothing to supersede with
            return await work()
        previous = self._running.get(key)
        if previous is not None and not previous.superseded:
            previous.superseded = True
            previous.task.cancel()
            self.cancelled += 1
        slot = _Slot(task)
        self._running[key] = slot
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            self.started += 1
            result = await work()
        except asyncio.CancelledError:
            if slot.superseded and task.uncancel() == 0:
                raise Superseded() from None
            raise  # our own caller was cancelled ($/cancelRequest): propagate
        finally:
            if self._running.get(key) is slot:
                del self._running[key]
        if slot.superseded:  # the work swallowed the cancellation: its result stands
            task.uncancel()
        return result

    def cancel_all(self) -> None:
        for slot in self._running.values():
            if not slot.superseded:
                slot.superseded = True
                slot.task.cancel()
        self._running.clear()
