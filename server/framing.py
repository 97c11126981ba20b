"""Message framing that survives a client's mistakes, on stdio and on TCP alike.

pygls' reader accepts exactly `Content-Length: N\\r\\n` as the header and never resynchronises:
after one frame with a lower-case or oddly spaced header, LF-only lines or a wrong length, the
rest of the frame is glued to the next header line, which then never matches, and every later
message is lost while the process stays up (so the editor does not restart it either). These
readers hand pygls its one header form and start again at the next header:
- a header line is accepted in any case and spacing, and found at the end of a line it was glued to;
- a length over MAX_MESSAGE_BYTES is refused (it asked pygls to allocate, or wait for, gigabytes:
  `Content-Length: 99999999999` ended the server with a MemoryError): its header is dropped, and
  reading starts again at the next header;
- a body read with a length too long holds the start of the next message: when it does not parse
  as a whole but its start does, the rest goes back to be read as the next frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import BinaryIO

log = logging.getLogger("heedls")

# No editor sends a language server a message this large (a 30 MB document is read in 0.5 s).
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_HEADER = re.compile(rb"content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?\n?", re.IGNORECASE)
_GLUED = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
# What a refused header becomes: a header line pygls does not know, and so ignores.
_REFUSED = b"X-Heedls-Refused: oversized\r\n"
# An over-long line is kept only by this much of its end, where a glued header would be.
_LINE_TAIL = 64


def header_line(line: bytes) -> bytes:
    """A line read where a header is expected, as pygls must see it."""
    at = line.lower().find(b"content-length")
    if at > 0:  # the tail of a frame whose length was wrong, glued to the next header
        line = line[at:]
    found = _HEADER.fullmatch(line)
    if found is not None:
        size = int(found.group(1))
        if size > MAX_MESSAGE_BYTES:
            log.warning("a message of %d bytes was refused (more than %d MB): reading on from the next header",
                        size, MAX_MESSAGE_BYTES // (1024 * 1024))
            return _REFUSED
        return b"Content-Length: " + found.group(1) + b"\r\n"
    if line in (b"\n", b"\r\n"):
        return b"\r\n"
    return line


def split_glued(body: bytes) -> tuple[bytes, bytes]:
    """(the message, what belongs to the next frame) of a body read with a length too long.

    Only a body that does not end like a JSON message is looked into, so a well-framed message
    (however large) costs one `endswith`; and only a start that parses is split off."""
    if body.rstrip().endswith((b"}", b"]")):
        return body, b""
    found = _GLUED.search(body)
    if found is None or found.start() == 0:
        return body, b""
    head = body[: found.start()]
    try:
        json.loads(head)
    except (ValueError, RecursionError):
        return body, b""
    return head, body[found.start():]


class LenientFrames:
    """What pygls reads stdio from (`readline` for headers, `read` for bodies)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self._pending = b""  # read already, belonging to the next frame

    def readline(self) -> bytes:
        if self._pending:
            end = self._pending.find(b"\n")
            if end >= 0:
                line, self._pending = self._pending[: end + 1], self._pending[end + 1:]
                return header_line(line)
            line, self._pending = self._pending + self.raw.readline(), b""
        else:
            line = self.raw.readline()
        if not line:
            return line
        return header_line(line)

    def read(self, n: int) -> bytes:
        head, self._pending = self._pending[:n], self._pending[n:]
        body = head + (self.raw.read(n - len(head)) if n > len(head) else b"")
        message, rest = split_glued(body)
        if rest:
            self._pending = rest + self._pending
        return message


class AsyncLenientFrames:
    """The same for a TCP connection (pygls' `readline` / `readexactly` on an asyncio stream)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self._pending = b""

    async def readline(self) -> bytes:
        end = self._pending.find(b"\n")
        if end >= 0:
            line, self._pending = self._pending[: end + 1], self._pending[end + 1:]
            return header_line(line)
        line, self._pending = self._pending, b""
        while True:
            try:
                line += await self.reader.readuntil(b"\n")
                break
            except asyncio.IncompleteReadError as exc:  # the connection ended
                line += exc.partial
                break
            except asyncio.LimitOverrunError as exc:
                # a line past the stream's limit is no header (asyncio's readline would raise and
                # drop it, glued header and all): keep its end, where a glued header would be
                line = (line + await self.reader.readexactly(exc.consumed))[-_LINE_TAIL:]
        if not line:
            return line
        return header_line(line)

    async def readexactly(self, n: int) -> bytes:
        head, self._pending = self._pending[:n], self._pending[n:]
        try:
            body = head + (await self.reader.readexactly(n - len(head)) if n > len(head) else b"")
        except asyncio.IncompleteReadError as exc:  # the connection ended mid-body: what came
            return head + exc.partial
        message, rest = split_glued(body)
        if rest:
            self._pending = rest + self._pending
        return message
