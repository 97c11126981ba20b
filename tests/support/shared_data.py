"""Where the shared benchmark data is: `../shared` beside the checkout (as CI lays it out), or
`$HEEDLS_SHARED`, or the development machine's /work/shared. Read in place, never copied in."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    candidates = [Path(os.environ["HEEDLS_SHARED"])] if os.environ.get("HEEDLS_SHARED") else []
    candidates += [REPO.parent / "shared", Path("/work/shared")]
    for candidate in candidates:
        if (candidate / "bench").is_dir():
            return candidate
    return candidates[0]


BENCH = shared_dir() / "bench"
QUIXBUGS = BENCH / "quixbugs"
CUPS = BENCH / "acceptance" / "cups-dev.jsonl"
