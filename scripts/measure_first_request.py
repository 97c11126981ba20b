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

`--python` is the interpreter whose `heedls serve` is measured (another checkout's venv, to
compare before and after). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
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


async def measure(python: str, delay_ms: int, cuts: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="heedls-first-"))
    ws = tmp / "ws"
    ws.mkdir()
    env = dict(os.environ, HEEDLS_DATA_DIR=str(tmp / "data"), HEEDLS_CACHE_DIR=str(tmp / "cache"))
    client = await ClientServerConfig(server_command=[python, "-m", "heedls", "serve"], server_env=env).start()
    capabilities = types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities()))
    await client.initialize_session(types.InitializeParams(
        capabilities=capabilities, root_uri=ws.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=ws.as_uri(), name="ws")],
        initialization_options={"inline": {"debounceMs": 0}, "gate": {"mode": "off"}}))
    rows: list[dict[str, Any]] = []
    for number, path in enumerate(f for f in FILES for _ in range(cuts)):
        line, column, text = _cut(path.read_text().splitlines(keepends=True), rng)
        uri = (ws / f"doc{number}.py").as_uri()
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
        rows.append({"file": path.name, "first": bool(first and first.items), "ms": ms,
                     "again": bool(again and again.items)})
        client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    await client.shutdown_session()
    await client.stop()
    answerable = [r for r in rows if r["again"]]
    latency = sorted(r["ms"] for r in rows)
    return {
        "python": python, "delay_ms": delay_ms, "first_requests": len(rows),
        "answered_again": len(answerable),
        "first_answered_of_those": sum(r["first"] for r in answerable),
        "first_answered": sum(r["first"] for r in rows),
        "latency_ms": {"p50": round(statistics.median(latency), 1),
                       "p95": round(latency[int(0.95 * (len(latency) - 1))], 1), "max": round(latency[-1], 1)},
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--delay-ms", type=int, default=100)
    parser.add_argument("--cuts", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.python, args.delay_ms, args.cuts, args.seed))))


if __name__ == "__main__":
    main()
