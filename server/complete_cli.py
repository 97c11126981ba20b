"""`heedls complete FILE:LINE:COL` — print the suggestion the server would show there.

LINE and COL are 1-based (as compilers print them); the workspace is the file's project (the nearest
folder above it with a pyproject.toml, setup.py, .git or similar), whose configuration applies.
stdout carries only the suggestion text (empty when there is none); notes go to stderr; exit 0
also when there is no suggestion. Exit 2, with a message saying why, for a usage error: a bad
location, or a file that is no source to complete in (missing, a directory, a FIFO or a device,
binary, larger than MAX_FILE_BYTES). Exit 1 when the suggestion cannot be written in stdout's
encoding. The file is read in its own encoding (PEP 263), UTF-8 when it declares none.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import stat
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from heedls.analyzers.lines import split_lines

LOCATION = re.compile(r"^(?P<file>.+):(?P<line>[0-9]+):(?P<col>[0-9]+)$")
# What a location with a bad LINE or COL looks like (said as such, not as a missing FILE:LINE:COL)
NEAR_LOCATION = re.compile(r"^(?P<file>.+?):(?P<line>[^:]*):(?P<col>[^:]*)$")
# Larger files are refused, not read: a source file of this size is generated data, and reading a
# device (/dev/zero) or an ever-growing file must end. 50 MB of code completes in about a second.
MAX_FILE_BYTES = 64 * 1024 * 1024
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


class Unreadable(Exception):
    """The file cannot be completed in: why, for the message."""


def read_source(path: Path) -> tuple[str, list[str], bool]:
    """The text of the Python file at `path`, notes about it, and whether bytes not in its
    encoding were replaced (U+FFFD). Only a regular file is read (a
    FIFO would wait for a writer forever, /dev/zero never ends), at most MAX_FILE_BYTES; a file
    with NUL bytes is no text. The encoding is the file's own (PEP 263: a byte-order mark or a
    `coding:` line, else UTF-8); bytes that are not in it are read as U+FFFD, with a note."""
    try:
        # O_NONBLOCK: a FIFO put in the file's place after the check below must not block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise Unreadable("it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("not a regular file (a pipe, a device or a socket)")
        if info.st_size > MAX_FILE_BYTES:
            raise Unreadable(f"too large ({info.st_size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB)")
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise Unreadable(f"too large (over {MAX_FILE_BYTES // 2**20} MB)")
    if b"\0" in data:
        raise Unreadable("not a text file (it contains NUL bytes)")
    from heedls.analyzers.syntax import decode_source  # tree-sitter: not on every CLI start

    source = decode_source(data)  # as the interpreter and `heedls check` decode it
    notes: list[str] = []
    # an unknown codec in the coding line, or a BOM that contradicts it, is worth a note; bytes that
    # are no UTF-8 in the first lines ("invalid or missing encoding declaration") get theirs below
    if source.declaration_error and "encoding declaration" not in source.declaration_error:
        notes.append(f"{source.declaration_error}; reading it as UTF-8")
    bad = source.decode_error
    if bad is not None:
        line = data[: bad.start].count(b"\n") + 1
        name = codecs.lookup(source.encoding).name
        notes.append(f"not valid {name.upper() if name.startswith('utf') else name} (byte 0x{data[bad.start]:02x} "
                     f"on line {line}): such bytes count as one character each and no suggestion copies them")
    text, replaced = source.text, bad is not None
    return text.removeprefix("\ufeff"), notes, replaced  # a byte-order mark is no column (no editor shows it)


def _usage(location: str) -> str:
    near = NEAR_LOCATION.match(location)
    if near is not None:
        bad = [f"{what} {value!r}" for what, value in (("LINE", near["line"]), ("COL", near["col"]))
               if not value.isascii() or not value.isdigit()]
        if bad:
            return (f"heedls: {location}: {' and '.join(bad)} must be {'numbers' if len(bad) > 1 else 'a number'} "
                    f"from 1 (LINE and COL are 1-based)")
    return f"heedls: expected FILE:LINE:COL (LINE and COL 1-based numbers), got {location!r}"


def register(app: typer.Typer) -> None:
    @app.command()
    def complete(
        location: Annotated[str, typer.Argument(metavar="FILE:LINE:COL", help="1-based line and column.")],
        gate: Annotated[bool, typer.Option("--gate/--no-gate", help="Apply the acceptance gate as the server would.")] = True,
    ) -> None:
        """Print the inline suggestion the server would show at FILE:LINE:COL."""
        match = LOCATION.match(location)
        if not match:
            typer.echo(_usage(location), err=True)
            raise typer.Exit(2)
        given = match["file"]
        try:
            path = Path(given).resolve()
        except OSError as exc:  # a relative path and the current directory deleted
            why = "the current directory no longer exists" if not Path(given).is_absolute() else exc.strerror
            typer.echo(f"heedls: cannot read {given}: {why}", err=True)
            raise typer.Exit(2) from None
        try:
            text, file_notes, replaced = read_source(path)
        except Unreadable as exc:
            typer.echo(f"heedls: cannot read {given}: {exc}", err=True)
            raise typer.Exit(2) from None
        for note in file_notes:
            typer.echo(f"heedls: {given}: {note}", err=True)
        try:
            place = _offset(text, int(match["line"]), int(match["col"]))
        except ValueError as exc:
            typer.echo(f"heedls: {given}:{match['line']}:{match['col']}: {exc}", err=True)
            raise typer.Exit(2) from None
        suggestion, notes = asyncio.run(_complete(path, text, place, gate))
        if notes:
            typer.echo(notes, err=True)
        if suggestion and replaced and "\ufffd" in suggestion:
            # a character the file does not have (its bytes were not in its encoding): never insert it
            typer.echo("heedls: the suggestion copies undecodable bytes as U+FFFD; not shown", err=True)
            suggestion = None
        if suggestion:
            out = suggestion + "\n"
            encoding = sys.stdout.encoding or "utf-8"
            try:
                out.encode(encoding)
            except UnicodeEncodeError:
                typer.echo(f"heedls: the suggestion has characters the output encoding ({encoding}) cannot "
                           f"write; set PYTHONIOENCODING=utf-8", err=True)
                raise typer.Exit(1) from None
            sys.stdout.write(out)
