"""Callbacks that other threads may call: a message raised on a worker thread (the telemetry
store's writer, the gate's refit) is handed to the event loop's thread, which owns the LSP
connection."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("heedls")


def from_any_thread(
    call: Callable[[str], None], loop: asyncio.AbstractEventLoop | None = None
) -> Callable[[str], None]:
    """`call`, safe from any thread: on the thread that made it (the loop's) it runs at once, from
    another it is scheduled on `loop` (default: the running loop; with none, `call` as it is). After
    the loop has closed (shutdown) the message goes to the log."""
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return call
    target, owner = loop, threading.get_ident()

    def say(message: str) -> None:
        if threading.get_ident() == owner:
            call(message)
            return
        try:
            target.call_soon_threadsafe(call, message)
        except RuntimeError:
            log.warning("%s", message)

    return say
