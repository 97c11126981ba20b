"""Fault behaviour of the telemetry store: kill -9, read-only location, corrupt and locked files,
a full disk. The rule everywhere: nothing already committed is lost, at most the in-flight batch is,
the caller is never blocked or crashed, and the user gets one warning."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from heedls.server.events import SuggestionEvent
from heedls.server.telemetry.store import TelemetryStore, read_events


def event(i: int, size: int = 40) -> SuggestionEvent:
    # random text: the store compresses large rows, and the size tests need rows of known size
    return SuggestionEvent(
        id=f"e{i:06d}", session="s", ts=1_700_000_000.0 + i, language="python", file="m.py",
        prefix=secrets.token_hex(size // 2), suffix="", suggestion=f"y = {i}", shown=True,
    )  # fmt: skip


def ids(path: Path) -> list[str]:
    return sorted(e.id for e in read_events(path))


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# -- kill -9 ---------------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from heedls.server.events import SuggestionEvent
    from heedls.server.telemetry.store import TelemetryStore

    store = TelemetryStore(Path(sys.argv[1]), batch_interval_s=0.05, batch_size=64)
    store.wait_ready()
    i = 0
    while True:
        store.record(SuggestionEvent(id=f"e{i:06d}", session="s", ts=1.0 + i, prefix="p" * 200,
                                     suggestion=f"s{i}", shown=True))
        if i % 20 == 0:
            print(f"recorded {i} {time.time():.6f}", flush=True)
        i += 1
        time.sleep(0.0005)
    """
)


def test_kill_9_mid_stream_loses_at_most_the_in_flight_batch(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    progress: list[tuple[int, float]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            _, n, t = line.split()
            progress.append((int(n), float(t)))
            if progress[-1][1] - progress[0][1] >= 2.0:  # kill at a moment the test does not choose
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert progress and progress[-1][1] - progress[0][1] >= 2.0, child.stderr.read() if child.stderr else ""
    # the database is intact after the kill
    assert integrity(path) == "ok"
    present = ids(path)
    # batches commit whole and in order: what is there is an unbroken prefix of what was recorded
    assert present == [f"e{i:06d}" for i in range(len(present))]
    # everything recorded well before the kill (one batch interval + scheduling slack) was committed
    kill_time = progress[-1][1]
    old_enough = [n for n, t in progress if t < kill_time - 0.75]
    assert old_enough
    assert len(present) > max(old_enough)


# -- read-only location ----------------------------------------------------------------------------
@contextlib.contextmanager
def read_only_dir(path: Path) -> Iterator[None]:
    """A directory nobody can create files in: chmod for normal users, the immutable flag for root."""
    path.mkdir(parents=True, exist_ok=True)
    undo: list[str] = []
    if os.geteuid() != 0:
        path.chmod(0o555)
        undo = ["chmod"]
    else:
        done = subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True)
        if done.returncode == 0:
            undo = ["chattr"]
    try:
        probe = path / "probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("cannot make a read-only directory here (root without CAP_LINUX_IMMUTABLE)")
        yield
    finally:
        if "chmod" in undo:
            path.chmod(0o755)
        if "chattr" in undo:
            subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)


def test_read_only_location_keeps_serving_from_memory_and_warns_once(tmp_path: Path) -> None:
    location = tmp_path / "ro"
    with read_only_dir(location):
        warnings: list[str] = []
        store = TelemetryStore(location / "events.sqlite3", retry_interval_s=0.05, on_warning=warnings.append)
        try:
            t0 = time.perf_counter()
            for i in range(300):
                store.record(event(i))
            record_time = time.perf_counter() - t0
            assert store.flush()
            time.sleep(0.2)  # several retry intervals pass
            for i in range(300, 310):
                store.record(event(i))
            assert store.flush()
            assert store.state == "degraded"
            assert store.buffered == 310
            # readers still see everything that was recorded
            assert store.count() == 310
            assert len(warnings) == 1 and "kept in memory" in warnings[0]
            assert record_time < 5.0  # no waiting on the disk in record()
        finally:
            store.close(timeout=5)
    assert not (location / "events.sqlite3").exists()


