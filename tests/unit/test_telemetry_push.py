"""Push to a team endpoint: batches, retries with backoff, privacy, nothing sent twice."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from heedls.server.events import SuggestionEvent
from heedls.server.telemetry.push import push
from heedls.server.telemetry.store import TelemetryStore

URL = "https://telemetry.example.test/ingest"


def fill(path: Path, n: int, start: int = 0) -> None:
    with TelemetryStore(path) as store:
        for i in range(start, start + n):
            e = SuggestionEvent(
                id=f"p{i}", session="s", ts=1_700_000_000.0 + i, prefix="def private_helper_fn():\n    ",
                suggestion="return hidden_value_42", shown=True,
            )  # fmt: skip
            store.record(e)
            e.outcome = "accepted" if i % 2 else "rejected"
            store.record(e)  # a second snapshot of the same suggestion


class Recorder:
    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.payloads: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        status = self.script.pop(0) if self.script else 200
        if status == -1:
            raise httpx.ConnectError("refused", request=request)
        if status == 200:
            self.payloads.append(json.loads(request.content))
            self.headers.append(request.headers)
        return httpx.Response(status, headers={"retry-after": "7"} if status == 429 else {})

    def ids(self) -> list[str]:
        return [e["id"] for p in self.payloads for e in p["events"]]


def run(path: Path, endpoint: Callable[[httpx.Request], httpx.Response], sleeps: list[float] | None = None,
        **kw: Any) -> Any:
    """Push the store at `path` to `endpoint` (a Recorder or any request handler); `sleeps` collects
    the waits between retries instead of sleeping."""
    client = httpx.Client(transport=httpx.MockTransport(endpoint))
    sleep: Callable[[float], None] = sleeps.append if sleeps is not None else (lambda s: None)
    return push(path, URL, client=client, sleep=sleep, **kw)


def test_batches_latest_snapshot_and_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 6)
    rec = Recorder()
    result = run(path, rec, batch_size=4)  # 12 rows -> 3 batches of 4 rows (2 suggestions each)
    assert result.error is None
    assert result.batches == 3 and rec.calls == 3
    assert rec.ids() == [f"p{i}" for i in range(6)]
    assert all(p["schema"] == "heedls.suggestion/1" for p in rec.payloads)
    outcomes = {e["id"]: e["outcome"] for p in rec.payloads for e in p["events"]}
    assert outcomes == {f"p{i}": "accepted" if i % 2 else "rejected" for i in range(6)}
    # the cursor is remembered: a second push sends nothing
    again = Recorder()
    assert run(path, again).sent == 0 and again.calls == 0
    # new rows (including a new snapshot of an old suggestion) go out, once
    fill(path, 2, start=6)
    with TelemetryStore(path) as store:
        store.record(SuggestionEvent(id="p0", session="s", ts=1_700_000_000.0, persisted_30s=False))
    third = Recorder()
    assert run(path, third).sent == 3
    assert third.ids() == ["p6", "p7", "p0"]


def test_retries_with_backoff_then_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 3)
    rec = Recorder([503, -1, 429])
    sleeps: list[float] = []
    result = run(path, rec, sleeps, backoff_s=0.5)
    assert result.error is None and result.sent == 3
    assert result.retries == 3 and rec.calls == 4
    assert sleeps == [0.5, 1.0, 7.0]  # exponential, and Retry-After wins when given


def test_gives_up_after_max_retries_and_resumes_next_time(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 3)
    failing = Recorder([503] * 10)
    result = run(path, failing, max_retries=2)
    assert result.sent == 0 and failing.calls == 3
    assert result.error is not None and "resume" in result.error
    later = Recorder()
    assert run(path, later).sent == 3


def test_client_error_is_not_retried(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 3)
    rec = Recorder([400])
    result = run(path, rec)
    assert rec.calls == 1 and result.sent == 0
    assert result.error is not None and "400" in result.error


def test_nocode_push_sends_no_code_and_token_is_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEEDLS_TELEMETRY_TOKEN", "tok-123")
    path = tmp_path / "ev.sqlite3"
    fill(path, 4)
    rec = Recorder()
    run(path, rec, privacy="nocode")
    body = json.dumps(rec.payloads)
    assert "private_helper_fn" not in body and "hidden_value_42" not in body
    assert rec.payloads[0]["privacy"] == "nocode"
    assert rec.payloads[0]["events"][0]["suggestion_len"] == len("return hidden_value_42")
    assert rec.headers[0]["authorization"] == "Bearer tok-123"


def test_no_endpoint_or_no_store(tmp_path: Path) -> None:
    assert push(tmp_path / "ev.sqlite3", "").error is not None
    missing = push(tmp_path / "missing.sqlite3", URL)
    assert missing.sent == 0 and missing.error is not None and "no telemetry recorded yet" in missing.error
    assert not (tmp_path / "missing.sqlite3").exists()


@pytest.fixture
def loopback() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({**json.loads(body), "authorization": self.headers.get("Authorization")})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events", received
    finally:
        server.shutdown()
        server.server_close()


def test_push_to_a_real_loopback_server(tmp_path: Path, loopback: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = loopback
    path = tmp_path / "ev.sqlite3"
    fill(path, 5)
    result = push(path, url, batch_size=100)
    assert result.error is None and result.sent == 5
    assert [e["id"] for e in received[0]["events"]] == [f"p{i}" for i in range(5)]


def add_raw_rows(path: Path, rows: list[str | bytes]) -> None:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO events(id, ts, recorded, data) VALUES (?, ?, ?, ?)",
            [(f"x{i}", 1_700_000_000.0 + i, 0.0, data) for i, data in enumerate(rows)],
        )
    conn.close()


def test_a_store_that_is_a_directory_is_reported_not_raised(tmp_path: Path) -> None:
    rec = Recorder()
    result = run(tmp_path, rec)
    assert result.error is not None and "cannot read" in result.error and rec.calls == 0


@pytest.mark.parametrize("endpoint", ["http://[::1", "127.0.0.1:18503", "ftp://example.test/x", "http://"])
def test_an_endpoint_that_is_not_an_http_url_fails_at_once(tmp_path: Path, endpoint: str) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 2)
    sleeps: list[float] = []
    result = push(path, endpoint, sleep=sleeps.append)  # a real client: nothing may reach the network
    assert result.error is not None and "invalid endpoint" in result.error
    assert sleeps == [] and result.retries == 0 and result.sent == 0


def test_rows_that_are_not_events_are_skipped_counted_and_never_sent(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 2)
    add_raw_rows(path, [b"\x78\x9cnot zlib" * 200, "{not json", "[1]", '{"id":"x3","session":"s"}'])
    fill(path, 1, start=2)
    rec = Recorder()
    result = run(path, rec)
    assert result.error is None and result.sent == 3 and result.skipped == 4
    assert rec.ids() == ["p0", "p1", "p2"]
    assert result.to_dict()["skipped"] == 4
    assert run(path, Recorder()).sent == 0  # the cursor moved past them: not retried forever


def test_non_finite_numbers_are_sent_as_null(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 1)
    add_raw_rows(path, ['{"id":"x0","session":"s","ts":1700000000,"latency_ms":NaN,"gate":{"stage1":Infinity}}'])
    with TelemetryStore(path) as store:
        store.record(SuggestionEvent(id="x1", session="s", ts=1_700_000_001.0, decision_ms=float("nan")))
    seen: list[bytes] = []

    def strict(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        json.loads(request.content, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(strict))
    result = push(path, URL, client=client, sleep=lambda s: None)
    assert result.error is None and result.sent == 3
    events = {e["id"]: e for e in json.loads(seen[0])["events"]}
    assert events["x0"]["latency_ms"] is None and events["x0"]["gate"] == {"stage1": None}
    assert events["x1"]["decision_ms"] is None


def test_a_nocode_store_pushes_its_lengths_and_file_hash(tmp_path: Path) -> None:
    from heedls.server.telemetry.export import to_record

    path = tmp_path / "nc.sqlite3"
    event = SuggestionEvent(id="n0", session="s", ts=1_700_000_000.0, file="pkg/private_module.py",
                            prefix="def private_helper_fn():\n    ", suggestion="return hidden_value_42", shown=True)  # fmt: skip
    with TelemetryStore(path, privacy="nocode") as store:
        store.record(event)
    for privacy in ("nocode", "full"):
        rec = Recorder()
        client = httpx.Client(transport=httpx.MockTransport(rec))
        assert push(path, f"{URL}/{privacy}", privacy, client=client).sent == 1  # type: ignore[arg-type]
        sent = rec.payloads[0]["events"][0]
        assert sent["prefix_len"] == len("def private_helper_fn():\n    ")
        assert sent["suggestion_len"] == len("return hidden_value_42") and sent["suggestion_lines"] == 1
        assert sent["file"] == to_record(event, "nocode")["file"]


def test_push_leaves_reporting_to_its_caller(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The CLI prints result.error once; push() itself does not log it a second time."""
    path = tmp_path / "ev.sqlite3"
    fill(path, 1)
    with caplog.at_level("DEBUG", logger="heedls.telemetry"):
        result = run(path, Recorder([400]))
    assert result.error is not None
    assert [r for r in caplog.records if result.error in r.getMessage()] == []


