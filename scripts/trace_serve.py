#!/usr/bin/env python
"""`heedls serve` with timestamps of each message's way through the server (diagnostics only).

    HEEDLS_TRACE=/tmp/trace.log python scripts/trace_serve.py [--no-prime]

Run in place of `python -m heedls serve` (as the server command of a client such as
`scripts/measure_first_request.py`'s). Appends one line per event to $HEEDLS_TRACE:
`<perf_counter> <thread> <event> [detail]`, perf_counter being CLOCK_MONOTONIC on Linux, the same
clock a client process reads. Events: `readline`/`readbody` (the stdin reader thread has a header
line or a body), `dispatch <method>`, `complete-start`/`complete-end` (the local provider),
`wrote <bytes>` (a message sent), `prime-start`/`prime-end` and `prime-pause`/`prime-resume` (each
sleep of priming: a slice runs from a resume to the next pause). This is how the early request's
time was split into arrival, handler, complete() and response (docs/local-provider.md, "Priming").
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any

from heedls.server import framing
from heedls.server.providers import local
from pygls import io_
from pygls.protocol import json_rpc

_out = open(os.environ["HEEDLS_TRACE"], "a", buffering=1 << 16)  # noqa: SIM115 (open for the process's life)


def _event(what: str, detail: str = "") -> None:
    _out.write(f"{time.perf_counter():.6f} {threading.current_thread().name} {what} {detail}\n")


def _install() -> None:
    readline, read = framing.LenientFrames.readline, framing.LenientFrames.read

    def traced_readline(self: framing.LenientFrames) -> bytes:
        line = readline(self)
        _event("readline", repr(line[:30]))
        return line

    def traced_read(self: framing.LenientFrames, n: int) -> bytes:
        body = read(self, n)
        _event("readbody", str(n))
        return body

    framing.LenientFrames.readline, framing.LenientFrames.read = traced_readline, traced_read  # type: ignore[method-assign]

    handle = json_rpc.JsonRPCProtocol.handle_message

    def traced_handle(self: json_rpc.JsonRPCProtocol, message: Any) -> Any:
        _event("dispatch", str(getattr(message, "method", "?")))
        return handle(self, message)

    json_rpc.JsonRPCProtocol.handle_message = traced_handle  # type: ignore[method-assign]

    write = io_.StdoutWriter.write

    def traced_write(self: io_.StdoutWriter, data: bytes) -> None:
        write(self, data)
        _event("wrote", str(len(data)))

    io_.StdoutWriter.write = traced_write  # type: ignore[method-assign]

    complete = local.LocalProvider.complete

    async def traced_complete(self: local.LocalProvider, request: Any, deadline_s: float) -> Any:
        _event("complete-start", request.path[-20:])
        try:
            return await complete(self, request, deadline_s)
        finally:
            _event("complete-end")
            _out.flush()

    local.LocalProvider.complete = traced_complete  # type: ignore[method-assign]

    class _Asyncio:  # local.py's `asyncio`, its sleeps (priming's pauses) traced
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def sleep(delay: float) -> None:
            _event("prime-pause")
            await asyncio.sleep(delay)
            _event("prime-resume")

    local.asyncio = _Asyncio()  # type: ignore[assignment]

    prime = local.LocalProvider._prime

    async def traced_prime(self: local.LocalProvider, path: str, text: str, delay_s: float) -> None:
        _event("prime-start", path[-20:])
        try:
            await prime(self, path, text, delay_s)
        finally:
            _event("prime-end")

    local.LocalProvider._prime = traced_prime  # type: ignore[method-assign]


def main() -> None:
    _install()
    if "--no-prime" in sys.argv:
        local.LocalProvider._schedule_prime = lambda self, *args: None  # type: ignore[method-assign]
    from heedls.server.cli import main as cli_main

    sys.argv = ["heedls", "serve"]
    cli_main()


if __name__ == "__main__":
    main()