def test_memory_buffer_is_bounded_and_drops_oldest(tmp_path: Path) -> None:
    location = tmp_path / "ro"
    with read_only_dir(location):
        store = TelemetryStore(location / "events.sqlite3", max_buffered=50)
        try:
            for i in range(120):
                store.record(event(i))
            store.flush()
            assert store.buffered == 50
            assert store.dropped == 70
            assert sorted(e.id for e in store.iter_events()) == [f"e{i:06d}" for i in range(70, 120)]
            assert any("dropping the oldest" in w for w in store.warnings)
        finally:
            store.close(timeout=5)


def test_recovers_when_the_location_becomes_writable(tmp_path: Path) -> None:
    location = tmp_path / "ro"
    with read_only_dir(location):
        store = TelemetryStore(location / "events.sqlite3", retry_interval_s=0.05)
        for i in range(30):
            store.record(event(i))
        store.flush()
        assert store.state == "degraded"
    # the directory is writable again; the next write (after the retry interval) saves the backlog
    time.sleep(0.1)
    for i in range(30, 40):
        store.record(event(i))
    store.flush()
    store.close()
    assert store.state == "closed"
    assert ids(location / "events.sqlite3") == [f"e{i:06d}" for i in range(40)]
    assert any("works again" in w for w in store.warnings)


_WRITE_AS_ANOTHER_USER = textwrap.dedent("""
    import json, sys
    from heedls.server.telemetry.store import TelemetryStore
    from heedls.server.events import SuggestionEvent
    warnings = []
    store = TelemetryStore(sys.argv[1], retry_interval_s=0.05, on_warning=warnings.append)
    for i in range(100, 105):
        store.record(SuggestionEvent(id=f"e{i:06d}", session="s", ts=1.7e9 + i, suggestion="x"))
    store.flush()
    print(json.dumps({"state": store.state, "count": store.count(), "warnings": warnings}))
    store.close(timeout=2)
""")


