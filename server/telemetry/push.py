"""Optional push of events to a team's HTTP endpoint.

Each push sends the store rows appended since the last successful push to that endpoint, in batches:
`POST <endpoint>` with `{"schema": "heedls.suggestion/1", "privacy": "full"|"nocode", "events": [...]}`
(`Content-Type: application/json`; `Authorization: Bearer $HEEDLS_TELEMETRY_TOKEN` when that variable
is set). Within a batch only the newest snapshot of each suggestion is sent. A suggestion whose state
changes after it was pushed (its outcome or persistence became known) is sent again with the new
state, so the receiver should upsert by `id`; no store row is ever sent twice.

The cursor (the last pushed row `seq`, per endpoint) lives in the store's own `meta` table, so it
moves with the store and starts over if the store is replaced. Failures: connection errors, 408,
425, 429, 5xx and an attempt that does not complete within its deadline (`deadline_s`, the whole
request: a trickling answer is cut off) are retried with exponential backoff (honouring
`Retry-After`, in seconds or as an HTTP-date); 413 halves the batch (down to one row, which is an
error naming it if still too large); a redirect (3xx) is not followed and is reported with its
`Location` (the token never goes to another host); other 4xx stop the push (nothing more is sent,
the cursor stays where it was) and are reported. An endpoint that is not an http(s) URL fails at
once; a store that does not exist is an error ("no telemetry recorded yet"). Rows that are not events (undecompressable, not JSON, no id/session/ts)
are skipped and counted (`PushResult.skipped`), never sent. Payloads are strict JSON: NaN and
Infinity are sent as null. Rows appended after the cursor that the size cap removed before this push
read them are counted (`PushResult.removed_unsent`: the gaps in `seq`). `push()` logs nothing: the caller reports `PushResult.error`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

import httpx
from heedls.server.events import SCHEMA, SuggestionEvent
from heedls.server.telemetry.export import PrivacyLevel, Skipped, UnreadableRow, dumps, parse_row, to_record
from heedls.server.telemetry.store import classify

TOKEN_ENV = "HEEDLS_TELEMETRY_TOKEN"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
TOO_LARGE = 413
# The most of an answer's body push reads: it uses the status and headers only.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass
class PushResult:
    endpoint: str
    sent: int = 0
    batches: int = 0
    retries: int = 0
    last_seq: int = 0
    # store rows appended after the cursor and removed (by the size cap) before this push read them:
    # the gaps in `seq`, which only grows and is never reused (retention keeps the last row)
    removed_unsent: int = 0
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
            "removed_unsent": self.removed_unsent,
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


def _retry_after(response: httpx.Response, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds (`120`) or an HTTP-date (`Wed, 21
    Oct 2015 07:28:00 GMT`, measured from `now()`); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


class _Deadline(Exception):
    """The whole request (connect, send, answer) did not complete within the attempt's deadline."""


def _post_within(
    client: httpx.Client, endpoint: str, payload: bytes, headers: dict[str, str], deadline_s: float
) -> httpx.Response:
    """`client.post`, bounded as a whole: httpx's timeouts apply to each read or write, so an endpoint
    that trickles its answer a byte at a time would hold the push for as long as it keeps going.
    The request runs on a daemon thread; past `deadline_s` it is abandoned (the thread ends when the
    connection does, or with the process) and `_Deadline` is raised."""
    box: dict[str, httpx.Response | BaseException] = {}
    abandoned = threading.Event()

    def send() -> None:
        try:
            # Streamed, and read no further than MAX_ANSWER_BYTES: push needs the status and the
            # headers only, and `client.post` read the whole body into memory, however long (an
            # endpoint answering with an endless body took all 23 GB of RAM in seconds).
            with client.stream("POST", endpoint, content=payload, headers=headers) as response:
                read = 0
                for chunk in response.iter_bytes():
                    read += len(chunk)
                    if read >= MAX_ANSWER_BYTES or abandoned.is_set():
                        break
            box["response"] = response
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=send, name="heedls-push", daemon=True)
    worker.start()
    worker.join(deadline_s)
    if worker.is_alive():
        abandoned.set()  # it stops at its next chunk (each read is bounded by the client's timeout)
        raise _Deadline(f"no complete answer within {deadline_s:g} s")
    error = box.get("error")
    if isinstance(error, BaseException):
        raise error
    response = box["response"]
    assert isinstance(response, httpx.Response)
    return response


