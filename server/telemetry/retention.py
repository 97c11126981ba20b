"""The store's optional size cap (`telemetry.max_size_mb`): the oldest suggestions make room.

The store is append-only and, uncapped, grows with every request: about 7 kB per suggestion with
code (`privacy = "full"`, a 6,000-character prefix; several snapshot rows each, compressed), 412 MB
per 100,000 (docs/telemetry.md). With a cap, once the live data passes it, the oldest suggestions
are deleted, *whole* (every snapshot row of each), in one transaction, until the data is at
`TRIM_TO` of the cap: the file then stops growing (SQLite reuses the freed pages) and a crash in the
middle deletes nothing. Each trim is counted in the `meta` table (`trimmed`: how many suggestions,
and the newest `ts` among them), so that a later export or report can say that older events were
removed, and by what.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass

MIB = 1024 * 1024
# A trim goes down to this share of the cap, so that the next one is many batches away.
TRIM_TO = 0.8
# Without a cap, the store says once that it has grown past this (and how to cap it).
SIZE_NOTICE_MB = 1024.0


@dataclass(frozen=True)
class Trimmed:
    suggestions: int  # suggestions removed by this trim
    rows: int  # their snapshot rows
    up_to_ts: float  # the newest `ts` (creation time) among them
    total_suggestions: int  # removed by every trim of this store so far


def live_bytes(conn: sqlite3.Connection) -> int:
    """The bytes the store's data takes (its pages in use; free pages are reused before it grows)."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * page_size


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
    """Delete the oldest suggestions (by their first row) until the data is at `TRIM_TO` of
    `cap_mb`; None when it is within the cap (or there is no cap). One transaction."""
    if not (cap_mb > 0 and math.isfinite(cap_mb)):
        return None
    cap = cap_mb * MIB
    used = live_bytes(conn)
    if used <= cap:
        return None
    total = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    if total == 0:
        return None
    # Rows are of similar size (full snapshots, compressed alike): remove the share of them that
    # is over TRIM_TO of the cap, counted from the oldest; a suggestion's later rows go with it.
    excess = max(1, math.ceil(total * (1.0 - TRIM_TO * cap / used)))
    offset = min(excess, total) - 1
    cut = conn.execute("SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?", (offset,)).fetchone()
    if cut is None:
        return None
    with conn:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS trim_ids (id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM trim_ids")
        conn.execute("INSERT OR IGNORE INTO trim_ids SELECT id FROM events WHERE seq <= ?", (int(cut[0]),))
        count, up_to = conn.execute(
            "SELECT count(*), (SELECT max(ts) FROM events WHERE id IN (SELECT id FROM trim_ids))"
            " FROM trim_ids"
        ).fetchone()
        rows = conn.execute("DELETE FROM events WHERE id IN (SELECT id FROM trim_ids)").rowcount
        before, before_ts = trimmed_so_far(conn)
        known = [t for t in (up_to, before_ts) if t is not None]
        newest = max(known) if known else None
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('trimmed', ?)",
            (json.dumps({"suggestions": before + int(count), "up_to_ts": newest}),),
        )
        conn.execute("DELETE FROM trim_ids")
    newest_ts = float(up_to) if up_to is not None else math.nan
    return Trimmed(int(count), int(rows), newest_ts, before + int(count))
