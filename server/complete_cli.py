"""`heedls complete FILE:LINE:COL` — print the suggestion the server would show there.

LINE and COL are 1-based (as compilers print them); the workspace is the file's project (the nearest
folder above it with a pyproject.toml, setup.py, .git or similar), whose configuration applies.
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
from heedls.analyzers.lines import split_lines

LOCATION = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+)$")
JEDI_WAIT_S = 10.0  # jedi's first answer in a new worker (start, import, project) takes seconds on a busy machine


def _offset(text: str, line: int, col: int) -> tuple[int, int, int]:
    """0-based (line, character) and the string offset for 1-based LINE:COL (columns count
    characters; lines end at \\n, \\r\\n or \\r). Raises ValueError, saying why, for a place
    outside the text: the line after a final line break is in it, a column past a line's end not."""
    lines = split_lines(text)
    count = len(lines)
    if not lines or lines[-1].endswith(("\n", "\r")):
        lines.append("")  # the empty line after the final line break (or of an empty file)
    if not 1 <= line <= len(lines):
        raise ValueError(f"line {line} is outside the file: it has {count} line{'s' * (count != 1)}")
    width = len(lines[line - 1].rstrip("\r\n"))
    if not 1 <= col <= width + 1:
        raise ValueError(f"column {col} is outside line {line}: it has {width} character{'s' * (width != 1)} "
                         f"(columns 1-{width + 1})")
    return line - 1, col - 1, sum(map(len, lines[: line - 1])) + col - 1


async def _complete(path: Path, text: str, place: tuple[int, int, int], use_gate: bool) -> tuple[str | None, str]:
    """The suggestion at `place`, (0-based line, character, offset) as `_offset` gives it, and notes."""
    from heedls.analyzers.check import find_workspace
    from heedls.server import config as config_mod
    from heedls.server import services
    from heedls.server.pipeline.gate import PassThroughGate
    from heedls.server.providers.base import CompletionRequest

    root = find_workspace([path])  # the file's project (its pyproject.toml), as heedls check finds it
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
    line0, char0, offset = place
    prime = getattr(provider, "prime", None)  # the local provider itself, not a fallback behind an endpoint
    if callable(prime) and config.inline.enabled:
        # The server uses jedi's late answer from the next keystroke on; a one-shot call has none,
        # so it gives jedi its chance first and then asks as that keystroke would.
        request = CompletionRequest(prefix=text[:offset], suffix=text[offset:], path=str(path), line=line0,
                                    character=char0, document=text)
        await prime(request, JEDI_WAIT_S)
    suggestion = await engine.suggest(path.as_uri(), str(path), text, offset, line0, char0)
    failed = getattr(engine.provider, "last_error", None)
    if failed:  # the endpoint failed: say so, and whose suggestion this is
        whose = "the suggestion is the local provider's" if suggestion else "no suggestion"
        notes.append(f"provider {engine.provider.name} failed ({failed}); {whose}")
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
        text = text.removeprefix("\ufeff")  # a byte-order mark is no column (no editor shows it)
        try:
            place = _offset(text, int(match["line"]), int(match["col"]))
        except ValueError as exc:
            typer.echo(f"heedls: {match['file']}:{match['line']}:{match['col']}: {exc}", err=True)
            raise typer.Exit(2) from None
        suggestion, notes = asyncio.run(_complete(path, text, place, gate))
        if notes:
            typer.echo(notes, err=True)
        if suggestion:
            sys.stdout.write(suggestion + "\n")
