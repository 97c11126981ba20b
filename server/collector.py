"""The server process's garbage-collector settings, in one place: `heedls serve` applies them once
it has started, and `heedls bench gate` applies the same ones, so that the bench times the gate in
the process the server runs it in.

- `gc.freeze()`: the modules, classes, functions and models loaded at start-up live as long as the
  server; moved out of the collector's reach, a full collection walks only the session's objects.
- A young-generation threshold of 10,000 allocations instead of CPython's 700: each request
  allocates a few thousand container objects (feature rows, tokens, LSP messages), so with 700 a
  young collection (~60 µs on cups-dev's requests) lands inside every ~20th gate decision. With
  10,000 it comes ~14 times less often, a little longer each time; reference counting frees all
  but cyclic garbage at once either way. Measured: `heedls bench gate` on cups-dev's Copilot
  suggestions, stage-2 p95 0.104-0.107 -> 0.100-0.104 ms (docs/benchmarks.md).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what start-up loaded and raise the young generation's threshold (never lower it)."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young and young < YOUNG_THRESHOLD:  # 0: collection is switched off; leave it so
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@contextmanager
def as_in_the_server() -> Iterator[None]:
    """The server's settings for a while (a benchmark in someone else's process, e.g. pytest's),
    then the ones before, everything frozen meanwhile given back to the collector."""
    before = gc.get_threshold()
    settle()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