def endpoint_problem(endpoint: str) -> str | None:
    """Why `endpoint` cannot be posted to (not a URL, not http/https, no host), or None."""
    try:
        url = httpx.URL(endpoint)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        return f"invalid endpoint {endpoint!r}: {exc}"
    if url.scheme not in ("http", "https") or not url.host:
        return f"invalid endpoint {endpoint!r}: expected an http:// or https:// URL with a host"
    return None


Posted = Literal["sent", "too large", "failed"]


def _post(
    client: httpx.Client,
    endpoint: str,
    payload: bytes,
    headers: dict[str, str],
    result: PushResult,
    max_retries: int,
    backoff_s: float,
    sleep: Callable[[float], None],
    deadline_s: float,
) -> Posted:
    """POST one batch with retries: "sent" (2xx), "too large" (413: the caller splits the batch), or
    "failed" (`result.error` says why)."""
    delay = backoff_s
    for attempt in range(max_retries + 1):
        wait: float | None = None
        try:
            response = _post_within(client, endpoint, payload, headers, deadline_s)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:  # retrying cannot help
            result.error = f"{endpoint}: {exc}; not retrying"
            return "failed"
        except _Deadline as exc:
            problem = f"timeout: {exc}"
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            status = response.status_code
            if 200 <= status < 300:
                return "sent"
            problem = f"HTTP {status}"
            if status == TOO_LARGE:
                result.errors.append(problem)
                return "too large"
            if 300 <= status < 400:
                # Not followed (httpx does not by default): the token must never go to a host the
                # user did not name, and a POST body is not re-sent blindly.
                target = response.headers.get("location")
                where = f"a redirect to {target}" if target else "a redirect with no Location"
                result.error = (
                    f"{endpoint} answered HTTP {status}, {where}; push does not follow redirects"
                    " (so the token is never sent to another host): configure the final URL as the endpoint"
                )
                return "failed"
            if status not in RETRY_STATUS:
                result.error = f"{endpoint} refused the events ({problem}); not retrying"
                return "failed"
            wait = _retry_after(response)
        result.errors.append(problem)
        if attempt == max_retries:
            result.error = f"{endpoint} failed {max_retries + 1} times (last: {problem}); will resume from here next time"
            return "failed"
        result.retries += 1
        sleep(min(60.0, wait if wait is not None else delay))
        delay *= 2
    return "failed"


