"""Message framing that survives a client's mistakes.

pygls' reader accepts exactly `Content-Length: N\\r\\n` as the header and never resynchronises:
after one frame with a lower-case or oddly spaced header, LF-only lines or a wrong length, the
rest of the frame is glued to the next header line, which then never matches, and every later
message is lost while the process stays up (so the editor does not restart it either). This
stdin wrapper hands pygls its one header form and starts again at the next header.
"""

from __future__ import annotations

import re
from typing import BinaryIO

_HEADER = re.compile(rb"content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?\n?", re.IGNORECASE)


class LenientFrames:
    """What pygls reads from (`readline` for headers, `read` for bodies)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def readline(self) -> bytes:
        line = self.raw.readline()
        if not line:
            return line
        at = line.lower().find(b"content-length")
        if at > 0:  # the tail of a frame whose length was wrong, glued to the next header
            line = line[at:]
        found = _HEADER.fullmatch(line)
        if found is not None:
            return b"Content-Length: " + found.group(1) + b"\r\n"
        if line in (b"\n", b"\r\n"):
            return b"\r\n"
        return line

    def read(self, n: int) -> bytes:
        return self.raw.read(n)
