"""`heedls telemetry …` in a workspace: the same store `heedls serve` writes there; export → eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from heedls.server.cli import app
from heedls.server.events import SuggestionEvent, read_jsonl
from heedls.server.telemetry.export import csv_rows
from heedls.server.telemetry.paths import default_store_path
from heedls.server.telemetry.store import TelemetryStore
from typer.testing import CliRunner

from tests.support.shared_data import CUPS


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    return ws


def one(i: int) -> SuggestionEvent:
    return SuggestionEvent(
        id=f"c{i}", session="s1", ts=1_700_000_000.0 + 3600 * i, language="python", file="app/views.py",
        prefix="def render_invoice_total(order):\n    ", suffix="", suggestion="return sum(order.lines_amount)",
        shown=True, outcome="accepted" if i % 3 == 0 else "rejected", latency_ms=50.0 + i, provider="local",
    )  # fmt: skip


def populate(path: Path, n: int = 8) -> list[SuggestionEvent]:
    events = [one(i) for i in range(n)]
    with TelemetryStore(path) as store:
        for e in events:
            store.record(e)
    return events


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["telemetry", *args])
    return result.exit_code, result.stdout, result.stderr


def test_path_is_the_workspace_store_and_config_overrides_it(workspace: Path) -> None:
    code, out, _ = invoke("path")
    assert code == 0 and out.strip() == str(default_store_path(workspace))
    (workspace / "pyproject.toml").write_text('[tool.heedls.telemetry]\npath = "local/events.db"\n')
    code, out, _ = invoke("path")
    assert out.strip() == str(workspace / "local/events.db")


def test_a_configured_path_expands_variables_and_an_unset_one_is_never_a_folder(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELE_DIR", str(tmp_path / "tele"))
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    (workspace / "pyproject.toml").write_text('[tool.heedls.telemetry]\npath = "${TELE_DIR}/events.db"\n')
    assert invoke("path")[1].strip() == str(tmp_path / "tele" / "events.db")
    (workspace / "pyproject.toml").write_text('[tool.heedls.telemetry]\npath = "$NOT_SET_ANYWHERE/events.db"\n')
    assert invoke("path")[1].strip() == str(default_store_path(workspace))


def test_export_jsonl_to_stdout_round_trips(workspace: Path, tmp_path: Path) -> None:
    events = populate(default_store_path(workspace))
    code, out, err = invoke("export", "--format", "jsonl")
    assert code == 0, err
    (tmp_path / "x.jsonl").write_text(out, encoding="utf-8")
    back = list(read_jsonl(tmp_path / "x.jsonl"))
    assert [b.to_dict() for b in back] == [e.to_dict() for e in events]
    assert "exported 8 events" in err


def test_export_nocode_csv_and_since(workspace: Path) -> None:
    populate(default_store_path(workspace))
    code, out, _ = invoke("export", "-f", "csv", "--privacy", "nocode", "--since", "2023-11-15T00:00:00Z")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1 + 6  # header + c2 … c7 (c0 is at 22:13 UTC on the 14th, one per hour)
    for needle in ("render_invoice_total", "lines_amount", "views"):
        assert needle not in out


def test_export_parquet_to_a_file(workspace: Path, tmp_path: Path) -> None:
    # (without -o: tests/unit/test_design_contract.py)
    populate(default_store_path(workspace))
    code, _, _ = invoke("export", "-f", "parquet", "-o", str(tmp_path / "e.parquet"))
    assert code == 0 and pq.ParquetFile(tmp_path / "e.parquet").metadata.num_rows == 8


def test_bad_options_exit_2(workspace: Path) -> None:
    assert invoke("export", "-f", "xml")[0] == 2
    assert invoke("export", "--privacy", "partial")[0] == 2
    assert invoke("export", "--since", "yesterday-ish")[0] == 2


def test_report_json_is_one_object_and_html_is_written(workspace: Path, tmp_path: Path) -> None:
    populate(default_store_path(workspace))
    code, out, err = invoke("report", "--json", "--html", str(tmp_path / "r.html"))
    assert code == 0, err
    report = json.loads(out)  # the whole stdout is one JSON object
    assert report["total"]["requests"] == 8 and report["total"]["accepted"] == 3
    assert (tmp_path / "r.html").read_text(encoding="utf-8").count("<svg") >= 3
    code, out, _ = invoke("report")
    assert code == 0 and "by file type" in out


def test_export_from_a_missing_store_fails_and_writes_nothing(workspace: Path, tmp_path: Path) -> None:
    """Nothing recorded: exit 1 and a message; an earlier export at -o is left as it was."""
    code, out, err = invoke("export")
    assert code == 1 and out == "" and "no telemetry recorded yet" in err
    previous = tmp_path / "prev.jsonl"
    previous.write_text('{"id": "kept"}\n')
    for fmt in ("jsonl", "csv", "parquet"):
        code, out, err = invoke("export", "-f", fmt, "-o", str(previous), "--store", str(tmp_path / "none.sqlite3"))
        assert code == 1 and "no telemetry recorded yet" in err and "nothing exported" in err
        assert previous.read_text() == '{"id": "kept"}\n'
    assert not (tmp_path / "none.sqlite3").exists()


def test_explicit_store_and_push_without_endpoint(workspace: Path, tmp_path: Path) -> None:
    store = tmp_path / "elsewhere.sqlite3"
    populate(store, 3)
    code, out, _ = invoke("export", "--store", str(store))
    assert code == 0 and len(out.splitlines()) == 3
    code, out, _ = invoke("push", "--store", str(store), "--json")
    assert code == 1 and json.loads(out)["error"].startswith("no endpoint")


@pytest.mark.slow
@pytest.mark.skipif(not CUPS.exists(), reason="shared acceptance data not available")
@pytest.mark.slow
def test_real_decisions_through_store_export_and_eval(workspace: Path, tmp_path: Path) -> None:
    """Real accept/reject events → store → export (full, nocode) → `heedls eval acceptance` reads them."""
    original = list(read_jsonl(CUPS))
    with TelemetryStore(default_store_path(workspace)) as store:
        for e in original:
            store.record(e)
    for privacy in ("full", "nocode"):
        out = tmp_path / f"{privacy}.jsonl"
        assert invoke("export", "--privacy", privacy, "-o", str(out))[0] == 0
        back = list(read_jsonl(out))
        assert len(back) == len(original)
        assert [b.label() for b in back] == [e.label() for e in sorted(original, key=lambda x: x.ts)]
    full = tmp_path / "full.jsonl"
    assert sorted(json.loads(line)["id"] for line in full.read_text().splitlines()) == sorted(
        e.id for e in original
    )
    runs = {}
    for name, path in (("original", CUPS), ("exported", full)):
        done = subprocess.run(
            [sys.executable, "-m", "heedls", "eval", "acceptance", str(path), "--stage", "context", "--json",
             "--model", "logreg"],
            check=False, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads(done.stdout)
    assert runs["exported"]["n"] == runs["original"]["n"] == len(original)
    assert runs["exported"]["positives"] == runs["original"]["positives"]
    assert runs["exported"]["auc"] == pytest.approx(runs["original"]["auc"], abs=0.02)


def test_report_on_a_jsonl_file(workspace: Path, tmp_path: Path) -> None:
    from heedls.server.events import write_jsonl

    write_jsonl([one(i) for i in range(6)], tmp_path / "ev.jsonl")
    code, out, err = invoke("report", "--events", str(tmp_path / "ev.jsonl"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["total"]["requests"] == 6 and report["total"]["accepted"] == 2
    assert report["store"] == str(tmp_path / "ev.jsonl")


def test_a_corrupt_store_is_reported_not_repaired_by_readers(workspace: Path) -> None:
    path = default_store_path(workspace)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage" * 512)
    code, out, err = invoke("export")
    assert code == 1 and out == "" and "cannot read" in err
    assert path.read_bytes() == b"\x00garbage" * 512  # only the server's writer sets files aside


def no_traceback(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["telemetry", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_an_export_that_cannot_be_written_says_so_in_one_line(workspace: Path, tmp_path: Path, fmt: str) -> None:
    store = tmp_path / "ev.sqlite3"
    populate(store, 3)
    (tmp_path / "adir").mkdir()
    # (Not /dev/full here: a regression to rename-over-target would replace the device when run as root.)
    for target in (str(tmp_path / "missing" / "x.out"), str(tmp_path / "adir"), "/proc/x.out"):
        code, _, err = no_traceback(["export", "-f", fmt, "--store", str(store), "-o", target])
        assert code == 1 and err.startswith(f"heedls: cannot write {target}: ") and err.count("\n") == 1, err
        assert ".tmp" not in err  # the user's path, not the temporary one beside it
    code, _, err = no_traceback(["export", "-f", fmt, "--store", str(store), "-o", ""])
    assert code == 2 and "-o needs a file name" in err
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] and not list((tmp_path / "adir").iterdir())


def test_an_export_to_a_full_stdout_says_so_without_a_traceback(tmp_path: Path) -> None:
    store = tmp_path / "ev.sqlite3"
    populate(store, 3)
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "heedls", "telemetry", "export", "--store", str(store)],
            stdout=full, stderr=subprocess.PIPE, text=True, check=False, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == "heedls: cannot write <stdout>: No space left on device"


def test_a_report_page_that_cannot_be_written_says_so_in_one_line(workspace: Path, tmp_path: Path) -> None:
    store = tmp_path / "ev.sqlite3"
    populate(store, 3)
    page = tmp_path / "r.html"
    page.write_text("previous")
    for target in (str(tmp_path), "/proc/r.html"):
        code, out, err = no_traceback(["report", "--store", str(store), "--json", "--html", target])
        assert code == 1 and out == "" and err.startswith(f"heedls: cannot write {target}: "), err
    code, _, err = no_traceback(["report", "--store", str(store), "--html", ""])
    assert code == 2 and "--html needs a file name" in err
    assert page.read_text() == "previous"


def test_dash_means_stdout(workspace: Path) -> None:
    populate(default_store_path(workspace), 3)
    code, out, _ = invoke("export", "-o", "-")
    assert code == 0 and len(out.splitlines()) == 3
    code, out, _ = invoke("export", "-f", "csv", "-o", "-")
    assert code == 0 and [row["id"] for row in csv_rows(out)] == ["c0", "c1", "c2"]
    assert not (workspace / "-").exists()


def test_odd_rows_are_skipped_with_one_warning(workspace: Path, tmp_path: Path) -> None:
    import sqlite3

    store = tmp_path / "ev.sqlite3"
    populate(store, 3)
    with sqlite3.connect(store) as conn:
        conn.executemany(
            "INSERT INTO events(id, ts, recorded, data) VALUES (?, ?, 0, ?)",
            [("b0", 1_700_000_000.0, b"\x78\x9c garbage" * 200), ("b1", 1_700_000_001.0, "{not json"),
             ("b2", 1_700_000_002.0, '{"id":"b2","session":"s","ts":1700000002,"latency_ms":NaN,"gate":"x"}')],
        )  # fmt: skip
    conn.close()
    for args in (["export"], ["export", "--privacy", "nocode"], ["report", "--json"]):
        code, out, err = no_traceback([*args, "--store", str(store)])
        assert code == 0, err
        assert err.count("skipped 2 rows") == 1 and "NaN" not in out
    assert "heedls: skipped 2 rows" in err
    assert json.loads(out)["total"]["requests"] == 4
    code, out, err = no_traceback(["push", "--store", str(store), "--endpoint", "127.0.0.1:9", "--json"])
    assert code == 1 and json.loads(out)["error"].startswith("invalid endpoint") and err == ""
    code, out, err = no_traceback(["push", "--store", str(store), "--endpoint", "http://[::1"])
    assert code == 1 and err.count("invalid endpoint") == 1


def test_report_events_accepts_a_bom_and_skips_lines_that_are_not_events(workspace: Path, tmp_path: Path) -> None:
    path = tmp_path / "ev.jsonl"
    lines = [one(i).to_json() for i in range(3)]
    path.write_text("\ufeff" + "\n".join([lines[0], "[1]", *lines[1:]]) + "\n", encoding="utf-8")
    code, out, err = no_traceback(["report", "--events", str(path), "--json"])
    assert code == 0 and json.loads(out)["total"]["requests"] == 3
    assert err.count("skipped 1 line of") == 1


def test_push_to_a_directory_store_is_one_error_line(workspace: Path, tmp_path: Path) -> None:
    code, _, err = no_traceback(["push", "--store", str(tmp_path), "--endpoint", "http://127.0.0.1:9/x"])
    assert code == 1 and err.count("cannot read") == 1


# -- report --events counts each suggestion once, as the store does --------------------------------
def snapshots(store: Path) -> list[SuggestionEvent]:
    """Three suggestions recorded as heedls records them: a snapshot each time their state changes
    (c0 and c1 are accepted later; c1's persistence is then checked)."""
    events = [one(i) for i in range(3)]
    for e in events:
        e.outcome = None
    with TelemetryStore(store) as telemetry:
        for e in events:
            telemetry.record(e)
        events[0].outcome = "accepted"
        telemetry.record(events[0])
        events[1].outcome = "accepted"
        telemetry.record(events[1])
        events[1].persisted_30s = True
        telemetry.record(events[1])
    return events


def raw_rows_as_jsonl(store: Path, target: Path) -> int:
    """Every stored row (every snapshot), in append order: what accumulated push payloads or a dump
    of the store's table look like."""
    import sqlite3
    import zlib

    conn = sqlite3.connect(store)
    rows = conn.execute("SELECT data FROM events ORDER BY seq").fetchall()
    conn.close()
    lines = [zlib.decompress(d).decode() if isinstance(d, bytes) else d for (d,) in rows]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def test_report_events_counts_the_latest_snapshot_of_each_id_like_the_store(workspace: Path, tmp_path: Path) -> None:
    store, jsonl = tmp_path / "ev.sqlite3", tmp_path / "all-snapshots.jsonl"
    snapshots(store)
    assert raw_rows_as_jsonl(store, jsonl) == 6
    code, out, err = invoke("report", "--events", str(jsonl), "--json")
    assert code == 0, err
    from_file = json.loads(out)
    assert from_file["total"]["requests"] == 3 and from_file["total"]["accepted"] == 2
    assert from_file["total"]["persistence_known"] == 1
    code, out, err = invoke("report", "--store", str(store), "--json")
    assert code == 0, err
    from_store = json.loads(out)
    assert from_file["total"] == from_store["total"] and from_file["by"] == from_store["by"]


def test_report_events_since_applies_to_each_suggestion_once(workspace: Path, tmp_path: Path) -> None:
    store, jsonl = tmp_path / "ev.sqlite3", tmp_path / "all-snapshots.jsonl"
    snapshots(store)
    raw_rows_as_jsonl(store, jsonl)
    since = "2023-11-14T23:00:00Z"  # c0 (22:13 UTC on the 14th) is before it; c1 (23:13), c2 are after
    code, out, _ = invoke("report", "--events", str(jsonl), "--since", since, "--json")
    assert code == 0 and json.loads(out)["total"]["requests"] == 2
    assert json.loads(out)["total"]["accepted"] == 1


# -- a store that does not exist is a failure, as for export -----------------------------------------
def test_report_on_a_missing_store_exits_1_and_writes_nothing(workspace: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    for args in (["report"], ["report", "--json"], ["report", "--html", str(page)]):
        code, out, err = no_traceback([*args, "--store", str(tmp_path / "none.sqlite3")])
        assert code == 1 and out == "", args
        assert err.count("no telemetry recorded yet") == 1 and "nothing to report" in err
    assert not page.exists() and not (tmp_path / "none.sqlite3").exists()
    code, out, err = no_traceback(["report"])  # the workspace's default store, nothing recorded yet
    assert code == 1 and "no telemetry recorded yet" in err


def test_report_on_a_store_with_no_suggestion_says_so_like_a_missing_one(workspace: Path, tmp_path: Path) -> None:
    """Telemetry on, nothing asked yet: five tables of zeros and `— → —` were printed (exit 0)."""
    empty = tmp_path / "empty.sqlite3"
    TelemetryStore(empty).close()
    page = tmp_path / "r.html"
    for args in (["report"], ["report", "--json"], ["report", "--html", str(page)]):
        code, out, err = no_traceback([*args, "--store", str(empty)])
        assert code == 1 and out == "", args
        assert err.count("no suggestion recorded yet") == 1 and "nothing to report" in err
    assert not page.exists()
    populate(empty, 3)
    code, out, err = no_traceback(["report", "--json", "--store", str(empty), "--since", "1h"])
    assert code == 0 and json.loads(out)["total"]["requests"] == 0  # nothing in the window: zeros
    code, out, err = no_traceback(["report", "--json", "--store", str(empty)])
    assert code == 0 and json.loads(out)["total"]["requests"] == 3


def test_push_from_a_missing_store_exits_1(workspace: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "none.sqlite3")
    code, out, err = no_traceback(["push", "--store", missing, "--endpoint", "http://127.0.0.1:9/x"])
    assert code == 1 and err.count("no telemetry recorded yet") == 1
    assert "pushed 0 events" not in err  # the error alone, not a summary of nothing before it
    code, out, err = no_traceback(["push", "--store", missing, "--endpoint", "http://127.0.0.1:9/x", "--json"])
    assert code == 1 and "no telemetry recorded yet" in json.loads(out)["error"] and err == ""
    assert not (tmp_path / "none.sqlite3").exists()


# -- push --batch-size ----------------------------------------------------------------------------
def test_push_batch_size_sets_the_rows_per_post(workspace: Path, tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    posts: list[list[str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            posts.append([e["id"] for e in body["events"]])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = tmp_path / "ev.sqlite3"
        populate(store, 5)
        url = f"http://127.0.0.1:{server.server_address[1]}/events"
        code, out, err = no_traceback(["push", "--store", str(store), "--endpoint", url, "--batch-size", "2", "--json"])
        assert code == 0, err
        assert posts == [["c0", "c1"], ["c2", "c3"], ["c4"]]
        assert json.loads(out)["batches"] == 3
    finally:
        server.shutdown()
        server.server_close()
    for bad in ("0", "-3", "many"):
        code, _, _ = invoke("push", "--store", str(store), "--endpoint", url, "--batch-size", bad)
        assert code == 2, bad


def test_stores_set_aside_beside_the_store_are_named_by_readers(workspace: Path, tmp_path: Path) -> None:
    """A store the server set aside (corrupt, or locked by another program too long) holds events
    this one does not: report and export say so instead of leaving them unseen."""
    path = tmp_path / "events.sqlite3"
    populate(path, 3)
    aside = tmp_path / "events.sqlite3.corrupt-20261130T084641.967775Z"
    aside.write_bytes(path.read_bytes())
    for command in (["report", "--json"], ["export"]):
        code, _out, err = invoke(*command, "--store", str(path))
        assert code == 0 and f"1 earlier store(s) were set aside next to events.sqlite3 ({aside.name})" in err
    code, out, _err = invoke("export", "--store", str(aside))
    assert code == 0 and out.count("\n") == 3  # and it reads as a store of its own


def test_report_with_a_page_reads_the_configuration_once(workspace: Path, tmp_path: Path) -> None:
    (workspace / "pyproject.toml").write_text("[tool.heedls]\nbogus = 1\n")
    path = tmp_path / "events.sqlite3"
    populate(path, 2)
    code, _out, err = invoke("report", "--json", "--store", str(path), "--html", str(tmp_path / "r.html"))
    assert code == 0 and err.count("bogus: unknown setting") == 1, err


def test_run_from_a_folder_inside_the_project_the_projects_settings_and_store_count(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From `src/pkg` of a project, the project's `privacy = "nocode"` was not read (the export came
    out with code) and the store looked for was another folder's. As ruff and pytest do, the
    commands look above the current folder: the nearest one with [tool.heedls] or with telemetry."""
    populate(default_store_path(workspace))
    inner = workspace / "src" / "pkg"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    code, out, err = invoke("path")
    assert code == 0 and out.strip() == str(default_store_path(workspace))  # the store recorded above
    assert f"the workspace is {workspace}" in err
    (workspace / "pyproject.toml").write_text('[tool.heedls.telemetry]\nprivacy = "nocode"\n')
    code, out, err = invoke("export")
    assert code == 0 and "render_invoice_total" not in out and "(jsonl, nocode)" in err
    # a pyproject.toml nearer, without [tool.heedls] (a sub-package's), does not stop the search
    (inner / "pyproject.toml").write_text('[project]\nname = "pkg"\n')
    code, out, err = invoke("export")
    assert code == 0 and "render_invoice_total" not in out


def test_an_html_page_under_a_file_says_that_it_is_not_a_folder(workspace: Path, tmp_path: Path) -> None:
    populate(default_store_path(workspace))
    (tmp_path / "full.csv").write_text("id\n")
    code, _, err = invoke("report", "--html", str(tmp_path / "full.csv" / "x.html"))
    assert code == 1 and err.strip().endswith("Not a directory"), err  # it said "File exists"


def test_report_on_a_store_and_an_events_file_at_once_is_a_usage_error(workspace: Path, tmp_path: Path) -> None:
    populate(default_store_path(workspace))
    (tmp_path / "e.jsonl").write_text("")
    code, _, err = invoke("report", "--store", str(default_store_path(workspace)), "--events", str(tmp_path / "e.jsonl"))
    assert code == 2 and "give one" in err  # --store was ignored without a word
