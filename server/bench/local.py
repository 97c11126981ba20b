"""Benchmark (filled in by its own issue)."""

from __future__ import annotations

import typer


def register(bench_app: typer.Typer) -> None:
    return None
