"""Reading LSP frames (`Content-Length` header, blank line, body) from a server's stdout by hand."""

from __future__ import annotations

from typing import BinaryIO


def read_body(out: BinaryIO) -> bytes | None:
    """The next message's body, or None at the end of the stream."""
    headers = {}
    while True:
        line = out.readline()
        if not line:
            return None
        if not line.strip():
            break
        key, _, value = line.decode("ascii", "replace").partition(":")
        headers[key.lower()] = value.strip()
    return out.read(int(headers.get("content-length", "0")))
