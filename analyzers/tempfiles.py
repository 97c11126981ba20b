"""Leftovers of killed runs in the temp folder, swept once per process.

A run's temporary files are removed by its `finally` (or, on SIGTERM, an atexit hook), but a
process killed with SIGKILL (an editor closing its window takes its language server with it) runs
neither. The next process of ours removes what is older than any run can be: a run's own time
limits are minutes, and a file still being written has a fresh modification time.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from pathlib import Path

STALE_AFTER_S = 24 * 3600.0


@functools.cache
def sweep_stale(prefix: str, older_than_s: float = STALE_AFTER_S) -> int:
    """Remove the temp folder's entries named `prefix*` last modified more than `older_than_s` ago
    (files and folders); how many went. Once per process and prefix; never raises (another user's
    entries, or one removed meanwhile, are left to their owner)."""
    cutoff = time.time() - older_than_s
    removed = 0
    try:
        entries = list(Path(tempfile.gettempdir()).glob(f"{prefix}*"))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.lstat().st_mtime >= cutoff:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        except OSError:
            continue
    return removed
