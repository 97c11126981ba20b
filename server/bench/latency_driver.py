"""`heedls bench latency`: the server's own overhead on an inline-completion round trip.

Both servers run as real stdio subprocesses driven by the same pygls client, with the same
typing pattern (a didChange then an inlineCompletion request, N times):
- heedls: `heedls serve` with an instant stub provider, debounce 0, default gate and telemetry
  (so the pipeline, gate and event recording are all in the measured path);
- baseline: a bare pygls server that answers immediately (bare_server.py).
The ratio of p95s is the figure of merit (DESIGN.md: `p95_ratio`).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from heedls.server.stats import percentile
from lsprotocol import types
from pygls.lsp.client import LanguageClient

DOC = "import os\n\n\ndef main():\n    value = os.getcwd()\n    \n"


class _Session:
    """One server under test, driven the way an editor drives it: type a character, ask."""

    def __init__(self, command: list[str], env: dict[str, str], root: Path, options: Any, name: str) -> None:
        self.command, self.env, self.root, self.options, self.name = command, env, root, options, name
        self.client = LanguageClient("heedls-bench", "1")
        self.line, self.col, self.version = 5, 4, 1

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def _log(params: types.LogMessageParams) -> None:  # the server's warnings are not our concern here
            return None

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diagnostics(params: types.PublishDiagnosticsParams) -> None:
            return None

    async def start(self) -> None:
        await self.client.start_io(*self.command, env=self.env)
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(
                    text_document=types.TextDocumentClientCapabilities(inline_completion=types.InlineCompletionClientCapabilities())
                ),
                root_uri=self.root.as_uri(),
                initialization_options=self.options,
            )
        )
        self.client.initialized(types.InitializedParams())
        path = self.root / f"bench_{self.name}.py"
        path.write_text(DOC)
        self.uri = path.as_uri()
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(self.uri, "python", 1, DOC)))

    def _type(self, text: str) -> None:
        self.version += 1
        at = types.Position(self.line, self.col)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=self.version, uri=self.uri),
                [types.TextDocumentContentChangePartial(range=types.Range(at, at), text=text)],
            )
        )

    async def round_trip(self) -> float:
        # type one character, then ask (the editor's pattern); the new text changes the cache key
        self._type("x")
        self.col += 1
        if self.col > 60:  # start a new line so lines stay short
            self._type("\n    ")
            self.line, self.col = self.line + 1, 4
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(self.uri),
            position=types.Position(self.line, self.col),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
        start = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(params)
        elapsed = (time.perf_counter() - start) * 1000
        if result is None:
            raise RuntimeError(f"{self.name} returned no suggestion; the benchmark would measure nothing")
        return elapsed

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()


def summarise(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p50, p95 = percentile(ordered, 50), percentile(ordered, 95)
    return {
        "p50_ms": round(p50, 3) if p50 is not None else float("nan"),
        "p95_ms": round(p95, 3) if p95 is not None else float("nan"),
        "mean_ms": round(statistics.fmean(values), 3),
    }


async def run_latency(n: int = 500, warmup: int = 50, block: int = 25, gate_mode: str = "cascade") -> dict[str, Any]:
    import os

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = dict(os.environ, HEEDLS_DATA_DIR=str(root / "data"), HEEDLS_CACHE_DIR=str(root / "cache"))
        options = {"inline": {"debounceMs": 0, "diskCache": False}, "tests": {"onSave": False}, "gate": {"mode": gate_mode}}
        heedls = _Session([sys.executable, "-P", "-m", "heedls", "serve", "--stub-provider", "print('heedls')"], env, root, options, "heedls")
        bare = _Session([sys.executable, "-P", "-m", "heedls.server.bench.bare_server"], env, root, None, "bare")
        await heedls.start()
        await bare.start()
        for _ in range(warmup):
            await heedls.round_trip()
            await bare.round_trip()
        # Alternate short blocks so both servers see the same background load on a shared machine.
        timings: dict[str, list[float]] = {"heedls": [], "bare": []}
        while len(timings["heedls"]) < n:
            size = min(block, n - len(timings["heedls"]))
            for session in (heedls, bare):
                timings[session.name] += [await session.round_trip() for _ in range(size)]
        await heedls.stop()
        await bare.stop()
    h, b = summarise(timings["heedls"]), summarise(timings["bare"])
    return {
        "benchmark": "latency",
        "requests": n,
        "gate_mode": gate_mode,
        "heedls": h,
        "bare_pygls": b,
        "p50_ratio": round(h["p50_ms"] / b["p50_ms"], 3),
        "p95_ratio": round(h["p95_ms"] / b["p95_ms"], 3),
        "p95_overhead_ms": round(h["p95_ms"] - b["p95_ms"], 3),
    }


