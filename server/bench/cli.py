"""`heedls bench …`: benchmarks report ratios against a baseline measured in the same run."""

from __future__ import annotations

import importlib

import typer

bench_app = typer.Typer(help="Benchmarks (latency, local provider, analyzers, gate, fix).", no_args_is_help=True)

BENCH_MODULES = [
    "heedls.server.bench.latency",
    "heedls.server.bench.local",
    "heedls.server.bench.analyzers",
    "heedls.server.bench.gate",
    "heedls.server.bench.fix",
]


def register(app: typer.Typer) -> None:
    for name in BENCH_MODULES:
        importlib.import_module(name).register(bench_app)
    app.add_typer(bench_app, name="bench")