# -- 413 Payload Too Large: smaller batches, never stuck ---------------------------------------------
class SizeLimited:
    """An endpoint that answers 413 to a body over `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []  # events per POST, refused ones too
        self.accepted: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        self.sizes.append(len(events))
        if len(request.content) > self.limit:
            return httpx.Response(413)
        self.accepted.append([e["id"] for e in events])
        return httpx.Response(200)


def test_a_413_halves_the_batch_until_the_endpoint_takes_it(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 8)  # 16 rows: two snapshots of each of p0 … p7
    one_event = len(json.dumps({"schema": "heedls.suggestion/1", "privacy": "full", "events": [{}]})) + 400
    endpoint = SizeLimited(limit=2 * one_event)  # takes 2 events per POST, not 4
    sleeps: list[float] = []
    result = run(path, endpoint, sleeps, batch_size=16)
    assert result.error is None and result.sent == 8
    assert [i for batch in endpoint.accepted for i in batch] == [f"p{i}" for i in range(8)]  # each once
    assert endpoint.sizes == [8, 4, 2, 2, 2, 2]  # 16 rows, 8, then 4 rows (2 events) at a time
    assert sleeps == [] and result.retries == 0  # splitting is not waiting
    assert run(path, SizeLimited(10**9)).sent == 0  # the cursor is past everything


def test_a_single_row_too_large_is_an_error_naming_it_and_the_push_resumes_there(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 2)
    add_raw_rows(path, ["{not json"])  # in a batch that is split: counted once
    with TelemetryStore(path) as store:
        store.record(SuggestionEvent(id="huge", session="s", ts=1_700_000_100.0, suggestion="x" * 50_000, shown=True))
    fill(path, 1, start=2)
    endpoint = SizeLimited(limit=20_000)
    result = run(path, endpoint)
    assert [i for batch in endpoint.accepted for i in batch] == ["p0", "p1"]
    assert result.sent == 2 and result.skipped == 1
    assert result.error is not None
    assert "store row 6 (suggestion huge)" in result.error and "413" in result.error
    assert "too large" in result.error
    again = SizeLimited(limit=20_000)
    retry = run(path, again)
    assert again.accepted == [] and again.sizes[-1] == 1  # halved down to that one row again
    assert retry.error is not None and "suggestion huge" in retry.error
    assert run(path, SizeLimited(limit=10**9)).sent == 2  # a larger limit lets huge and p2 through


def test_batch_size_must_be_at_least_one_row(tmp_path: Path) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 1)
    rec = Recorder()
    result = run(path, rec, batch_size=0)
    assert rec.calls == 0 and result.error is not None and "batch size" in result.error


# -- Retry-After as a date, redirects, a whole-request deadline -------------------------------------
def test_retry_after_as_an_http_date_is_honoured(tmp_path: Path) -> None:
    from email.utils import formatdate

    path = tmp_path / "ev.sqlite3"
    fill(path, 1)
    answers = [httpx.Response(503, headers={"retry-after": formatdate(time.time() + 30, usegmt=True)}),
               httpx.Response(200)]  # fmt: skip
    sleeps: list[float] = []
    result = run(path, lambda request: answers.pop(0), sleeps)
    assert result.error is None and result.sent == 1
    assert len(sleeps) == 1 and 28.0 < sleeps[0] <= 30.0  # not the 0.5 s backoff
    past = [httpx.Response(429, headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}), httpx.Response(200)]
    fill(path, 1, start=1)
    sleeps.clear()
    assert run(path, lambda request: past.pop(0), sleeps).sent == 1 and sleeps == [0.0]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_says_where_it_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    monkeypatch.setenv("HEEDLS_TELEMETRY_TOKEN", "tok-123")
    path = tmp_path / "ev.sqlite3"
    fill(path, 1)
    hosts: list[str] = []

    def moved(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(status, headers={"location": "https://other.example/ingest"})

    result = run(path, moved)
    assert hosts == ["telemetry.example.test"]  # the token went nowhere else
    assert result.error is not None and result.sent == 0 and result.retries == 0
    assert f"HTTP {status}" in result.error and "redirect to https://other.example/ingest" in result.error
    assert "does not follow" in result.error and "final URL" in result.error
    assert "refused" not in result.error


@contextlib.contextmanager
def raw_endpoint(answer: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """An HTTP endpoint on a loopback socket whose every connection `answer(conn, stop)` writes by
    hand (what no well-behaved server does); `stop` is set when the test is done with it."""
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.1)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/events"
    finally:
        stop.set()
        thread.join(2)
        listener.close()


@pytest.fixture
def trickling() -> Iterator[str]:
    """An endpoint that answers one header line every 0.1 s for 20 s: each read is quick, the whole
    answer is not."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for _ in range(200):
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    return

    with raw_endpoint(answer) as url:
        yield url


