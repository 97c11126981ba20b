"""The store's size cap (`telemetry.max_size_mb`): past it, the oldest suggestions make room, whole,
and the store, its exports and its reports say so."""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from heedls.server.cli import app
from heedls.server.config import TelemetryConfig, load
from heedls.server.events import SuggestionEvent
from heedls.server.telemetry import retention
from heedls.server.telemetry.push import push
from heedls.server.telemetry.retention import (
    MIB,
    TRIM_TO,
    live_bytes,
    shrink_if_oversized,
    trim_to_cap,
    trimmed_so_far,
)
from heedls.server.telemetry.service import open_store
from heedls.server.telemetry.store import TelemetryStore, read_events
from typer.testing import CliRunner


def event(i: int, size: int = 2000, outcome: str | None = None) -> SuggestionEvent:
    # random text: it does not compress, so each row takes about `size` bytes on disk
    return SuggestionEvent(
        id=f"e{i:06d}", session="s", ts=1_700_000_000.0 + i, language="python", file="m.py",
        prefix=secrets.token_hex(size // 2), suffix="", suggestion=f"y = {i}", shown=True, outcome=outcome,
    )  # fmt: skip


def filled(path: Path, count: int, **options: float) -> TelemetryStore:
    """A store at `path` with events 0 … count - 1 recorded, then closed (all written)."""
    with TelemetryStore(path, **options) as store:  # type: ignore[arg-type]
        for i in range(count):
            store.record(event(i))
    return store


def rows_per_id(path: Path) -> Counter[str]:
    with closing(sqlite3.connect(path)) as conn:
        return Counter(row[0] for row in conn.execute("SELECT id FROM events"))


def used_mb(path: Path) -> float:
    with closing(sqlite3.connect(path)) as conn:
        return live_bytes(conn) / MIB


def test_past_its_cap_the_store_removes_its_oldest_suggestions_and_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    store = TelemetryStore(path, max_size_mb=0.5, batch_size=32)
    try:
        for i in range(1200):  # ~2.4 MB of rows against a 0.5 MB cap
            store.record(event(i))
        store.flush()
        assert store.state == "ok" and store.written == 1200 and store.dropped == 0  # not a failure
        assert store.trimmed > 0
        assert [w for w in store.warnings if "size cap" in w] == store.warnings and len(store.warnings) == 1
        assert "0.5 MB" in store.warnings[0] and "telemetry.max_size_mb" in store.warnings[0]
    finally:
        store.close()
    kept = sorted(e.id for e in read_events(path))
    # the newest, without a gap: what went is the oldest
    assert kept == [f"e{i:06d}" for i in range(1200 - len(kept), 1200)]
    assert 0.5 * TRIM_TO * 0.6 < used_mb(path) <= 0.5 + 32 * 2100 / MIB  # the cap, give or take one batch
    assert store.trimmed == 1200 - len(kept)
    with closing(sqlite3.connect(path)) as conn:
        assert trimmed_so_far(conn) == (1200 - len(kept), 1_700_000_000.0 + 1199 - len(kept))


def test_a_store_that_grew_before_its_cap_gives_the_disk_back(tmp_path: Path) -> None:
    """Setting a cap on a store that is already large shrinks the file itself, not only the data
    in it (SQLite would keep the freed pages for reuse, so the file would stay as large)."""
    path = tmp_path / "events.sqlite3"
    filled(path, 1000, batch_size=64)  # ~2 MB, uncapped
    grown = path.stat().st_size
    assert grown > 1.8 * MIB
    with TelemetryStore(path, max_size_mb=0.5, batch_size=64) as store:
        store.record(event(1000))
    assert store.trimmed > 0
    assert path.stat().st_size <= 0.5 * MIB < grown / 3  # the file, not only its live pages
    kept = sorted(e.id for e in read_events(path))
    assert kept[-1] == "e001000" and kept == [f"e{i:06d}" for i in range(1001 - len(kept), 1001)]


def as_before_2026_12_02(path: Path) -> None:
    """The store as the versions before incremental auto-vacuum created it."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0


def test_a_store_gives_the_disk_back_in_short_transactions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another heedls server on the same store must never wait seconds for the lock (it would take
    the file for one a stranger holds, and set it aside): free pages go back a chunk at a time."""
    path = tmp_path / "events.sqlite3"
    filled(path, 1000, batch_size=64)  # ~2 MB, uncapped
    monkeypatch.setattr(retention, "SHRINK_CHUNK_PAGES", 32)
    statements: list[str] = []
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == retention.INCREMENTAL  # a new store's
        assert trim_to_cap(conn, 0.5) is not None
        conn.set_trace_callback(statements.append)
        freed = shrink_if_oversized(conn, 0.5)
    assert freed > 1.2 * MIB and path.stat().st_size <= 0.5 * MIB
    assert not any("VACUUM" == sql.strip() for sql in statements)
    steps = [sql for sql in statements if "incremental_vacuum(32)" in sql]
    assert len(steps) > 1.2 * MIB / (32 * 4096)  # many short steps, each its own transaction


def test_an_older_store_is_rewritten_once_and_incremental_after(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    filled(path, 1000, batch_size=64)
    as_before_2026_12_02(path)
    with TelemetryStore(path, max_size_mb=0.5, batch_size=64) as store:
        store.record(event(1000))
    assert store.trimmed > 0 and path.stat().st_size <= 0.5 * MIB
    with closing(sqlite3.connect(path)) as conn:  # the rewrite made it incremental
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == retention.INCREMENTAL


def test_an_older_store_too_large_to_rewrite_quickly_keeps_its_size_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.sqlite3"
    filled(path, 1000, batch_size=64)
    as_before_2026_12_02(path)
    grown = path.stat().st_size
    monkeypatch.setattr(retention, "VACUUM_MAX_MB", 0.1)  # its 0.4 MB of live data would take too long
    warnings: list[str] = []
    with TelemetryStore(path, max_size_mb=0.5, batch_size=64, on_warning=warnings.append) as store:
        store.record(event(1000))
    assert store.trimmed > 0
    assert path.stat().st_size >= grown * 0.9  # kept (its free pages are reused)
    assert used_mb(path) <= 0.5
    [note] = [w for w in warnings if "stays at" in w]
    assert "cannot give it back without locking the file for seconds" in note and "VACUUM" in note


WRITER = """
import os, secrets, sys, time
from heedls.server.events import SuggestionEvent
from heedls.server.telemetry.store import TelemetryStore
path, tag, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
while not os.path.exists(go):  # both start together, whenever each got through its imports
    time.sleep(0.01)
store = TelemetryStore(path, max_size_mb=1.0, batch_size=32, batch_interval_s=0.02)
for i in range(count):
    store.record(SuggestionEvent(id=f"{tag}{i:05d}", session=tag, ts=time.time(), language="python",
                                 prefix=secrets.token_hex(1500), suggestion="x", shown=True))
    if i % 40 == 0:
        time.sleep(0.005)  # a server's pace, not one burst: the two interleave
store.close(timeout=60)
print(len(store.set_aside), store.trimmed, store.dropped)
"""


def test_two_servers_share_one_capped_store(tmp_path: Path) -> None:
    """Two heedls servers on one workspace (two editor windows) write and trim the same store:
    neither sets it aside, each keeps its newest events without a gap, and the count of what was
    removed is exact (the trim counts under the write lock: counted before it, both servers
    counted the rows the other removed)."""
    path = tmp_path / "events.sqlite3"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    count = 1500  # ~4.5 MB each against a 1 MB cap
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, str(script), str(path), tag, str(count), str(go)],
                                stdout=subprocess.PIPE, text=True) for tag in ("a", "b")]
    go.touch()
    reports = [w.communicate(timeout=120)[0].split() for w in writers]
    assert all(w.returncode == 0 for w in writers)
    assert [r[0] for r in reports] == ["0", "0"]  # nothing set aside
    assert [r[2] for r in reports] == ["0", "0"]  # nothing dropped
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("events")} <= {
        "events.sqlite3", "events.sqlite3-shm", "events.sqlite3-wal"}  # no events.sqlite3.corrupt-*
    kept = rows_per_id(path)
    assert set(kept.values()) == {1}
    for tag in ("a", "b"):  # (a server slowed down by a loaded machine may keep none: the other's are newer)
        own = sorted(int(i[1:]) for i in kept if i.startswith(tag))
        assert own == list(range(count - len(own), count))  # its newest, no gap
    removed = 2 * count - len(kept)
    with closing(sqlite3.connect(path)) as conn:
        assert trimmed_so_far(conn)[0] == removed == sum(int(r[1]) for r in reports)
    assert used_mb(path) <= 1.0


