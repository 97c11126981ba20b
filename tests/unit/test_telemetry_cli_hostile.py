"""`heedls telemetry export|report` driven with hostile input: a missing pyarrow, an export cut short,
absurd stored numbers, a terminal too narrow for the tables. Each gets a clear message or a
readable fallback, never a traceback or a figure that reads wrong."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from heedls.server.cli import app
from heedls.server.events import SuggestionEvent
from heedls.server.telemetry import export as export_mod
from heedls.server.telemetry.report import compute_report, render_terminal
from heedls.server.telemetry.store import TelemetryStore
from rich.console import Console
from typer.testing import CliRunner

T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC


def event(i: int, **kw: object) -> SuggestionEvent:
    fields: dict[str, object] = dict(
        id=f"h{i}", session="s1", ts=T0 + 40 * i, language="python", file="pkg/mod.py", prefix="def f(x):\n    ",
        suffix="", suggestion="return x", shown=True, outcome="accepted" if i % 7 == 0 else "rejected",
        latency_ms=20.0 + i % 50, provider="local",
    )  # fmt: skip
    fields.update(kw)
    return SuggestionEvent(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "events.sqlite3"
    with TelemetryStore(path) as s:
        for i in range(30):
            s.record(event(i))
    return path


def invoke(*args: str) -> tuple[int, str, str, BaseException | None]:
    result = CliRunner().invoke(app, ["telemetry", *args])
    exception = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stdout, result.stderr, exception


def test_parquet_without_pyarrow_is_a_clear_error_not_a_traceback(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow is a dependency, but a trimmed install may lack it: `import pyarrow` then fails
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "events.parquet"
    out.write_bytes(b"an earlier export")
    code, stdout, stderr, exception = invoke("export", "--store", str(store), "-f", "parquet", "-o", str(out))
    assert exception is None, exception  # was ModuleNotFoundError out of export_parquet
    assert code == 2 and stdout == ""
    assert "--format parquet needs pyarrow" in stderr and "jsonl or csv" in stderr
    assert out.read_bytes() == b"an earlier export"
    assert list(tmp_path.glob(".events.parquet*")) == []
    # the other formats do not need it
    code, stdout, stderr, _ = invoke("export", "--store", str(store), "-f", "csv")
    assert code == 0 and "exported 30 events (csv, full)" in stderr


def test_an_export_to_stdout_cut_short_says_it_is_incomplete(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> int:  # Ctrl-C half way through the rows
        sys.stdout.write('{"id": "h0"}\n')  # whole lines already out: they pass for a whole export
        raise KeyboardInterrupt

    monkeypatch.setattr(export_mod, "export_store", interrupted)
    code, _, stderr, exception = invoke("export", "--store", str(store))
    assert exception is None, exception
    assert code == 130
    assert "export interrupted: what was written to stdout is incomplete" in stderr
    assert "exported" not in stderr
    # with -o the earlier file stays as it was, and stderr says so
    out = tmp_path / "out.jsonl"
    out.write_text("earlier\n")
    code, _, stderr, _ = invoke("export", "--store", str(store), "-o", str(out))
    assert code == 130 and f"{out} is left as it was" in stderr
    assert out.read_text() == "earlier\n"


def _terminal(report: dict[str, object], width: int) -> str:
    console = Console(file=io.StringIO(), width=width, record=True)
    render_terminal(report, console)
    return console.export_text()


def test_an_absurd_latency_does_not_push_the_figures_out_of_the_table() -> None:
    # a stored latency_ms of 1e308 (a clock gone wrong, a unit bug) is finite, so it is in the
    # percentiles; printed whole it was 309 digits, and rich dropped the labels and counts for it
    events = [event(i) for i in range(40)] + [event(40 + i, latency_ms=1e308) for i in range(10)]
    text = _terminal(compute_report(events), 80)
    assert not re.search(r"\d{12}", text), text
    assert "2023-11-15" in text and "local" in text and ".py" in text
    total = next(line for line in text.splitlines() if line.strip().startswith("all"))
    assert total.split()[1] == "50", total  # requests
    assert "e+307" in total or "e+308" in total


@pytest.mark.parametrize("width", [20, 30, 50, 64])
def test_a_narrow_terminal_shows_every_figure_whole(width: int) -> None:
    # 3000 requests over two days: in 50 columns rich cropped them to "300" and dropped the days
    events = [event(i, shown=i % 3 == 0, outcome=("accepted" if i % 9 == 0 else "rejected") if i % 3 == 0 else None,
                    gate={"decision": "skipped" if i % 3 == 1 else "hidden"} if i % 3 else None)
              for i in range(3000)]  # fmt: skip
    report = compute_report(events)
    day_requests = {day: s["requests"] for day, s in report["by"]["day"].items()}
    assert sorted(day_requests.values()) == [840, 2160]
    text = _terminal(report, width)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    words = text.split()
    assert "3000" in words and "1000" in words  # requests, avoided, hidden: whole
    for day, n in day_requests.items():
        assert day in text
        assert str(n) in words
    assert "334" in words  # accepted (of 1000 shown)


def _heedls(*args: str, encoding: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONIOENCODING": encoding, "HEEDLS_DATA_DIR": str(tmp_path / "data"),
           "COLUMNS": "100"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "heedls", *args], capture_output=True, env=env, cwd=tmp_path,
                          check=False, timeout=timeout)  # fmt: skip


def test_stdout_in_a_non_utf8_locale_gets_the_same_bytes_as_a_file(tmp_path: Path) -> None:
    # Windows' cp1252 for `> out.csv`, or LANG=…ISO-8859-1: the locale's encoding lacks U+FFFD (a
    # lone surrogate's replacement in CSV) and most of what code holds; the export stopped half
    # way with a UnicodeEncodeError traceback, and the report's tables at their first arrow
    path = tmp_path / "events.sqlite3"
    with TelemetryStore(path) as s:
        s.record(event(0, suggestion="return '✓ naïve \ud800'", provider="провайдер"))
        for i in range(1, 5):
            s.record(event(i))
    for fmt in ("jsonl", "csv"):
        to_file = _heedls("telemetry", "export", "--store", str(path), "-f", fmt, "-o", str(tmp_path / f"x.{fmt}"),
                          encoding="utf-8", tmp_path=tmp_path)  # fmt: skip
        assert to_file.returncode == 0, to_file.stderr
        done = _heedls("telemetry", "export", "--store", str(path), "-f", fmt, encoding="ascii", tmp_path=tmp_path)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
        assert done.stdout == (tmp_path / f"x.{fmt}").read_bytes()
    done = _heedls("telemetry", "report", "--store", str(path), encoding="latin-1", tmp_path=tmp_path)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
    assert b"? 2023-11-15" in done.stdout and b"?????????" in done.stdout  # the arrow, the provider's name
    done = _heedls("telemetry", "report", "--store", str(path), "--json", encoding="ascii", tmp_path=tmp_path)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode()
    assert "провайдер" in json.loads(done.stdout.decode("utf-8"))["by"]["provider"]


@pytest.mark.parametrize("command", ["export", "report", "push"])
def test_a_store_that_is_a_pipe_or_a_folder_is_refused_at_once(command: str, tmp_path: Path) -> None:
    # SQLite opening a FIFO waits for a writer that never comes: export and report hung forever
    pipe, folder = tmp_path / "events.sqlite3", tmp_path / "folder"
    os.mkfifo(pipe)
    folder.mkdir()
    extra = ["--endpoint", "http://127.0.0.1:9/ingest"] if command == "push" else []
    for store, kind in ((pipe, "a pipe"), (folder, "a folder")):
        done = _heedls("telemetry", command, "--store", str(store), *extra, encoding="utf-8", tmp_path=tmp_path,
                       timeout=20)  # fmt: skip
        assert done.returncode == 1 and done.stdout == b"", done.stderr.decode()
        assert f"cannot read {store}: {kind}, not a telemetry store".encode() in done.stderr
        assert b"Traceback" not in done.stderr
