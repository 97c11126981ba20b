"""`heedls bench latency`: the server's own overhead on an inline-completion round trip.

Both servers run as real stdio subprocesses driven by the same pygls client, with the same
typing pattern (a didChange then an inlineCompletion request, N times):
- heedls: `heedls serve` with an instant stub provider, debounce 0, default gate and telemetry
  (so the pipeline, gate and event recording are all in the measured path);
- baseline: a bare pygls server that answers immediately (bare_server.py).
The ratio of p95s is the figure of merit (DESIGN.md: `p95_ratio`).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from lsprotocol import types
from pygls.lsp.client import LanguageClient

DOC = "import os\n\n\ndef main():\n    value = os.getcwd()\n    \n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def _drive(command: list[str], n: int, warmup: int, env: dict[str, str], root: Path, options: Any) -> list[float]:
    client = LanguageClient("heedls-bench", "1")

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def _log(params: types.LogMessageParams) -> None:  # the server's warnings are not our concern here
        return None

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _diagnostics(params: types.PublishDiagnosticsParams) -> None:
        return None
    await client.start_io(*command, env=env)
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                )
            ),
            root_uri=root.as_uri(),
            initialization_options=options,
        )
    )
    client.initialized(types.InitializedParams())
    path = root / "bench_doc.py"
    path.write_text(DOC)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, DOC)))
    line, col = 5, 4
    timings: list[float] = []
    for i in range(warmup + n):
        # type one character, then ask (the editor's pattern); the new text changes the cache key
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=i + 2, uri=uri),
                [types.TextDocumentContentChangePartial(range=types.Range(types.Position(line, col), types.Position(line, col)), text="x")],
            )
        )
        col += 1
        if col > 60:  # start a new line so lines stay short
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    types.VersionedTextDocumentIdentifier(version=i + 2, uri=uri),
                    [types.TextDocumentContentChangePartial(range=types.Range(types.Position(line, col), types.Position(line, col)), text="\n    ")],
                )
            )
            line, col = line + 1, 4
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri),
            position=types.Position(line, col),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
        start = time.perf_counter()
        result = await client.text_document_inline_completion_async(params)
        elapsed = (time.perf_counter() - start) * 1000
        if i >= warmup:
            timings.append(elapsed)
        if result is None:
            raise RuntimeError(f"{command[-1]} returned no suggestion; the benchmark would measure nothing")
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return timings


def summarise(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 3),
        "p95_ms": round(percentile(values, 0.95), 3),
        "mean_ms": round(statistics.fmean(values), 3),
    }


async def run_latency(n: int = 500, warmup: int = 50) -> dict[str, Any]:
    import os

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = dict(os.environ, HEEDLS_DATA_DIR=str(root / "data"), HEEDLS_CACHE_DIR=str(root / "cache"))
        options = {"inline": {"debounceMs": 0, "diskCache": False}, "tests": {"onSave": False}}
        heedls_cmd = [sys.executable, "-m", "heedls", "serve", "--stub-provider", "print('heedls')"]
        bare_cmd = [sys.executable, "-m", "heedls.server.bench.bare_server"]
        # interleave to share whatever else the machine is doing between both
        bare1 = await _drive(bare_cmd, n // 2, warmup, env, root, None)
        heedls1 = await _drive(heedls_cmd, n // 2, warmup, env, root, options)
        bare2 = await _drive(bare_cmd, n - n // 2, warmup, env, root, None)
        heedls2 = await _drive(heedls_cmd, n - n // 2, warmup, env, root, options)
    heedls, bare = heedls1 + heedls2, bare1 + bare2
    h, b = summarise(heedls), summarise(bare)
    return {
        "benchmark": "latency",
        "requests": len(heedls),
        "heedls": h,
        "bare_pygls": b,
        "p50_ratio": round(h["p50_ms"] / b["p50_ms"], 3),
        "p95_ratio": round(h["p95_ms"] / b["p95_ms"], 3),
        "p95_overhead_ms": round(h["p95_ms"] - b["p95_ms"], 3),
    }


def register(bench_app: typer.Typer) -> None:
    @bench_app.command()
    def latency(
        requests: Annotated[int, typer.Option("--requests", "-n", min=10, help="Requests per server.")] = 500,
        warmup: Annotated[int, typer.Option(help="Unmeasured requests first.")] = 50,
        json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Inline-completion round trip: heedls (stub provider) vs a bare pygls server."""
        from rich.console import Console
        from rich.table import Table

        err = Console(stderr=True)
        with err.status(f"{requests} requests against each server…"):
            result = asyncio.run(run_latency(requests, warmup))
        if json_out:
            sys.stdout.write(json.dumps(result) + "\n")
            return
        table = Table(title=f"inline completion round trip, {result['requests']} requests")
        for col in ("server", "p50 ms", "p95 ms", "mean ms"):
            table.add_column(col)
        for name in ("heedls", "bare_pygls"):
            s = result[name]
            table.add_row(name, f"{s['p50_ms']:.2f}", f"{s['p95_ms']:.2f}", f"{s['mean_ms']:.2f}")
        Console().print(table)
        Console().print(f"p95 ratio {result['p95_ratio']:.2f}×, p95 overhead {result['p95_overhead_ms']:.2f} ms")
