"""Files written completely or not at all: the data goes to a temporary sibling, then os.replace
(atomic on one file system) puts it in place, so a crash never leaves half a file and a reader sees
the old file or the new one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A temporary name next to `path` that no other process uses (pid + random): two servers
    sharing a data directory never write the same one. Hidden (a leading dot), so that a listing or
    a glob of the directory does not show a half-written file while it is written."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """Yields a temporary sibling to write; on a normal exit it replaces `path`. It never outlives
    the block (an error leaves `path` as it was)."""
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    with replaced_atomically(path) as tmp:
        tmp.write_bytes(data)
