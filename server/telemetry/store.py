"""The telemetry store: an append-only SQLite log of `heedls.suggestion/1` events.

Every state change of a suggestion (requested/skipped, shown, accepted, rejected, persistence
known) is appended as a *full snapshot* row; readers take the latest row per suggestion id. Nothing
is ever updated in place, so a crash can only lose rows, never damage earlier ones.

Writes never happen on the caller's thread: `record()` serialises the event (a snapshot, so later
mutation of the object does not leak in) and puts it on a queue; one background thread writes
batches (every `batch_interval_s` or `batch_size` events, whichever comes first) in a single
transaction. SQLite in WAL mode with `synchronous=NORMAL` makes each committed batch survive a
`kill -9` of the process; only the batch being collected is lost.

Failure behaviour (never a crash, never a blocked request):
- corrupt / not-a-database / unreadable / locked-for-longer-than-`lock_timeout_s` file, at open or on
  a write: the file is moved aside to `events.sqlite3.corrupt-<UTC stamp>` (with its -wal), a new
  store is created, a warning is issued;
- read-only location, disk full (or the hard page limit `page_limit_mb`, the fault tests' full
  disk), other I/O errors: events are kept in a bounded in-memory buffer (`max_buffered`, oldest
  dropped first and counted), a warning is issued once, and writing is retried every
  `retry_interval_s`.

The optional size cap `max_size_mb` (the setting `telemetry.max_size_mb`) is not a failure: past
it, the oldest suggestions are deleted whole to make room (retention.py), with one warning.
Warnings go to `store.warnings`, and to the optional `on_warning` callback, which is called from
the writer thread (marshal it onto your event loop), or without one (or when it fails) to the
`heedls.telemetry` logger (stderr).
"""

from __future__ import annotations

import atexit
import collections
import copy
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from heedls.server.events import SuggestionEvent
from heedls.server.telemetry.retention import (
    INCREMENTAL,
    MIB,
    SHRINK_SKIPPED,
    SIZE_NOTICE_MB,
    file_bytes,
    live_bytes,
    shrink_if_oversized,
    trim_to_cap,
    trimmed_phrase,
    trimmed_so_far,
)