def test_a_cap_smaller_than_the_store_itself_keeps_the_last_suggestion_and_push_sees_what_follows(
    tmp_path: Path,
) -> None:
    """A cap below the store's own pages (0.02 MB) removed every row, and SQLite then numbered new
    rows from 1 again, behind push's cursor: what followed was never sent. The suggestion written
    last always stays, so the numbering only grows."""
    path = tmp_path / "events.sqlite3"
    with TelemetryStore(path, max_size_mb=0.02, batch_size=4, batch_interval_s=0.01) as store:
        for i in range(20):
            store.record(event(i))
    assert sorted(rows_per_id(path)) == ["e000019"]
    with closing(sqlite3.connect(path)) as conn:
        assert trimmed_so_far(conn) == (19, 1_700_000_000.0 + 18)  # exact: the kept one is not counted
    sent: list[str] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        sent.extend(e["id"] for e in json.loads(request.content)["events"])
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(endpoint))
    assert push(path, "https://telemetry.example.test/ingest", client=client).error is None
    with TelemetryStore(path, max_size_mb=0.02, batch_size=4, batch_interval_s=0.01) as store:
        for i in range(20, 30):
            store.record(event(i))
    assert push(path, "https://telemetry.example.test/ingest", client=client).error is None
    assert sent[0] == "e000019" and "e000029" in sent  # the newest after the trims reached the team