def push(
    store_path: Path | str,
    endpoint: str,
    privacy: PrivacyLevel = "full",
    *,
    batch_size: int = 500,
    max_retries: int = 4,
    backoff_s: float = 0.5,
    timeout_s: float = 10.0,
    deadline_s: float = 60.0,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    send_token: bool = True,
) -> PushResult:
    """Send every row appended since the last push to `endpoint`; never raises for network trouble.

    `batch_size` store rows per POST; while the endpoint answers 413 the batch is halved (down to
    one row) and the smaller size is kept for the rest of this push. `timeout_s` bounds each
    connect/read/write, `deadline_s` each attempt as a whole. `send_token`: attach the token of
    HEEDLS_TELEMETRY_TOKEN (the caller decides whether the user named this endpoint). Each batch
    carries a `batch_id` (and an `Idempotency-Key` header), the same on every retry of it: a
    receiver drops a batch it already has when a retry follows an answer that came too late."""
    result = PushResult(endpoint=endpoint)
    path = Path(store_path)
    if not endpoint:
        result.error = "no endpoint configured ([tool.heedls.telemetry] push_endpoint or --endpoint)"
        return result
    problem = endpoint_problem(endpoint)
    if problem is not None:
        result.error = problem
        return result
    if batch_size < 1:
        result.error = f"the batch size must be at least 1 row, got {batch_size}"
        return result
    if not path.exists():
        result.error = f"no telemetry recorded yet at {path}; nothing pushed"
        return result
    headers = {"Content-Type": "application/json", "User-Agent": "heedls-telemetry"}
    token = os.environ.get(TOKEN_ENV, "") if send_token else ""
    if token:
        headers["Authorization"] = f"Bearer {token}"
    owned = client is None
    http = client or httpx.Client(timeout=timeout_s)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(path, timeout=10.0)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone() is None:
            result.error = f"{path} is not a heedls telemetry store (no events table); nothing pushed"
            return result
        try:  # where this push got to is kept in the store: if it cannot be, send nothing
            cursor = read_cursor(conn, endpoint)
            _write_cursor(conn, endpoint, cursor)
        except sqlite3.Error as exc:
            if classify(exc) == "corrupt":  # a writable copy would not help: say what export says
                result.error = f"cannot read {path}: {exc}; nothing pushed"
                return result
            result.error = (f"cannot record push progress in {path} ({exc}); nothing pushed: every push would "
                            "send the same events again (push from a copy that can be written)")
            return result
        result.last_seq = cursor
        origin = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        size = batch_size
        while True:
            rows = conn.execute(
                "SELECT seq, id, CAST(data AS BLOB), typeof(data) = 'blob' FROM events"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (cursor, size),
            ).fetchall()
            if not rows:
                break
            latest: dict[str, tuple[int, bytes, bool]] = {}
            for seq, ident, data, compressed in rows:
                latest.pop(ident, None)  # keep append order of each id's newest snapshot
                latest[ident] = (int(seq), data, bool(compressed))
            events = []
            unreadable: list[tuple[int, str]] = []  # counted once the batch is done with
            for seq, data, compressed in latest.values():
                try:
                    _text, value = parse_row(data, compressed)
                    events.append(to_record(SuggestionEvent.from_dict(value), privacy))
                except UnreadableRow as exc:
                    unreadable.append((seq, str(exc)))
                except (ValueError, TypeError) as exc:
                    unreadable.append((seq, f"not an event ({exc})"))
            if events:
                batch_id = f"{origin}-{rows[0][0]}-{rows[-1][0]}"  # this store's rows first..last
                payload = dumps({"schema": SCHEMA, "privacy": privacy, "batch_id": batch_id,
                                 "events": events}).encode("utf-8")
                posted = _post(
                    http, endpoint, payload, {**headers, "Idempotency-Key": batch_id}, result, max_retries,
                    backoff_s, sleep, deadline_s,
                )
                if posted == "too large" and len(rows) > 1:
                    size = max(1, len(rows) // 2)  # the same rows again, fewer at a time
                    continue
                if posted == "too large":
                    seq, ident = int(rows[0][0]), rows[0][1]
                    result.error = (
                        f"{endpoint} refused store row {seq} (suggestion {ident}) as too large even on its own"
                        f" (HTTP 413, {len(payload)} bytes); nothing more sent, the next push starts from it"
                        " (raise the endpoint's size limit; --privacy nocode sends no code text)"
                    )
                    break
                if posted != "sent":
                    break
                result.sent += len(events)
                result.batches += 1
            for seq, reason in unreadable:
                result.unreadable.add(seq, reason)
            result.removed_unsent += int(rows[-1][0]) - cursor - len(rows)
            cursor = int(rows[-1][0])
            try:
                _write_cursor(conn, endpoint, cursor)
            except sqlite3.Error as exc:
                result.error = f"cannot record push progress in {path} ({exc}); the next push sends this batch again"
                break
            result.last_seq = cursor
    except sqlite3.Error as exc:
        result.error = f"cannot read {path}: {exc}"
    finally:
        if conn is not None:
            conn.close()
        if owned:
            http.close()
    return result