log = logging.getLogger("heedls.telemetry")

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,      -- append order; rows are deleted only by the size cap (oldest first)
    id TEXT NOT NULL,             -- suggestion id; several snapshot rows per id
    ts REAL NOT NULL,             -- the event's own ts (suggestion created), for --since
    recorded REAL NOT NULL,       -- wall clock when the row was handed to record()
    data TEXT NOT NULL            -- SuggestionEvent.to_json(); a zlib BLOB when over 1 kB
);
CREATE INDEX IF NOT EXISTS events_id_seq ON events(id, seq);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('store_schema', '1');
"""

# Latest snapshot per id. The GROUP BY runs on the covering index (id, seq).
# The latest snapshot of each suggestion, as stored: the data as bytes (text rows cast, so that a
# row that is not UTF-8 is the reader's to skip, not sqlite3's to raise on) and whether it is the
# zlib-compressed form.
LATEST_SQL = (
    "SELECT seq, CAST(data AS BLOB), typeof(data) = 'blob' FROM events"
    " WHERE seq IN (SELECT MAX(seq) FROM events GROUP BY id) AND ts >= ? ORDER BY ts, seq"
)

# SQLite primary result codes (sqlite3.h), used to decide what a failure means.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = (
    5,
    6,
    8,
    10,
    11,
    13,
    14,
    26,
)

Row = tuple[str, float, float, str]  # id, ts, recorded, json
_Queued = tuple[str, float, float, SuggestionEvent]  # id, ts, recorded, the event (encoded by the writer)

# Rows above this size are stored zlib-compressed (a BLOB instead of TEXT): prefixes and suffixes of
# several kB repeat in every snapshot of a suggestion, and code compresses 3-5x. Done on the writer
# thread; readers decode both forms (row_text), so old and new rows mix freely.
COMPRESS_ABOVE = 1024
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
# The writer thread hands the interpreter lock back at least this often while it encodes a batch.
YIELD_EVERY_S = 0.0001


def _brief(exc: BaseException) -> str:
    """An exception for a log line: its type and message, never the object it failed on (a
    UnicodeEncodeError's repr carries the whole event, code included; logs never contain code)."""
    return f"{type(exc).__name__}: {str(exc)[:160]}"


def encode_data(data: str) -> str | bytes:
    if len(data) <= COMPRESS_ABOVE:
        return data
    return zlib.compress(data.encode("utf-8"), 1)


def row_text(raw: bytes, compressed: bool) -> str:
    """A stored row's JSON text. Raises zlib.error or UnicodeDecodeError for bytes we did not write."""
    return (zlib.decompress(raw) if compressed else bytes(raw)).decode("utf-8")


@dataclass
class _Flush:
    done: threading.Event = field(default_factory=threading.Event)


class _Close:
    pass


class _Corrupt(Exception):
    pass


class _NotOurs(Exception):
    """The file at the store's path is someone else's: never moved, written or added to."""


_SQLITE_MAGIC = b"SQLite format 3\x00"
_STORE_SUFFIXES = (".sqlite3", ".sqlite", ".db", "")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _may_be_a_store(path: Path) -> bool:
    """Whether a file that SQLite cannot read may be a damaged store (moved aside and replaced)
    rather than another file of the user's: it has SQLite's header, or it is named like a database
    (a store whose first pages are garbage has the name it was given)."""
    if path.suffix.lower() in _STORE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return True


def classify(exc: BaseException) -> str:
    """'corrupt' | 'locked' | 'unavailable' (read-only, full, I/O) for an sqlite3 error."""
    if isinstance(exc, _Corrupt):
        return "corrupt"
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary in (_CORRUPT, _NOTADB):
            return "corrupt"
        if primary in (_BUSY, _LOCKED):
            return "locked"
        return "unavailable"
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text:
        return "corrupt"
    if "locked" in text or "busy" in text:
        return "locked"
    return "unavailable"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection (readers never create, repair or lock out the writer). A WAL store
    in a folder that cannot be written (a read-only mount, a backup, a snapshot) cannot get the
    shared-memory file a reader needs: there it is opened as immutable, which is safe exactly
    because nothing can write it either."""
    resolved = Path(path).resolve()
    conn = sqlite3.connect(resolved.as_uri() + "?mode=ro", uri=True, timeout=5.0, check_same_thread=False)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc) or not resolved.is_file() or os.access(resolved.parent, os.W_OK):
            conn.close()
            raise
        conn.close()
        conn = sqlite3.connect(resolved.as_uri() + "?mode=ro&immutable=1", uri=True, timeout=5.0,
                               check_same_thread=False)
    conn.execute("PRAGMA query_only = 1")
    return conn


def read_trimmed(path: Path | str) -> tuple[int, float | None]:
    """(suggestions the store's size cap removed so far, the newest creation time among them);
    (0, None) when none were, or when it cannot say (not a store: its readers will say so)."""
    try:
        conn = connect_readonly(Path(path))
        try:
            return trimmed_so_far(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return 0, None


def read_events(path: Path | str, since: float | None = None) -> Iterator[SuggestionEvent]:
    """Latest snapshot of every suggestion in the store at `path`, oldest first (streamed)."""
    for _seq, data in read_rows(path, since):
        try:
            yield SuggestionEvent.from_dict(json.loads(data))
        except (
            ValueError,
            TypeError,
        ) as exc:  # a row we did not write; skip, never crash
            log.warning("telemetry: skipping an unreadable row in %s: %s", path, exc)


def latest_rows(path: Path | str, since: float | None = None) -> Iterator[tuple[int, bytes, bool]]:
    """(seq, stored bytes, compressed) of the latest snapshot of every suggestion, oldest first;
    read-only and streamed. The one reader of the table: decoding is the caller's (row_text)."""
    path = Path(path)
    if not path.exists():
        return
    conn = connect_readonly(path)
    try:
        cursor = conn.execute(LATEST_SQL, (float("-inf") if since is None else float(since),))
        while True:
            chunk = cursor.fetchmany(2048)
            if not chunk:
                break
            for seq, raw, compressed in chunk:
                yield int(seq), raw, bool(compressed)
    finally:
        conn.close()


def read_rows(path: Path | str, since: float | None = None) -> Iterator[tuple[int, str]]:
    """(seq, JSON text) of the latest snapshot of every suggestion, oldest first."""
    for seq, raw, compressed in latest_rows(path, since):
        try:
            text = row_text(raw, compressed)
        except (zlib.error, UnicodeDecodeError) as exc:
            # one damaged row (a torn page, bytes we did not write) must not end the read
            log.warning("telemetry: skipping row %s of %s that cannot be decoded (%s)", seq, path, type(exc).__name__)
            continue
        yield seq, text


def count_events(path: Path | str) -> int:
    path = Path(path)
    if not path.exists():
        return 0
    conn = connect_readonly(path)
    try:
        return int(conn.execute("SELECT COUNT(DISTINCT id) FROM events").fetchone()[0])
    finally:
        conn.close()


def _close_at_exit(ref: weakref.ref[TelemetryStore]) -> None:
    store = ref()
    if store is not None:
        store.close(timeout=2.0)


class TelemetryStore:
    def __init__(
        self,
        path: Path | str,
        *,
        batch_interval_s: float = 0.2,
        batch_size: int = 256,
        max_buffered: int = 20_000,
        max_size_mb: float = 0.0,
        page_limit_mb: float = 0.0,
        lock_timeout_s: float = 5.0,
        retry_interval_s: float = 30.0,
        on_warning: Callable[[str], None] | None = None,
        privacy: str = "full",
    ) -> None:
        self.path = Path(path)
        # "nocode": code never reaches the disk; rows are stored as the nocode export writes them.
        self.privacy = privacy
        self.batch_interval_s = batch_interval_s
        self.batch_size = max(1, batch_size)
        self.max_size_mb = max_size_mb  # 0: no cap (retention.py)
        self.page_limit_mb = page_limit_mb  # 0: none; else SQLite's max_page_count, a disk that fills
        self.trimmed = 0  # suggestions this store object removed to stay within max_size_mb
        self.lock_timeout_s = lock_timeout_s
        self.retry_interval_s = retry_interval_s
        self.on_warning = on_warning
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self._queue: queue.SimpleQueue[_Queued | _Flush | _Close] = queue.SimpleQueue()
        self._yielded_at = 0.0  # when the writer last gave the interpreter lock back (perf_counter)
        # Rows that could not be written yet (degraded mode); bounded, oldest dropped first.
        self._buffer: collections.deque[Row] = collections.deque(maxlen=max(1, max_buffered))
        self._buffer_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file _conn writes
        self._next_retry = 0.0
        self.state = "starting"  # starting | ok | degraded | closed
        self.recorded = 0
        self.written = 0
        self.dropped = 0
        self.set_aside: list[Path] = []
        self._closed = False
        # The writer collects a batch without being woken per event (a wake-up per record() would
        # cost the caller a thread switch); flush(), close() and a full batch wake it early.
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heedls-telemetry-writer", daemon=True)
        self._thread.start()
        # A normal interpreter exit flushes; kill -9 loses only the batch being collected.
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- caller side (any thread, never blocks) -----------------------------------------------
    def record(self, event: SuggestionEvent) -> None:
        """Queue a snapshot of `event` as it is now. The snapshot is a shallow copy (its `extra`
        copied too: the engine adds keys later; nested values are replaced, never changed); it is
        encoded as JSON on the writer thread, since the encoding, with the gate's feature rows, is
        most of what recording costs."""
        if self._closed:
            self._warn("telemetry: record() after close(); event dropped", once="closed")
            return
        snapshot = copy.copy(event)
        snapshot.extra = dict(event.extra)
        now = time.time()
        if not (isinstance(event.ts, (int, float)) and math.isfinite(event.ts)):
            # ts orders and filters rows, may not be NULL, and readers skip an event without a
            # finite one: a NaN from an API caller would fail its batch on every retry, then be
            # unreadable. Such an event is filed under the time it was recorded instead.
            snapshot.ts = now
        self._queue.put((event.id, float(snapshot.ts), now, snapshot))
        self.recorded += 1
        if self._queue.qsize() >= self.batch_size and not self._wake.is_set():
            self._wake.set()  # a full batch: write it now (once; set() takes a lock)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is committed (or buffered, if degraded)."""
        if not self._thread.is_alive():
            return False
        marker = _Flush()
        self._queue.put(marker)
        self._wake.set()
        return marker.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and close. Waits as long as the writer makes progress (a backlog of
        tens of thousands of events takes seconds to write, and the writer thread dies with the
        process), and gives up after `timeout` seconds without any (a disk that hangs)."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_Close())
            self._wake.set()
            while True:
                seen = self._progress()
                self._thread.join(timeout)
                if not self._thread.is_alive() or self._progress() == seen:
                    break

    def _progress(self) -> tuple[int, int, int, int]:
        """Changes while the writer works: what it has taken from the queue, written or dropped."""
        return self._queue.qsize(), self.written, self.dropped, len(self._buffer)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Opening happens on the writer thread; tests and the CLI can wait for it."""
        return self._ready.wait(timeout)

    def iter_events(self, since: float | None = None) -> Iterator[SuggestionEvent]:
        """Latest snapshot per id: the database, overlaid with rows still held in memory."""
        self.flush()
        with self._buffer_lock:
            pending: dict[str, str] = {
                row[0]: row[3] for row in self._buffer if since is None or row[1] >= since
            }
        try:
            for _seq, data in read_rows(self.path, since):
                event = SuggestionEvent.from_dict(json.loads(data))
                if event.id not in pending:
                    yield event
        except sqlite3.Error as exc:
            self._warn(f"telemetry: cannot read {self.path}: {exc}", once="read")
        for data in pending.values():
            yield SuggestionEvent.from_dict(json.loads(data))

    def count(self) -> int:
        return sum(1 for _ in self.iter_events())

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def status(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "state": self.state,
            "recorded": self.recorded,
            "written": self.written,
            "buffered": self.buffered,
            "dropped": self.dropped,
            "trimmed": self.trimmed,
            "warnings": list(self.warnings),
        }

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread ------------------------------------------------------------------------
    def _warn(self, message: str, once: str | None = None) -> None:
        if once is not None:
            if once in self._warned:
                return
            self._warned.add(once)
        self.warnings.append(message)
        if self.on_warning is not None:
            # the callback says it (the server logs it and tells the editor): logged here too, each
            # warning was on stderr twice
            try:
                self.on_warning(message)
                return
            except Exception:  # a broken callback must not stop the writer
                log.exception("telemetry warning callback failed")
        log.warning("%s", message)

    def _run(self) -> None:
        try:
            self._open()
        finally:
            self._ready.set()
        while True:
            batch: list[Row] = []
            controls: list[_Flush | _Close] = []
            wait = self.retry_interval_s if self.state == "degraded" else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                self._write([])  # periodic retry of the in-memory buffer
                continue
            self._take(item, batch, controls)
            if not controls and self._queue.qsize() + 1 < self.batch_size:
                # Let the batch collect; record() does not wake this thread, a full batch does.
                self._wake.wait(self.batch_interval_s)
            self._wake.clear()
            while len(batch) < self.batch_size and not controls:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._take(item, batch, controls)
            try:
                self._write(batch, force_retry=bool(controls))
            except Exception as exc:  # noqa: BLE001 -- never let the writer die: keep the rows in memory
                self._buffer_rows(batch)
                self._warn(
                    f"telemetry: unexpected write failure ({_brief(exc)}); keeping events in memory",
                    once="unexpected",
                )
            for control in controls:
                if isinstance(control, _Flush):
                    control.done.set()
            if any(isinstance(c, _Close) for c in controls):
                self._drain_after_close()
                return

    def _take(
        self,
        item: _Queued | _Flush | _Close,
        batch: list[Row],
        controls: list[_Flush | _Close],
    ) -> None:
        if isinstance(item, (_Flush, _Close)):
            controls.append(item)
            return
        ident, ts, recorded, event = item
        try:
            batch.append((ident, ts, recorded, self._encode(event)))
        except Exception as exc:  # noqa: BLE001 -- one unencodable event must not stop the writer
            self.dropped += 1
            self._warn(f"telemetry: event {ident} could not be encoded ({_brief(exc)}); dropped", once="encode")
        # Give the interpreter lock back every YIELD_EVERY_S of encoding: a request waiting for it
        # would otherwise wait out the switch interval (5 ms) while a batch is encoded. Not after
        # every event: each sleep(0) is a system call that can hand the core to another process,
        # which on a busy machine made the writer 2-3x slower (a 20k-event backlog: 2.5 s against
        # 1.0-1.6 s); a request now waits at most 0.1 ms and one event's encoding (25-40 µs).
        now = time.perf_counter()
        if now - self._yielded_at >= YIELD_EVERY_S:
            time.sleep(0)
            self._yielded_at = time.perf_counter()

    def _encode(self, event: SuggestionEvent) -> str:
        if self.privacy == "nocode":
            from heedls.server.telemetry.export import to_record

            text = json.dumps(to_record(event, "nocode"), ensure_ascii=False, separators=(",", ":"))
        else:
            text = event.to_json()
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                # A lone surrogate (an editor's broken UTF-16, a file read with surrogateescape) cannot
                # be stored as UTF-8; as a JSON escape it can, and it reads back as the same string.
                text = json.dumps(json.loads(text), ensure_ascii=True, separators=(",", ":"))
        return text

    def _drain_after_close(self) -> None:
        rest: list[Row] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Flush):
                item.done.set()
            elif not isinstance(item, _Close):
                self._take(item, rest, [])
        if rest:
            self._write(rest, force_retry=True)
        if self._buffer:
            self._warn(
                f"telemetry: {len(self._buffer)} events could not be written to {self.path} and are lost"
            )
        self._close_connection()
        self.state = "closed"

    # -- opening and repairing ------------------------------------------------------------------
    def _close_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.lock_timeout_s, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout_s * 1000)}")
            # before anything that writes (WAL mode changes the file's header)
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "events" not in tables:  # another program's database: never add our tables
                raise _NotOurs(f"a SQLite database of something else (tables {', '.join(sorted(tables)[:5])})")
            # Takes effect only in a new, empty file (before its first table): a capped store can
            # then give free pages back in short steps (retention.shrink_if_oversized).
            conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
            # Fails with SQLITE_NOTADB on garbage and SQLITE_BUSY when someone holds the file.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.info("telemetry: journal_mode is %s, not wal, for %s", mode, self.path)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(SCHEMA_SQL)
            if self.page_limit_mb > 0:
                page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
                pages = max(16, int(self.page_limit_mb * MIB / page_size))
                conn.execute(f"PRAGMA max_page_count = {pages}")
            if self.max_size_mb > 0:
                # a trim's deletions pass through the WAL: let it shrink back after a checkpoint
                conn.execute(f"PRAGMA journal_size_limit = {64 * MIB}")
            # A full page scan finds damage in the middle of the file; it costs about a second per
            # few hundred MB, so big stores skip it and rely on SQLITE_CORRUPT from later writes.
            if self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
                if check != "ok":
                    raise _Corrupt(f"quick_check: {check}")
            self._identity = _identity(self.path)
            return conn
        except BaseException:
            conn.close()
            raise

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._degrade(f"cannot create {self.path.parent} ({exc.strerror or exc})")
            return
        for attempt in range(2):
            try:
                self._conn = self._connect()
                self.state = "ok"
                return
            except _NotOurs as exc:
                self._degrade(f"{self.path} is not a telemetry store but {exc}; heedls leaves it as it is "
                              "(set telemetry.path to another file)")
                return
            except (sqlite3.Error, _Corrupt) as exc:
                kind = classify(exc)
                if kind == "corrupt" and not _may_be_a_store(self.path):
                    # a file of the user's (notes, a config) that telemetry.path names by mistake: it
                    # was renamed away and replaced by a database; it is theirs, so it stays
                    self._degrade(f"{self.path} is not a telemetry store (no SQLite database); heedls leaves "
                                  "it as it is (set telemetry.path to another file)")
                    return
                # A file we may read but not write is the user's history, intact: it stays where it
                # is and events are kept in memory ("read-only location"). Only one that cannot
                # even be read is moved aside.
                unreadable = kind == "unavailable" and self.path.exists() and not os.access(self.path, os.R_OK)
                if attempt == 0 and (kind in ("corrupt", "locked") or unreadable):
                    reason = "unreadable" if unreadable else kind
                    if self._set_aside(f"{reason}: {exc}"):
                        continue
                self._degrade(f"cannot open {self.path} ({exc})")
                return

    def _follow_the_path(self) -> None:
        """The store file removed (the user deleted it, or its folder) or replaced while the server
        writes: SQLite went on writing into the removed file, and every later event was lost with it
        when the server closed, silently. Checked before each batch (one stat); the rows go to a
        new store at the path (or to the file that replaced it), with a warning."""
        if self._conn is None or self._identity is None:
            return
        now = _identity(self.path)
        if now == self._identity:
            return
        # Its WAL is still at the path (SQLite leaves it there when the file is gone): emptied into
        # the file written so far, so that the store opened next does not take its pages for its own.
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._close_connection()
        self._identity = None
        what = "removed" if now is None else "replaced by another file"
        self._open()
        if self._conn is not None:
            self._warn(f"telemetry: {self.path} was {what} while heedls was writing to it; "
                       "the events from now on go to the store at that path")

    def _set_aside(self, reason: str) -> bool:
        """Move a bad database (and its WAL) out of the way; True when the path is free again."""
        self._close_connection()
        target = self.path.with_name(f"{self.path.name}.corrupt-{_stamp()}")
        try:
            if self.path.exists():
                os.replace(self.path, target)
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists():
                os.replace(wal, target.with_name(target.name + "-wal"))
            shm = self.path.with_name(self.path.name + "-shm")
            if shm.exists():
                shm.unlink()
        except OSError as exc:
            self._warn(f"telemetry: {self.path} is {reason.split(':')[0]} and cannot be moved aside ({exc})")
            return False
        self.set_aside.append(target)
        self._warn(
            f"telemetry: {self.path} was {reason}; moved aside to {target.name} and started a new store"
        )
        return True

    def _degrade(self, why: str) -> None:
        self.state = "degraded"
        self._next_retry = time.monotonic() + self.retry_interval_s
        self._warn(
            f"telemetry: {why}; events are kept in memory (up to {self._buffer.maxlen}) and writing is retried",
            once="degraded",
        )

    def _buffer_rows(self, rows: list[Row]) -> None:
        with self._buffer_lock:
            room = (self._buffer.maxlen or 0) - len(self._buffer)
            overflow = max(0, len(rows) - room)
            if overflow:
                self.dropped += overflow
                self._warn(
                    f"telemetry: in-memory buffer full; dropping the oldest events ({self.path} is not writable)",
                    once="dropping",
                )
            self._buffer.extend(rows)

    # -- writing --------------------------------------------------------------------------------
    def _write(self, batch: list[Row], force_retry: bool = False) -> None:
        was_degraded = self.state == "degraded"
        if self.state == "degraded":
            due = force_retry or time.monotonic() >= self._next_retry
            if not due:
                self._buffer_rows(batch)
                return
            if self._conn is None:
                self._open()
                if self._conn is None:
                    self._buffer_rows(batch)
                    self._next_retry = time.monotonic() + self.retry_interval_s
                    return
        elif self._conn is None:
            self._buffer_rows(batch)
            return
        with self._buffer_lock:
            rows = list(self._buffer) + batch
            self._buffer.clear()
        if not rows:
            return
        self._follow_the_path()
        if self._conn is None:  # the file was removed and no new one could be made
            self._buffer_rows(rows)
            return
        done = 0
        repaired = False
        # One transaction per batch; a backlog (after an outage) goes in batch-sized transactions
        # so that a nearly full disk still takes what fits.
        while done < len(rows):
            chunk = rows[done : done + self.batch_size]
            try:
                if self._conn is None:
                    raise sqlite3.OperationalError("no connection")
                with self._conn:
                    self._conn.executemany(
                        "INSERT INTO events(id, ts, recorded, data) VALUES (?, ?, ?, ?)",
                        [(ident, ts, recorded, encode_data(data)) for ident, ts, recorded, data in chunk],
                    )
            except (sqlite3.Error, _Corrupt) as exc:
                problem: BaseException = exc
                kind = classify(exc)
                if not repaired and kind in ("corrupt", "locked") and self._set_aside(f"{kind}: {exc}"):
                    repaired = True
                    try:
                        self._conn = self._connect()
                        continue
                    except (sqlite3.Error, _Corrupt) as again:
                        problem = again
                self._buffer_rows(rows[done:])
                if kind != "unavailable":
                    # a locked/corrupt file we could not replace: reopen on the next retry
                    self._close_connection()
                self._degrade(f"cannot write to {self.path} ({problem})")
                return
            done += len(chunk)
            self.written += len(chunk)
        if was_degraded:
            self._warn(f"telemetry: writing to {self.path} works again; {len(rows)} buffered events saved")
            self._warned.discard("degraded")
            self._warned.discard("dropping")
        self.state = "ok"
        self._keep_within_cap()

    def _keep_within_cap(self) -> None:
        """After a committed write: past `max_size_mb`, the oldest suggestions make room; without a
        cap, one notice once the store passes SIZE_NOTICE_MB. A failure here loses nothing (the
        rows are written): it is a warning, and the next batch tries again."""
        if self._conn is None:
            return
        try:
            if self.max_size_mb > 0:
                trimmed = trim_to_cap(self._conn, self.max_size_mb)
                if trimmed is not None:
                    self.trimmed += trimmed.suggestions
                    freed = shrink_if_oversized(self._conn, self.max_size_mb)
                    if freed == SHRINK_SKIPPED:
                        self._warn(
                            f"telemetry: {self.path} stays at {file_bytes(self._conn) / MIB:.0f} MB on disk (its "
                            "free space is reused): a store this large from before 2026-12-02 cannot give it back without "
                            "locking the file for seconds. With no editor open, `sqlite3 "
                            f"'{self.path}' 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM'` does, and from then on "
                            "it gives space back by itself",
                            once="shrink-skipped",
                        )
                    elif freed:
                        log.info("telemetry: %s gave %.1f MB back to the disk", self.path, freed / MIB)
                    self._warn(
                        f"telemetry: {self.path} reached its size cap ({self.max_size_mb:g} MB, "
                        f"telemetry.max_size_mb): {trimmed_phrase(trimmed.suggestions, trimmed.up_to_ts)} were "
                        "removed to make room, and the oldest will be whenever it fills "
                        "again (export what you want to keep: `heedls telemetry export`)",
                        once="trimmed",
                    )
            elif "size" not in self._warned and live_bytes(self._conn) > SIZE_NOTICE_MB * MIB:
                self._warn(
                    f"telemetry: {self.path} holds more than {SIZE_NOTICE_MB:g} MB of events; "
                    "set telemetry.max_size_mb to keep it within a size (the oldest suggestions make room)",
                    once="size",
                )
        except sqlite3.Error as exc:
            self._warn(f"telemetry: could not keep {self.path} within its size cap ({_brief(exc)}); retried "
                       "after the next write", once="trim-failed")
