"""Debounce by cancel/reschedule: a newer request for the same key cancels the older one.

The superseded request's task is cancelled while it sleeps (so no provider call is made for it),
or while it waits on the provider (so its result is dropped and the HTTP call aborted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Superseded(Exception):
    """Raised to the caller whose request was replaced by a newer one."""


class Debouncer:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self.cancelled = 0
        self.started = 0

    async def run(self, key: str, delay_s: float, work: Callable[[], Awaitable[T]]) -> T:
        previous = self._tasks.get(key)
        if previous is not None and not previous.done():
            previous.cancel()
            self.cancelled += 1

        async def delayed() -> T:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            self.started += 1
            return await work()

        task: asyncio.Task[T] = asyncio.ensure_future(delayed())
        self._tasks[key] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our own caller was cancelled ($/cancelRequest): propagate
            raise Superseded() from None
        finally:
            if self._tasks.get(key) is task:
                del self._tasks[key]

    def cancel_all(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