def test_the_whole_request_has_a_deadline_so_a_trickling_endpoint_cannot_stall_the_push(
    tmp_path: Path, trickling: str
) -> None:
    path = tmp_path / "ev.sqlite3"
    fill(path, 1)
    sleeps: list[float] = []
    started = time.monotonic()
    result = push(path, trickling, timeout_s=5.0, deadline_s=0.5, max_retries=1, sleep=sleeps.append)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0  # two attempts of 0.5 s, not 20 s each
    assert result.sent == 0 and result.retries == 1 and sleeps == [0.5]  # a timeout is retried
    assert result.error is not None and "within 0.5 s" in result.error and "resume" in result.error


def test_an_endless_answer_body_is_not_read_to_its_end(tmp_path: Path) -> None:
    """An endpoint that answers 200 and then streams a chunked body for ever: push read the whole
    answer into memory (23 GB within two minutes, then a MemoryError). Only the status counts: the
    batch is sent, and the endpoint saw the connection closed after at most a few chunks."""
    chunks_sent = [0]

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * 65536
            while not stop.is_set():
                try:
                    conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                except OSError:
                    return
                chunks_sent[0] += 1

    path = tmp_path / "ev.sqlite3"
    fill(path, 3)
    with raw_endpoint(answer) as url:
        result = push(path, url, deadline_s=20.0, max_retries=0)
        assert result.error is None and result.sent == 3
        sent_then = chunks_sent[0]
        time.sleep(0.3)
        assert chunks_sent[0] == sent_then  # the connection is closed: nothing more is sent
        assert sent_then < 200  # at most what the socket buffers held (~13 MB), not an endless read


