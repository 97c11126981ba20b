"""`heedls bench latency`: the server's own overhead on an inline-completion round trip.

The measuring code lives in latency_driver.py (it imports pygls and lsprotocol, which take a
second to import: the CLI only pays that when this benchmark runs).
"""

from __future__ import annotations

import asyncio
import json
import sys
from enum import Enum
from typing import Annotated

import typer


class GateMode(str, Enum):
    """The server's gate.mode settings (config.GateMode)."""

    cascade = "cascade"
    stage1 = "stage1"
    off = "off"


def register(bench_app: typer.Typer) -> None:
    @bench_app.command()
    def latency(
        requests: Annotated[int, typer.Option("--requests", "-n", min=10, help="Requests per server.")] = 500,
        warmup: Annotated[int, typer.Option(help="Unmeasured requests first.")] = 50,
        json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        gate: Annotated[GateMode, typer.Option("--gate", help="Gate mode of the measured server.")] = GateMode.cascade,
    ) -> None:
        """Inline-completion round trip: heedls (stub provider) vs a bare pygls server."""
        from rich.console import Console
        from rich.table import Table

        err = Console(stderr=True)
        with err.status(f"{requests} requests against each server…"):
            from heedls.server.bench.latency_driver import run_latency

            result = asyncio.run(run_latency(requests, warmup, gate_mode=gate.value))
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
