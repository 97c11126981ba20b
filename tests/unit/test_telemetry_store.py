"""The telemetry store: append-only snapshots, latest row per id, batching off the caller's thread."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from heedls.server.config import TelemetryConfig
from heedls.server.events import SuggestionEvent, read_jsonl, write_jsonl
from heedls.server.telemetry.paths import default_store_path, store_path, workspace_key
from heedls.server.telemetry.store import TelemetryStore, count_events, read_events


def event(i: int, **kw: object) -> SuggestionEvent:
    base: dict[str, object] = {
        "id": f"s-{i}", "session": "sess", "ts": 1_700_000_000.0 + i, "language": "python", "file": "pkg/mod.py",
        "prefix": f"def f{i}(x):\n    ", "suffix": "\n", "suggestion": f"return x + {i}", "latency_ms": 12.5,
    }  # fmt: skip
    base.update(kw)
    return SuggestionEvent(**base)  # type: ignore[arg-type]


def rows(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT id, data FROM events ORDER BY seq")]
    finally:
        conn.close()


def test_paths_per_workspace_and_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    pa = default_store_path(a)
    assert pa.parent.parent == tmp_path / "data" / "workspaces"
    assert pa.name == "events.sqlite3"
    assert pa != default_store_path(b)
    # the same directory reached another way is the same workspace
    assert default_store_path(a / ".." / "a") == pa
    assert len(workspace_key(a)) == 16
    assert store_path(a, TelemetryConfig(path="tele/ev.db")) == a / "tele/ev.db"
    assert store_path(a, TelemetryConfig(path=str(tmp_path / "x.db"))) == tmp_path / "x.db"
    assert store_path(a, TelemetryConfig()) == pa


def test_latest_snapshot_per_id_and_append_only(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    with TelemetryStore(path) as store:
        e = event(1)
        store.record(e)
        e.shown = True
        store.record(e)
        e.outcome = "accepted"
        e.decision_ms = 800.0
        store.record(e)
        store.record(event(2, shown=True, outcome="rejected"))
        assert store.flush()
        got = {ev.id: ev for ev in store.iter_events()}
        assert store.count() == 2
    assert got["s-1"].outcome == "accepted" and got["s-1"].shown and got["s-1"].decision_ms == 800.0
    assert got["s-2"].outcome == "rejected"
    # every state change is its own row; nothing was overwritten
    assert [r[0] for r in rows(path)] == ["s-1", "s-1", "s-1", "s-2"]
    assert count_events(path) == 2
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_record_takes_a_snapshot(tmp_path: Path) -> None:
    with TelemetryStore(tmp_path / "ev.sqlite3", batch_interval_s=5.0) as store:
        e = event(1)
        store.record(e)
        e.outcome = "rejected"  # mutated after record, before the batch is written
        store.flush()
        first = rows(store.path)[0][1]
    assert '"outcome":null' in first


def test_since_filters_on_event_time(tmp_path: Path) -> None:
    with TelemetryStore(tmp_path / "ev.sqlite3") as store:
        for i in range(10):
            store.record(event(i))
        store.flush()
        assert [e.id for e in store.iter_events(since=1_700_000_005.0)] == [f"s-{i}" for i in range(5, 10)]


def test_full_batches_are_written_without_waiting_and_the_rest_on_flush(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    with TelemetryStore(path, batch_size=50, batch_interval_s=30.0) as store:
        assert store.wait_ready()
        assert store._thread is not threading.current_thread()
        for i in range(120):
            store.record(event(i))
        deadline = time.monotonic() + 10
        while len(rows(path)) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        # two full batches went out at once; the partial third waits for its interval (30 s) ...
        assert len(rows(path)) == 100
        # ... or for a flush
        assert store.flush()
        assert len(rows(path)) == 120
        assert store.written == 120


def test_close_flushes_and_late_records_are_dropped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    store = TelemetryStore(path, batch_interval_s=30.0)
    for i in range(5):
        store.record(event(i))
    store.close()
    assert len(rows(path)) == 5
    store.record(event(99))
    assert any("after close" in w for w in store.warnings)
    assert store.status()["state"] == "closed"


def test_close_writes_a_backlog_that_takes_longer_than_its_timeout(tmp_path: Path) -> None:
    """A burst of events (a script, a test, an importer) queued faster than they are written: the
    timeout is for a writer that is stuck, not for one that is busy. It used to be a deadline, and
    the rest of the queue died with the process (73,000 of 100,000 events in one run)."""
    path = tmp_path / "ev.sqlite3"
    store = TelemetryStore(path)
    for i in range(40_000):
        store.record(event(i, prefix=f"# {i:06d}\n" * 60))
    started = time.monotonic()
    store.close(timeout=1.0)
    assert time.monotonic() - started > 1.0  # the backlog did outlast the timeout (2.4 s here)
    assert count_events(path) == 40_000 and store.status()["state"] == "closed"


def test_close_gives_up_on_a_writer_that_makes_no_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = TelemetryStore(tmp_path / "ev.sqlite3")
    assert store.wait_ready()
    release = threading.Event()
    monkeypatch.setattr(store, "_write", lambda *a, **k: release.wait(30))  # a disk that hangs
    store.record(event(1))
    started = time.monotonic()
    store.close(timeout=0.3)
    try:
        assert time.monotonic() - started < 3.0
    finally:
        release.set()


def test_exported_jsonl_round_trips_through_the_schema_reader(tmp_path: Path) -> None:
    originals = [
        event(i, gate={"stage1": 0.4, "stage2": 0.7, "threshold": 0.2, "model_version": "m1"})
        for i in range(20)
    ]
    originals[3].extra["features"] = {"prefix_len": 12}
    with TelemetryStore(tmp_path / "ev.sqlite3") as store:
        for e in originals:
            store.record(e)
        store.flush()
        write_jsonl(store.iter_events(), tmp_path / "out.jsonl")
    back = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [e.to_dict() for e in back] == [e.to_dict() for e in originals]


def test_reader_on_missing_store_yields_nothing(tmp_path: Path) -> None:
    assert list(read_events(tmp_path / "nope.sqlite3")) == []
    assert count_events(tmp_path / "nope.sqlite3") == 0


def test_open_store_follows_config_and_delivers_warnings_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from heedls.server.telemetry.service import open_store

    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    assert open_store(tmp_path, TelemetryConfig(enabled=False)) is None

    async def scenario() -> tuple[list[tuple[str, int]], Path]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, int]] = []
        bad = tmp_path / "bad.sqlite3"
        bad.write_bytes(b"not a database at all" * 100)
        store = open_store(
            tmp_path, TelemetryConfig(path=str(bad)), lambda m: seen.append((m, threading.get_ident())), loop
        )
        assert store is not None
        store.record(event(1))
        await asyncio.to_thread(store.flush)
        await asyncio.sleep(0.05)
        store.close()
        return seen, store.path

    seen, path = asyncio.run(scenario())
    assert path == tmp_path / "bad.sqlite3"
    assert len(seen) == 1 and "moved aside" in seen[0][0]
    assert seen[0][1] == threading.get_ident()  # delivered on the loop's thread, not the writer's
    default = open_store(tmp_path, TelemetryConfig())
    assert default is not None and default.path == default_store_path(tmp_path)
    default.close()


def test_large_rows_are_compressed_and_read_back_identically(tmp_path: Path) -> None:
    big = event(1, prefix="def f(x):\n    return x\n" * 400)
    with TelemetryStore(tmp_path / "ev.sqlite3") as store:
        store.record(big)
        store.record(event(2))
        store.flush()
        (got_big, got_small) = list(store.iter_events())
    assert got_big.to_dict() == big.to_dict() and got_small.id == "s-2"
    conn = sqlite3.connect(tmp_path / "ev.sqlite3")
    kinds = [r[0] for r in conn.execute("SELECT typeof(data) FROM events ORDER BY seq")]
    size = conn.execute("SELECT length(data) FROM events WHERE seq = 1").fetchone()[0]
    conn.close()
    assert kinds == ["blob", "text"]
    assert size < len(big.to_json()) / 5


def test_nocode_store_never_writes_code(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    with TelemetryStore(path, privacy="nocode") as store:
        store.record(
            event(1, prefix="def very_private_name():\n    ", suggestion="return secret_token_value")
        )
        store.flush()
        (got,) = list(store.iter_events())
    assert got.prefix is None and got.suggestion is None and got.extra["suggestion_len"] == 25
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"very_private_name" not in raw and b"secret_token_value" not in raw


def test_the_database_is_only_touched_on_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import heedls.server.telemetry.store as store_mod

    threads: list[str] = []
    real_connect = sqlite3.connect

    def spy(*args: object, **kwargs: object) -> sqlite3.Connection:
        threads.append(threading.current_thread().name)
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_mod.sqlite3, "connect", spy)
    store = TelemetryStore(tmp_path / "ev.sqlite3")
    for i in range(50):
        store.record(event(i))
    assert store.flush()
    store.close()
    assert threads == ["heedls-telemetry-writer"]


def test_an_export_in_progress_does_not_block_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    with TelemetryStore(path, lock_timeout_s=1.0) as store:
        for i in range(3000):
            store.record(event(i))
        store.flush()
        reader = read_events(path)
        first = [next(reader) for _ in range(100)]  # a read transaction is now open
        for i in range(3000, 3500):
            store.record(event(i))
        assert store.flush()
        assert store.state == "ok" and not store.set_aside  # the writer was not locked out
        rest = list(reader)
        # the reader saw one consistent snapshot: the 3000 events that existed when it started
        assert len(first) + len(rest) == 3000
        assert store.count() == 3500