def test_a_store_file_that_is_readable_but_not_writable_is_kept_as_it_is(tmp_path: Path) -> None:
    """chmod 444 on the store (the directory still writable) is a read-only location, not a
    corrupt file: the history stays in place, new events are kept in memory, one warning."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="heedls-ro-file-"))  # not under pytest's 0700 tmp tree
    try:
        base.chmod(0o777)
        path = base / "events.sqlite3"
        with TelemetryStore(path) as store:
            for i in range(10):
                store.record(event(i))
        for leftover in base.glob("events.sqlite3-*"):
            leftover.unlink()
        path.chmod(0o444)
        command = [sys.executable, "-c", _WRITE_AS_ANOTHER_USER, str(path)]
        if os.geteuid() == 0:  # root writes anything: run the store as nobody
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "HOME": str(base)})
        except FileNotFoundError:
            pytest.skip("setpriv is not installed")
        if done.returncode != 0 and "setpriv" in done.stderr:
            pytest.skip(f"cannot switch user here: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        child = json.loads(done.stdout.strip().splitlines()[-1])
        assert child["state"] == "degraded"
        assert child["count"] == 15  # its readers see the history and what it holds in memory
        assert len(child["warnings"]) == 1 and "kept in memory" in child["warnings"][0]
        assert ids(path) == [f"e{i:06d}" for i in range(10)]
        assert not list(base.glob("*.corrupt-*"))
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


# -- corrupt file ----------------------------------------------------------------------------------
def test_garbage_file_is_set_aside_and_replaced_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    garbage = os.urandom(64 * 1024)
    path.write_bytes(garbage)
    warnings: list[str] = []
    with TelemetryStore(path, on_warning=warnings.append) as store:
        for i in range(10):
            store.record(event(i))
        store.flush()
        assert store.state == "ok"
        assert store.count() == 10
    aside = list(tmp_path.glob("events.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # kept for inspection, untouched
    assert len(warnings) == 1 and "corrupt" in warnings[0] and "moved aside" in warnings[0]
    assert ids(path) == [f"e{i:06d}" for i in range(10)]


def test_damaged_pages_are_detected_at_open(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with TelemetryStore(path) as store:
        for i in range(400):
            store.record(event(i, size=400))
    # checkpoint the WAL into the main file, then overwrite pages in the middle (header intact)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(4096 * 2)
        fh.write(b"\xde\xad\xbe\xef" * ((size - 4096 * 3) // 4))
    with TelemetryStore(path) as store:
        store.record(event(1000))
        store.flush()
        assert store.set_aside, store.warnings
        assert ids(path) == ["e001000"]
    assert integrity(path) == "ok"


# -- locked ----------------------------------------------------------------------------------------
def test_database_locked_at_open_is_set_aside_after_the_lock_timeout(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("CREATE TABLE other(x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO other VALUES (1)")
    try:
        warnings: list[str] = []
        t0 = time.perf_counter()
        store = TelemetryStore(path, lock_timeout_s=0.3, on_warning=warnings.append)
        for i in range(5):
            store.record(event(i))
        assert time.perf_counter() - t0 < 0.3  # the caller never waits for the lock
        store.flush()
        assert store.state == "ok"
        assert store.count() == 5
        assert any("locked" in w and "moved aside" in w for w in warnings)
        store.close()
    finally:
        holder.rollback()
        holder.close()


def test_lock_held_during_writes_does_not_block_record(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    store = TelemetryStore(path, lock_timeout_s=0.3, batch_interval_s=0.01)
    try:
        store.record(event(0))
        store.flush()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        t0 = time.perf_counter()
        for i in range(1, 200):
            store.record(event(i))
        elapsed = time.perf_counter() - t0
        store.flush()
        holder.rollback()
        holder.close()
        assert elapsed < 0.25  # writes wait on the writer thread, not in record()
        # the lock outlived lock_timeout_s: the file was set aside and the events went to a new one
        assert store.state == "ok"
        assert store.count() == 199
        aside = store.set_aside[0]
        assert [e.id for e in read_events(aside)] == ["e000000"]
    finally:
        store.close()


# -- disk full -------------------------------------------------------------------------------------
def test_a_full_disk_degrades_to_memory_and_keeps_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    store = TelemetryStore(path, page_limit_mb=0.25, batch_size=16)  # SQLite's page limit: SQLITE_FULL
    try:
        for i in range(400):  # ~1 KB each: does not fit in 0.25 MB
            store.record(event(i, size=1000))
        store.flush()
        assert store.state == "degraded"
        assert 0 < store.written < 400
        assert store.written + store.buffered == 400
        assert store.count() == 400
        assert sum("SQLITE_FULL" in w or "full" in w for w in store.warnings) == 1
    finally:
        store.close()
    # what reached the disk is intact and is a prefix of what was recorded
    assert integrity(path) == "ok"
    on_disk = ids(path)
    assert on_disk == [f"e{i:06d}" for i in range(len(on_disk))]


DISK_FULL = textwrap.dedent(
    """
    import json, resource, secrets, signal, sys
    from pathlib import Path
    from heedls.server.events import SuggestionEvent
    from heedls.server.telemetry.store import TelemetryStore

    # A real write failure from the kernel (EFBIG) once the files reach 256 KiB.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    store = TelemetryStore(Path(sys.argv[1]), batch_size=16)
    for i in range(600):
        store.record(SuggestionEvent(id=f"e{i:06d}", session="s", ts=1.0 + i, prefix=secrets.token_hex(500)))
    store.flush()
    print(json.dumps({"state": store.state, "written": store.written, "buffered": store.buffered,
                      "count": store.count(), "warnings": store.warnings}))
    """
)


def test_file_size_limit_from_the_kernel_is_survived(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", DISK_FULL, str(path)], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "degraded"
    assert result["count"] == 600
    assert result["written"] + result["buffered"] == 600
    assert len(result["warnings"]) >= 1
    assert integrity(path) == "ok"
    on_disk = ids(path)
    assert len(on_disk) == result["written"]
    assert on_disk == [f"e{i:06d}" for i in range(len(on_disk))]


# -- odd events ------------------------------------------------------------------------------------
def test_an_event_with_a_lone_surrogate_is_stored_with_its_batch_and_logs_no_code(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    warnings: list[str] = []
    odd = event(1)
    odd.suffix = "SECRET_SUFFIX \udc80 text"  # what an editor's broken UTF-16 decodes to
    with TelemetryStore(path, on_warning=warnings.append) as store:
        for e in (event(0), odd, event(2)):
            store.record(e)
    stored = {e.id: e for e in read_events(path)}
    assert sorted(stored) == ["e000000", "e000001", "e000002"]
    assert stored["e000001"].suffix == "SECRET_SUFFIX \udc80 text"
    assert not any("SECRET" in w for w in warnings)


def test_an_event_whose_time_is_not_a_number_does_not_jam_the_store(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    odd = event(1)
    odd.ts = float("nan")
    with TelemetryStore(path) as store:
        for e in (event(0), odd, *(event(i) for i in range(2, 6))):
            store.record(e)
        assert store.flush()
        assert store.state == "ok"
    assert ids(path) == [f"e{i:06d}" for i in range(6)]


def test_a_row_that_cannot_be_decoded_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with TelemetryStore(path) as store:
        for i in range(4):
            store.record(event(i))
    conn = sqlite3.connect(path)
    with conn:  # a compressed-looking row that is not zlib, and one that is not UTF-8
        conn.execute("INSERT INTO events(id, ts, recorded, data) VALUES ('bad1', 1.7e9, 1.7e9, ?)", (b"\x78\x9cnot zlib",))
        conn.execute("INSERT INTO events(id, ts, recorded, data) VALUES ('bad2', 1.7e9, 1.7e9, ?)", (zlib.compress(b"\xff\xfe"),))
    conn.close()
    assert ids(path) == [f"e{i:06d}" for i in range(4)]
    with TelemetryStore(path) as store:
        assert sorted(e.id for e in store.iter_events()) == [f"e{i:06d}" for i in range(4)]


# -- the store's file removed, replaced or not ours --------------------------------------------------
@pytest.mark.parametrize("what", ["file", "file without its wal", "folder"])
def test_a_store_deleted_while_the_server_writes_is_started_again_at_its_path(tmp_path: Path, what: str) -> None:
    """SQLite writes on into a file removed under it: every event after an `rm` of the store (or of
    its folder) went with the removed file when the server closed, without a word. The writer looks
    before each batch: what comes after goes to a new store at the path, and the user hears of it."""
    base = tmp_path / "data"
    path = base / "events.sqlite3"
    warnings: list[str] = []
    with TelemetryStore(path, on_warning=warnings.append, batch_interval_s=0.01) as store:
        store.record(event(0))
        assert store.flush()
        if what.startswith("file"):
            names = ("events.sqlite3",) if "without" in what else ("events.sqlite3", "events.sqlite3-wal", "events.sqlite3-shm")
            for name in names:
                (base / name).unlink(missing_ok=True)
        else:
            subprocess.run(["rm", "-rf", str(base)], check=True)
        for i in range(1, 4):
            store.record(event(i))
        assert store.flush()
        assert store.state == "ok"
    assert ids(path) == [f"e{i:06d}" for i in range(1, 4)]
    assert len(warnings) == 1 and "was removed while heedls was writing to it" in warnings[0], warnings


def test_a_store_replaced_by_another_file_is_followed(tmp_path: Path) -> None:
    """A store copied back over the live one (a backup restored): the events from then on go to the
    file now at the path, not to the one replaced."""
    path = tmp_path / "events.sqlite3"
    backup = tmp_path / "backup.sqlite3"
    with TelemetryStore(backup) as store:
        store.record(event(100))
    warnings: list[str] = []
    with TelemetryStore(path, on_warning=warnings.append, batch_interval_s=0.01) as store:
        store.record(event(0))
        assert store.flush()
        os.replace(backup, path)
        store.record(event(1))
        assert store.flush()
    assert ids(path) == ["e000001", "e000100"]
    assert len(warnings) == 1 and "replaced by another file" in warnings[0]


def test_a_file_of_the_users_at_the_store_path_is_left_as_it_is(tmp_path: Path) -> None:
    """`telemetry.path` naming a file that is no database (notes, by mistake): it was renamed to
    `*.corrupt-<stamp>` and a database written in its place. It stays where and as it is; events
    are kept in memory, and the warning says why."""
    path = tmp_path / "my-notes.txt"
    path.write_text("things to do\n")
    warnings: list[str] = []
    with TelemetryStore(path, on_warning=warnings.append) as store:
        store.record(event(0))
        store.flush()
        assert store.state == "degraded" and store.buffered == 1
    assert path.read_text() == "things to do\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-notes.txt"]
    assert "is not a telemetry store (no SQLite database)" in warnings[0], warnings
    assert warnings[1:] == [f"telemetry: 1 events could not be written to {path} and are lost"]  # at close


def test_another_programs_database_at_the_store_path_gets_no_tables_of_ours(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    before = path.read_bytes()
    warnings: list[str] = []
    with TelemetryStore(path, on_warning=warnings.append) as store:
        store.record(event(0))
        store.flush()
        assert store.state == "degraded"
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("app.db.corrupt-*"))
    assert "a SQLite database of something else (tables users)" in warnings[0], warnings
    assert warnings[1:] == [f"telemetry: 1 events could not be written to {path} and are lost"]  # at close
