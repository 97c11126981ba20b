"""Whether a process the tests started (or a child of it) is still running."""

from __future__ import annotations

import os
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Running now; a zombie waiting for a reaper counts as gone (the container's init may not reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def dead(pid: int, wait_s: float = 5.0) -> bool:
    """Gone within `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
