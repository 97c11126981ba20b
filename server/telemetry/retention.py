"""The store's optional size cap (`telemetry.max_size_mb`): the oldest suggestions make room.

The store is append-only and, uncapped, grows with every request: about 7 kB per request in a
simulated session with code (`privacy = "full"`: a 6,000-character prefix, the gate's feature rows,
two snapshot rows a request on average, compressed; docs/telemetry.md, "Size"). With a cap, once
the live data passes it, the oldest suggestions are deleted, *whole* (every snapshot row of each),
in short transactions, until the data is at `TRIM_TO` of the cap: the file then stops growing
(SQLite reuses the freed pages; a file that grew before the cap hands its free pages back to the
disk, in short steps) and a crash in the middle leaves a smaller trim. Each trim is counted in the `meta` table
(`trimmed`: how many suggestions, and the newest `ts` among them), so that a later export or
report can say that older events were removed, and by what.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

MIB = 1024 * 1024
# A trim goes down to this share of the cap, so that the next one is many batches away.
TRIM_TO = 0.8
# Rows deleted per transaction of a trim (~0.1 s each): the write lock is never held for long.
TRIM_CHUNK_ROWS = 2000
# A file this many times its cap (grown before the cap) gives its free pages back after a trim.
SHRINK_ABOVE = 2.0
# Pages handed back to the disk per transaction by an incremental store (8 MB at 4 kB pages, ~0.1 s).
SHRINK_CHUNK_PAGES = 2048
# The largest live data an older (not incremental) store is rewritten at in one `VACUUM`: ~2 s at
# the ~70 MB/s measured on a 2-core VM, well within another server's 5 s lock timeout.
VACUUM_MAX_MB = 128.0
INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL
SHRINK_SKIPPED = -1  # shrink_if_oversized: an older store too large to rewrite without a long lock
# Without a cap, the store says once that it has grown past this (and how to cap it).
SIZE_NOTICE_MB = 1024.0


@dataclass(frozen=True)
class Trimmed:
    suggestions: int  # suggestions removed by this trim
    rows: int  # their snapshot rows
    up_to_ts: float  # the newest `ts` (creation time) among them


def live_bytes(conn: sqlite3.Connection) -> int:
    """The bytes the store's data takes (its pages in use; free pages are reused before it grows)."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * page_size


def file_bytes(conn: sqlite3.Connection) -> int:
    """The bytes of the store's main file as SQLite sees it (every page, free ones too)."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return int(conn.execute("PRAGMA page_count").fetchone()[0]) * page_size


def trimmed_so_far(conn: sqlite3.Connection) -> tuple[int, float | None]:
    """(suggestions removed by the size cap, the newest `ts` among them) as the meta table has it."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'trimmed'").fetchone()
    if row is None:
        return 0, None
    try:
        data = json.loads(row[0])
        count, up_to = int(data["suggestions"]), data.get("up_to_ts")
        return count, float(up_to) if up_to is not None else None
    except (ValueError, TypeError, KeyError):  # a hand-edited meta row: start counting again
        return 0, None


