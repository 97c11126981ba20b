"""Optional push of events to a team's HTTP endpoint.

Each push sends the store rows appended since the last successful push to that endpoint, in batches:
`POST <endpoint>` with `{"schema": "heedls.suggestion/1", "privacy": "full"|"nocode", "events": [...]}`
(`Content-Type: application/json`; `Authorization: Bearer $HEEDLS_TELEMETRY_TOKEN` when that variable
is set). Within a batch only the newest snapshot of each suggestion is sent. A suggestion whose state
changes after it was pushed (its outcome or persistence became known) is sent again with the new
state, so the receiver should upsert by `id`; no store row is ever sent twice.

The cursor (the last pushed row `seq`, per endpoint) lives in the store's own `meta` table, so it
moves with the store and starts over if the store is replaced. Failures: connection errors, 408,
429 and 5xx are retried with exponential backoff (honouring `Retry-After`); other 4xx stop the push
(nothing more is sent, the cursor stays where it was) and are reported. An endpoint that is not an
http(s) URL fails at once. Rows that are not events (undecompressable, not JSON, no id/session/ts)
are skipped and counted (`PushResult.skipped`), never sent. Payloads are strict JSON: NaN and
Infinity are sent as null. `push()` logs nothing: the caller reports `PushResult.error`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from heedls.server.events import SCHEMA, SuggestionEvent
from heedls.server.telemetry.export import PrivacyLevel, Skipped, UnreadableRow, dumps, parse_row, to_record

TOKEN_ENV = "HEEDLS_TELEMETRY_TOKEN"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class PushResult:
    endpoint: str
    sent: int = 0
    batches: int = 0
    retries: int = 0
    last_seq: int = 0
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    unreadable: Skipped = field(default_factory=Skipped)

    @property
    def skipped(self) -> int:
        return self.unreadable.count

    def to_dict(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "sent": self.sent,
            "batches": self.batches,
            "retries": self.retries,
            "last_seq": self.last_seq,
            "skipped": self.skipped,
            "error": self.error,
        }


def _cursor_key(endpoint: str) -> str:
    return f"push:{endpoint}"


def _ensure_meta(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def read_cursor(conn: sqlite3.Connection, endpoint: str) -> int:
    _ensure_meta(conn)
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_cursor_key(endpoint),)).fetchone()
    return int(row[0]) if row else 0


def _write_cursor(conn: sqlite3.Connection, endpoint: str, seq: int) -> None:
    with conn:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (_cursor_key(endpoint), str(seq)),
        )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def endpoint_problem(endpoint: str) -> str | None:
    """Why `endpoint` cannot be posted to (not a URL, not http/https, no host), or None."""
    try:
        url = httpx.URL(endpoint)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        return f"invalid endpoint {endpoint!r}: {exc}"
    if url.scheme not in ("http", "https") or not url.host:
        return f"invalid endpoint {endpoint!r}: expected an http:// or https:// URL with a host"
    return None


def _post(
    client: httpx.Client,
    endpoint: str,
    payload: bytes,
    headers: dict[str, str],
    result: PushResult,
    max_retries: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> bool:
    delay = backoff_s
    for attempt in range(max_retries + 1):
        wait: float | None = None
        try:
            response = client.post(endpoint, content=payload, headers=headers)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:  # retrying cannot help
            result.error = f"{endpoint}: {exc}; not retrying"
            return False
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= response.status_code < 300:
                return True
            problem = f"HTTP {response.status_code}"
            if response.status_code not in RETRY_STATUS:
                result.error = f"{endpoint} refused the events ({problem}); not retrying"
                return False
            wait = _retry_after(response)
        result.errors.append(problem)
        if attempt == max_retries:
            result.error = f"{endpoint} failed {max_retries + 1} times (last: {problem}); will resume from here next time"
            return False
        result.retries += 1
        sleep(min(60.0, wait if wait is not None else delay))
        delay *= 2
    return False


def push(
    store_path: Path | str,
    endpoint: str,
    privacy: PrivacyLevel = "full",
    *,
    batch_size: int = 500,
    max_retries: int = 4,
    backoff_s: float = 0.5,
    timeout_s: float = 10.0,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PushResult:
    """Send every row appended since the last push to `endpoint`; never raises for network trouble."""
    result = PushResult(endpoint=endpoint)
    path = Path(store_path)
    if not endpoint:
        result.error = "no endpoint configured ([tool.heedls.telemetry] push_endpoint or --endpoint)"
        return result
    problem = endpoint_problem(endpoint)
    if problem is not None:
        result.error = problem
        return result
    if not path.exists():
        return result
    headers = {"Content-Type": "application/json", "User-Agent": "heedls-telemetry"}
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    owned = client is None
    http = client or httpx.Client(timeout=timeout_s)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, timeout=10.0)
        cursor = read_cursor(conn, endpoint)
        result.last_seq = cursor
        while True:
            rows = conn.execute(
                "SELECT seq, id, CAST(data AS BLOB), typeof(data) = 'blob' FROM events"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (cursor, batch_size),
            ).fetchall()
            if not rows:
                break
            latest: dict[str, tuple[int, bytes, bool]] = {}
            for seq, ident, data, compressed in rows:
                latest.pop(ident, None)  # keep append order of each id's newest snapshot
                latest[ident] = (int(seq), data, bool(compressed))
            events = []
            for seq, data, compressed in latest.values():
                try:
                    _text, value = parse_row(data, compressed)
                    events.append(to_record(SuggestionEvent.from_dict(value), privacy))
                except UnreadableRow as exc:
                    result.unreadable.add(seq, str(exc))
                except (ValueError, TypeError) as exc:
                    result.unreadable.add(seq, f"not an event ({exc})")
            if events:
                payload = dumps({"schema": SCHEMA, "privacy": privacy, "events": events}).encode("utf-8")
                if not _post(http, endpoint, payload, headers, result, max_retries, backoff_s, sleep):
                    break
                result.sent += len(events)
                result.batches += 1
            cursor = int(rows[-1][0])
            _write_cursor(conn, endpoint, cursor)
            result.last_seq = cursor
    except sqlite3.Error as exc:
        result.error = f"cannot read {path}: {exc}"
    finally:
        if conn is not None:
            conn.close()
        if owned:
            http.close()
    return result