def test_push_says_how_many_rows_the_cap_removed_before_they_were_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A team endpoint that falls behind a capped store loses the oldest unsent rows to the cap:
    push counts them (the gaps in `seq` after its cursor) and says so, never silently."""
    path = tmp_path / "events.sqlite3"
    sent: list[str] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        sent.extend(e["id"] for e in json.loads(request.content)["events"])
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(endpoint))
    url = "https://telemetry.example.test/ingest"
    filled(path, 10)
    first = push(path, url, client=client, batch_size=3)
    assert first.error is None and first.sent == 10 and first.removed_unsent == 0
    # 200 more rows of ~2 kB under a 0.25 MB cap: the cap removes the oldest of them, unsent
    with TelemetryStore(path, max_size_mb=0.25, batch_size=16) as store:
        for i in range(10, 210):
            store.record(event(i))
    kept = set(rows_per_id(path))
    unsent_removed = 200 - len(kept - {f"e{i:06d}" for i in range(10)})
    assert unsent_removed > 0
    second = push(path, url, client=client, batch_size=7)
    assert second.error is None and second.removed_unsent == unsent_removed
    assert second.sent == 200 - unsent_removed and second.to_dict()["removed_unsent"] == unsent_removed
    third = push(path, url, client=client)
    assert third.sent == 0 and third.removed_unsent == 0  # counted once
    # and the command says it
    with TelemetryStore(path, max_size_mb=0.25, batch_size=16) as store:
        for i in range(210, 400):
            store.record(event(i))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("heedls.server.telemetry.push.httpx.Client", lambda **kw: client)
    result = CliRunner().invoke(app, ["telemetry", "push", "--store", str(path), "--endpoint", url])
    assert result.exit_code == 0, result.output
    assert "store rows recorded since the last push" in result.stderr
    assert "removed by the store's size cap (telemetry.max_size_mb) before they could be sent" in result.stderr


def test_in_steady_state_the_file_stays_at_its_cap_and_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    filled(path, 1200, max_size_mb=0.5, batch_size=32)
    with closing(sqlite3.connect(path)) as conn:
        assert shrink_if_oversized(conn, 0.5) == 0  # within twice the cap: its free pages get reused
    assert path.stat().st_size <= 2 * 0.5 * MIB


def test_a_trim_deletes_in_short_transactions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another heedls server on the same store waits for one chunk of a trim, never for all of it
    (a trim of a 434 MB store takes seconds; the lock timeout is 5 s). Each chunk is committed with
    its own count, so the count is right wherever a crash stops the trim."""
    path = tmp_path / "events.sqlite3"
    filled(path, 1000, batch_size=64)  # ~2 MB
    monkeypatch.setattr(retention, "TRIM_CHUNK_ROWS", 50)
    statements: list[str] = []
    with closing(sqlite3.connect(path)) as conn:
        conn.set_trace_callback(statements.append)
        trimmed = trim_to_cap(conn, 0.5)
        assert trimmed is not None and trimmed.suggestions == trimmed.rows > 700
        assert trimmed_so_far(conn)[0] == trimmed.suggestions
    deletes = [i for i, sql in enumerate(statements) if sql.startswith("DELETE FROM events")]
    commits = [i for i, sql in enumerate(statements) if sql == "COMMIT"]
    assert len(deletes) >= trimmed.rows // 50 and len(commits) >= len(deletes)
    # one commit between any two deletes: no transaction holds more than one chunk
    assert all(any(a < c < b for c in commits) for a, b in zip(deletes, deletes[1:]))