def trim_to_cap(conn: sqlite3.Connection, cap_mb: float) -> Trimmed | None:
    """Delete the oldest suggestions (by creation time, `ts`, which every snapshot of a suggestion
    shares) until the data is at `TRIM_TO` of `cap_mb`; None when it is within the cap (or there
    is no cap). In transactions of at most TRIM_CHUNK_ROWS rows, each with its count in `meta`:
    another heedls server writing the same store waits for one of them (~0.1 s), not for the whole
    trim (seconds on a large store), and a crash in the middle leaves a smaller trim, consistent."""
    if not (cap_mb > 0 and math.isfinite(cap_mb)):
        return None
    cap = cap_mb * MIB
    if live_bytes(conn) <= cap:
        return None
    target = TRIM_TO * cap
    total = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    count = rows = 0
    newest: float | None = None
    while total > 0:
        used = live_bytes(conn)
        if used <= target:
            break
        # Rows are of similar size (full snapshots, compressed alike). used / total overstates
        # a row's share (the store's own pages count too, which a small cap makes a large part):
        # so this never removes more than needed, and the next step measures again.
        excess = max(1, math.ceil((used - target) / (used / total)))
        offset = min(excess, total, TRIM_CHUNK_ROWS) - 1
        cut = float(conn.execute("SELECT ts FROM events ORDER BY ts LIMIT 1 OFFSET ?",
                                 (offset,)).fetchone()[0])
        with conn:
            # By creation time, not by when a row was written: a late snapshot (an outcome, a
            # persistence checkpoint) of a suggestion removed before comes back as a whole event,
            # and is as old as it was.
            # The write lock first (an UPDATE takes it even when it changes nothing), then the
            # count: another server trimming the same store between a count and the DELETE made
            # both count its rows (two servers on a 2 MB cap: 8,804 counted, 7,602 removed).
            conn.execute("UPDATE meta SET value = value WHERE key = 'trimmed'")
            # The suggestion written last always stays, whatever the cap: a cap smaller than the
            # store's own pages emptied the table, and SQLite then numbers rows from 1 again, behind
            # `heedls telemetry push`'s cursor (what came after would never be sent).
            last = conn.execute("SELECT id FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            keep = last[0] if last is not None else None
            step, upto = conn.execute("SELECT count(DISTINCT id), max(ts) FROM events WHERE ts <= ? AND id IS NOT ?",
                                      (cut, keep)).fetchone()
            step = int(step)
            deleted = conn.execute("DELETE FROM events WHERE ts <= ? AND id IS NOT ?", (cut, keep)).rowcount
            if deleted > 0:
                upto = float(upto)
                before, before_ts = trimmed_so_far(conn)
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('trimmed', ?)",
                    (json.dumps({"suggestions": before + step,
                                 "up_to_ts": upto if before_ts is None else max(before_ts, upto)}),),
                )
        if deleted <= 0:  # only the suggestion written last is left at or before the cut
            break
        total -= deleted
        rows += deleted
        count += step
        newest = upto if newest is None else max(newest, upto)
    if count == 0:
        return None
    return Trimmed(count, rows, newest if newest is not None else math.nan)


def shrink_if_oversized(conn: sqlite3.Connection, cap_mb: float) -> int:
    """After a trim: a file more than SHRINK_ABOVE times the cap (a store that grew before the cap
    was set, or before it was lowered) gives its free pages back to the disk; in steady state a
    trim frees a fifth of the cap, which SQLite reuses, and the file stays as it is.

    Never with one long write lock: another heedls server on the same store (a second window on the
    workspace) that waits longer than its lock timeout for one takes the file for locked by a
    stranger and sets it aside. A store created with `auto_vacuum = INCREMENTAL` (every store since
    2026-12-02) hands its free pages back SHRINK_CHUNK_PAGES at a time (~0.1 s each); an older one
    is rewritten with `VACUUM` (which also makes it incremental) only while its live data is at
    most VACUUM_MAX_MB (~2 s), and otherwise keeps its size (SHRINK_SKIPPED; its free pages are
    reused). Returns the bytes given back to the disk, SHRINK_SKIPPED, or 0 (not needed)."""
    if not (cap_mb > 0 and math.isfinite(cap_mb)):
        return 0
    before = file_bytes(conn)
    if before <= SHRINK_ABOVE * cap_mb * MIB:
        return 0
    if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == INCREMENTAL:
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        while free > 0:
            # executescript: sqlite3's execute() steps a PRAGMA once, which frees a single page
            conn.executescript(f"PRAGMA incremental_vacuum({SHRINK_CHUNK_PAGES});")
            left = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            if left >= free:  # nothing moved: do not loop
                break
            free = left
    elif live_bytes(conn) <= VACUUM_MAX_MB * MIB:
        conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")  # VACUUM converts it: next time in chunks
        conn.execute("VACUUM")
    else:
        return SHRINK_SKIPPED
    return max(0, before - file_bytes(conn))


def trimmed_phrase(count: int, up_to_ts: float | None) -> str:
    """"the N oldest suggestions (created up to <time>)": how the CLI's note and the report's page
    name what the cap removed."""
    until = "" if up_to_ts is None else f" (created up to {utc_label(up_to_ts)})"
    return f"the {count} oldest suggestions{until}"


def utc_label(ts: float) -> str:
    """A creation time as the warnings and notes about trims print it ("?" when it is no time)."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError, OSError):
        return "?"
