#!/usr/bin/env python
"""The first inline request in a freshly opened large file, over the real stdio server.

For each of eight real files of 3,000-5,000 lines (read in place from the stdlib and the venv's
site-packages; nothing is copied), `--cuts` cursors are drawn at random lines from line 1,500 on,
at a random column inside the line's code, and the line is cut there (the rest of the line
removed, as when writing new code). Each cut is a new document: didOpen, a wait of `--delay-ms`,
then the document's first `textDocument/inlineCompletion`, timed by the client; half a second later
the same request again (the steady state: whether this place gets a suggestion at all). The local
provider, gate off, no debounce, an empty workspace.

    python scripts/measure_first_request.py [--python PY] [--delay-ms 100] [--cuts 6] [--seed 0]
                                            [--busy N] [--no-prime]

`--python` is the interpreter whose `heedls serve` is measured (another checkout's venv, to
compare before and after). `--delay-ms` may list several delays (`0,50,100,500`): each cut is then
opened once per delay, as a document of its own, in an order that turns with the cut, and the
figures are given per delay. `--busy N` runs N CPU burners (busy loops in processes of their own)
for the whole run, as another test run on the host would. `--no-prime` measures the same server
with priming turned off (the request path alone, for comparison). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SITE = Path(sysconfig.get_paths()["purelib"])
FILES = [STDLIB / "inspect.py", STDLIB / "email" / "_header_value_parser.py", STDLIB / "turtle.py",
         STDLIB / "typing.py", SITE / "pydantic" / "types.py", SITE / "pydantic" / "json_schema.py",
         SITE / "attr" / "_make.py", SITE / "numpy" / "linalg" / "_linalg.py"]


def _cut(lines: list[str], rng: random.Random) -> tuple[int, int, str]:
    while True:
        n = rng.randrange(1500, len(lines))
        code = lines[n].strip()
        if len(code) > 6 and not code.startswith(("#", '"', "'")):
            break
    column = len(lines[n]) - len(lines[n].lstrip()) + rng.randrange(1, len(code))
    return n, column, "".join(lines[:n]) + lines[n][:column] + "\n" + "".join(lines[n + 1:])


# The server with priming off: the provider's _schedule_prime does nothing (measurement only).
NO_PRIME = ("import sys; from heedls.server.providers import local; "
            "local.LocalProvider._schedule_prime = lambda self, *args: None; "
            "from heedls.server.cli import main; sys.argv = ['heedls', 'serve']; main()")


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answerable = [r for r in rows if r["again"]]
    latency = sorted(r["ms"] for r in rows)
    return {
        "first_requests": len(rows),
        "answered_again": len(answerable),
        "first_answered_of_those": sum(r["first"] for r in answerable),
        "first_answered": sum(r["first"] for r in rows),
        "latency_ms": {"p50": round(statistics.median(latency), 1),
                       "p95": round(latency[int(0.95 * (len(latency) - 1))], 1), "max": round(latency[-1], 1)},
    }


async def measure(python: str, delays_ms: list[int], cuts: int, seed: int, prime: bool = True) -> dict[str, Any]:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="heedls-first-"))
    ws = tmp / "ws"
    ws.mkdir()
    env = dict(os.environ, HEEDLS_DATA_DIR=str(tmp / "data"), HEEDLS_CACHE_DIR=str(tmp / "cache"))
    command = [python, "-m", "heedls", "serve"] if prime else [python, "-c", NO_PRIME]
    client = await ClientServerConfig(server_command=command, server_env=env).start()
    capabilities = types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities()))
    await client.initialize_session(types.InitializeParams(
        capabilities=capabilities, root_uri=ws.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=ws.as_uri(), name="ws")],
        initialization_options={"inline": {"debounceMs": 0}, "gate": {"mode": "off"}}))
    rows: list[dict[str, Any]] = []
    for number, path in enumerate(f for f in FILES for _ in range(cuts)):
        line, column, text = _cut(path.read_text().splitlines(keepends=True), rng)
        turn = number % len(delays_ms)
        for delay_ms in delays_ms[turn:] + delays_ms[:turn]:
            uri = (ws / f"doc{number}-{delay_ms}.py").as_uri()
            client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text)))
            await asyncio.sleep(delay_ms / 1000)
            params = types.InlineCompletionParams(
                types.InlineCompletionContext(types.InlineCompletionTriggerKind.Automatic),
                types.TextDocumentIdentifier(uri), types.Position(line, column))
            started = time.perf_counter()
            first = await client.text_document_inline_completion_async(params)
            ms = (time.perf_counter() - started) * 1000
            await asyncio.sleep(0.5)
            again = await client.text_document_inline_completion_async(params)
            rows.append({"file": path.name, "delay_ms": delay_ms, "first": bool(first and first.items), "ms": ms,
                         "again": bool(again and again.items)})
            client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    await client.shutdown_session()
    await client.stop()
    if len(delays_ms) == 1:
        return {"python": python, "prime": prime, "delay_ms": delays_ms[0], **_stats(rows),
                "load_avg_1m": round(os.getloadavg()[0], 2)}
    return {"python": python, "prime": prime,
            "by_delay_ms": {d: _stats([r for r in rows if r["delay_ms"] == d]) for d in delays_ms},
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--delay-ms", default="100", help="one delay, or several: 0,50,100,500")
    parser.add_argument("--cuts", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--busy", type=int, default=0, help="CPU burners to run meanwhile")
    parser.add_argument("--no-prime", action="store_true", help="the server with priming off")
    args = parser.parse_args()
    delays = [int(d) for d in args.delay_ms.split(",")]
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        result = asyncio.run(measure(args.python, delays, args.cuts, args.seed, prime=not args.no_prime))
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    print(json.dumps({**result, "busy": args.busy}))


if __name__ == "__main__":
    main()
