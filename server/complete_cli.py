"""`heedls complete FILE:LINE:COL` — print the suggestion the server would show there.

LINE and COL are 1-based (as compilers print them); the workspace is the current directory.
stdout carries only the suggestion text (empty when there is none); notes go to stderr; exit 0
also when there is no suggestion.
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

LOCATION = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+)$")


def _offset(text: str, line: int, col: int) -> tuple[int, int, int]:
    """0-based (line, character) and the string offset for 1-based LINE:COL, clamped."""
    lines = text.split("\n")
    line0 = min(max(line - 1, 0), len(lines) - 1)
    char0 = min(max(col - 1, 0), len(lines[line0]))
    offset = sum(len(x) + 1 for x in lines[:line0]) + char0
    return line0, char0, offset


async def _complete(path: Path, text: str, line: int, col: int, use_gate: bool) -> tuple[str | None, str]:
    from heedls.server import config as config_mod
    from heedls.server import services
    from heedls.server.pipeline.gate import PassThroughGate

    root = Path.cwd()
    notes: list[str] = []
    config, warnings = config_mod.load(root)
    notes += [f"configuration: {w}" for w in warnings]
    config = replace(config, inline=replace(config.inline, debounce_ms=0))
    engine = services.build_engine(
        config,
        root,
        notes.append,
        gate=None if use_gate else PassThroughGate(),
        disk_cache=False,
    )
    provider = engine.provider
    local = getattr(provider, "fallback", provider)
    index = getattr(local, "index_now", None)
    if callable(index):
        # The server indexes in the background; a one-shot CLI call indexes first (bounded,
        # and cached on disk by content hash, so the second call is cheap).
        await asyncio.to_thread(index)
    update = getattr(local, "update_document", None)
    if callable(update):
        update(str(path), text)
    line0, char0, offset = _offset(text, line, col)
    suggestion = await engine.suggest(path.as_uri(), str(path), text, offset, line0, char0)
    if suggestion is None:
        last = engine.history[-1] if engine.history else None
        if last is not None and last.extra.get("gate_skipped"):
            notes.append(f"suggestion hidden by the acceptance gate ({last.extra['gate_skipped']}); --no-gate shows it")
    close = getattr(provider, "aclose", None)
    if close is not None:
        await close()
    from heedls.server.providers.http import aclose_shared_client

    await aclose_shared_client()
    return (suggestion.text if suggestion else None), "\n".join(notes)


def register(app: typer.Typer) -> None:
    @app.command()
    def complete(
        location: Annotated[str, typer.Argument(metavar="FILE:LINE:COL", help="1-based line and column.")],
        gate: Annotated[bool, typer.Option("--gate/--no-gate", help="Apply the acceptance gate as the server would.")] = True,
    ) -> None:
        """Print the inline suggestion the server would show at FILE:LINE:COL."""
        match = LOCATION.match(location)
        if not match:
            typer.echo(f"heedls: expected FILE:LINE:COL, got {location!r}", err=True)
            raise typer.Exit(2)
        path = Path(match["file"]).resolve()
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            typer.echo(f"heedls: cannot read {match['file']}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
        suggestion, notes = asyncio.run(_complete(path, text, int(match["line"]), int(match["col"]), gate))
        if notes:
            typer.echo(notes, err=True)
        if suggestion:
            sys.stdout.write(suggestion + "\n")