def test_a_suggestion_is_removed_with_all_its_snapshots(tmp_path: Path) -> None:
    """The oldest suggestion's later snapshot (its outcome, a persistence checkpoint) does not keep
    a part of it: every suggestion left has all the rows it was recorded with."""
    path = tmp_path / "events.sqlite3"
    store = TelemetryStore(path, max_size_mb=0.25, batch_size=8)
    recorded: Counter[str] = Counter()
    try:
        for i in range(400):
            store.record(event(i))
            recorded[f"e{i:06d}"] += 1
            if i >= 3:  # each suggestion decided three requests later: a second row
                store.record(event(i - 3, outcome="accepted"))
                recorded[f"e{i - 3:06d}"] += 1
        store.flush()
    finally:
        store.close()
    left = rows_per_id(path)
    assert 0 < len(left) < 400
    assert all(count == recorded[ident] for ident, count in left.items()), left
    assert all(e.outcome == "accepted" for e in read_events(path) if e.id <= "e000396")


def test_without_a_cap_nothing_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    store = filled(path, 300, batch_size=32)
    assert len(list(read_events(path))) == 300 and store.trimmed == 0 and not store.warnings


def test_a_store_within_its_cap_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    store = filled(path, 300, max_size_mb=5.0, batch_size=32)
    with closing(sqlite3.connect(path)) as conn:
        assert trim_to_cap(conn, 5.0) is None and trim_to_cap(conn, 0.0) is None
        assert trimmed_so_far(conn) == (0, None)
    assert len(list(read_events(path))) == 300 and not store.warnings


def test_trims_add_up_across_restarts_of_the_server(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    removed = 0
    for start in (0, 600):  # two sessions of the server on one store
        store = TelemetryStore(path, max_size_mb=0.3, batch_size=32)
        try:
            for i in range(start, start + 600):
                store.record(event(i))
        finally:
            store.close()
        removed += store.trimmed
    with closing(sqlite3.connect(path)) as conn:
        count, up_to = trimmed_so_far(conn)
    assert count == removed == 1200 - len(list(read_events(path)))
    assert up_to == 1_700_000_000.0 + count - 1


def test_the_setting_reaches_the_store_and_a_bad_value_falls_back_with_a_warning(tmp_path: Path) -> None:
    config, warnings = load(tmp_path, {"telemetry": {"maxSizeMb": 200}})
    assert config.telemetry.max_size_mb == 200.0 and not warnings
    config, warnings = load(tmp_path, {"telemetry": {"maxSizeMb": -5}})
    assert config.telemetry.max_size_mb == 0.0 and any("maxSizeMb" in w for w in warnings)
    store = open_store(tmp_path, TelemetryConfig(path=str(tmp_path / "e.sqlite3"), max_size_mb=64.0))
    assert store is not None
    try:
        assert store.max_size_mb == 64.0
    finally:
        store.close()


def test_export_and_report_say_what_the_cap_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "events.sqlite3"
    store = filled(path, 400, max_size_mb=0.25, batch_size=16)
    runner = CliRunner()
    for args in (["export", "--store", str(path), "-o", str(tmp_path / "out.jsonl")],
                 ["report", "--json", "--store", str(path)]):
        result = runner.invoke(app, ["telemetry", *args])
        assert result.exit_code == 0, result.stderr
        assert (f"the {store.trimmed} oldest suggestions (created up to 2023-11-" in result.stderr
                and "removed from this store by its size cap" in result.stderr), result.stderr
    kept = len(list(read_events(path)))
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == kept == 400 - store.trimmed
    # and a report read later says it too: in its JSON and on its page
    result = runner.invoke(app, ["telemetry", "report", "--json", "--store", str(path),
                                 "--html", str(tmp_path / "report.html")])
    assert json.loads(result.stdout)["trimmed"] == {"suggestions": store.trimmed,
                                                     "up_to_ts": 1_700_000_000.0 + store.trimmed - 1}
    assert f"the {store.trimmed} oldest suggestions (created up to 2023-11-" in (tmp_path / "report.html").read_text()


def test_a_store_never_trimmed_gets_no_such_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "events.sqlite3"
    with TelemetryStore(path) as store:
        store.record(event(1))
    args = ["telemetry", "export", "--store", str(path), "-o", str(tmp_path / "o.jsonl")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "size cap" not in result.stderr, result.stderr
    result = CliRunner().invoke(app, ["telemetry", "report", "--json", "--store", str(path)])
    assert result.exit_code == 0 and "trimmed" not in json.loads(result.stdout)