def test_a_retried_batch_carries_the_same_batch_id_so_a_receiver_can_drop_the_repeat(tmp_path: Path) -> None:
    """The answer to a batch came too late (read timeout) and the batch was sent again: the receiver
    got it twice, but with one `batch_id` / `Idempotency-Key`, and the next batch has another."""
    path = tmp_path / "ev.sqlite3"
    fill(path, 4)
    seen: list[tuple[str, str]] = []

    def late_once(request: httpx.Request) -> httpx.Response:
        seen.append((json.loads(request.content)["batch_id"], request.headers["idempotency-key"]))
        if len(seen) == 1:
            raise httpx.ReadTimeout("the answer came too late", request=request)
        return httpx.Response(200)

    assert run(path, late_once, batch_size=4).error is None
    assert seen[0] == seen[1] and seen[0][0] == seen[0][1]
    assert seen[2][0] != seen[0][0] and len(seen) == 3


def test_a_store_whose_progress_cannot_be_recorded_sends_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only store would get the same first batch sent on every push: nothing goes out."""
    import sqlite3

    from heedls.server.telemetry import push as push_mod

    path = tmp_path / "ev.sqlite3"
    fill(path, 3)

    def read_only(*_: Any) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(push_mod, "_write_cursor", read_only)
    rec = Recorder()
    result = run(path, rec)
    assert rec.calls == 0 and result.sent == 0
    assert result.error.startswith(f"cannot record push progress in {path} (attempt to write a readonly database)")


def test_a_file_that_is_no_heedls_store_is_left_as_it_was(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    before = other.read_bytes()
    rec = Recorder()
    result = run(other, rec)
    assert rec.calls == 0 and "is not a heedls telemetry store" in (result.error or "")
    assert other.read_bytes() == before  # no meta table added


def test_the_token_goes_only_to_an_endpoint_the_user_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           loopback: tuple[str, list[dict[str, Any]]]) -> None:
    """A cloned repository's pyproject.toml may name the push endpoint (a team's collector), but the
    user's HEEDLS_TELEMETRY_TOKEN goes only where `--endpoint` says: else any repository could
    collect it."""
    from heedls.server.cli import app
    from typer.testing import CliRunner

    url, received = loopback
    (tmp_path / "pyproject.toml").write_text(f'[tool.heedls.telemetry]\npush_endpoint = "{url}"\n')
    store = tmp_path / "ev.sqlite3"
    fill(store, 2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEEDLS_TELEMETRY_TOKEN", "team-secret")
    from_repo = CliRunner().invoke(app, ["telemetry", "push", "--store", str(store)])
    assert from_repo.exit_code == 0, from_repo.output
    assert received[-1]["authorization"] is None
    assert "HEEDLS_TELEMETRY_TOKEN is not sent to" in from_repo.stderr
    fill(store, 1, start=5)
    named = CliRunner().invoke(app, ["telemetry", "push", "--store", str(store), "--endpoint", url])
    assert named.exit_code == 0, named.output
    assert received[-1]["authorization"] == "Bearer team-secret"


def test_a_damaged_store_is_named_damaged_not_read_only(tmp_path: Path) -> None:
    """Pages overwritten in the middle of the store: push said it could not record its progress and
    to push from a copy that can be written, which cannot help. It says it cannot read the store,
    as export and report do."""
    path = tmp_path / "ev.sqlite3"
    fill(path, 400)
    with open(path, "r+b") as f:
        f.seek(8192)
        f.write(b"\0" * 20480)
    rec = Recorder()
    result = run(path, rec)
    assert rec.calls == 0
    assert result.error is not None and result.error.startswith(f"cannot read {path}: ")
    assert "malformed" in result.error and "copy that can be written" not in result.error
