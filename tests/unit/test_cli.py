"""The CLI contract: --version, serve answers initialize over stdio, complete prints only text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def heedls(*args: str, cwd: Path, env_dir: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, HEEDLS_DATA_DIR=str(env_dir / "data"), HEEDLS_CACHE_DIR=str(env_dir / "cache"))
    return subprocess.run([sys.executable, "-m", "heedls", *args], cwd=cwd, env=env, input=stdin, capture_output=True, timeout=120)


def test_version(tmp_path: Path) -> None:
    out = heedls("--version", cwd=tmp_path, env_dir=tmp_path)
    assert out.returncode == 0 and out.stdout.decode().startswith("heedls ")


def test_serve_answers_initialize_over_stdio(tmp_path: Path) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {}}}).encode()
    exit_body = json.dumps({"jsonrpc": "2.0", "method": "exit"}).encode()
    frames = b"Content-Length: %d\r\n\r\n%s" % (len(body), body) + b"Content-Length: %d\r\n\r\n%s" % (len(exit_body), exit_body)
    out = heedls("serve", cwd=tmp_path, env_dir=tmp_path, stdin=frames)
    header, _, payload = out.stdout.partition(b"\r\n\r\n")
    assert header.startswith(b"Content-Length:")
    result = json.loads(payload[: int(header.split(b":")[1].split(b"\r\n")[0])])["result"]
    assert "inlineCompletionProvider" in result["capabilities"]
    assert "heedls.accept" in result["capabilities"]["executeCommandProvider"]["commands"]
    assert result["serverInfo"]["name"] == "heedls"


def test_complete_prints_a_suggestion_from_the_workspace_on_a_real_file(tmp_path: Path) -> None:
    demo = ROOT / "examples" / "demo"
    out = heedls("complete", "stats.py:29:24", cwd=demo, env_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == "values)):\n"


def test_complete_shows_what_the_editor_shows_once_jedi_has_answered(tmp_path: Path) -> None:
    """The server starts jedi when the other sources are unsure and uses its answer from the next
    keystroke on; a one-shot call has no next keystroke, so it waits for jedi's answer first."""
    (tmp_path / "a.py").write_text("import collections\n\nd = collections.OrderedD\n")
    out = heedls("complete", "a.py:3:25", "--no-gate", cwd=tmp_path, env_dir=tmp_path)
    assert out.returncode == 0 and out.stdout.decode() == "ict\n", out.stderr  # a name only jedi knows here


def test_complete_with_no_suggestion_prints_nothing_and_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("")
    out = heedls("complete", "empty.py:1:1", cwd=tmp_path, env_dir=tmp_path)
    assert out.returncode == 0 and out.stdout == b""


def test_complete_rejects_a_bad_location(tmp_path: Path) -> None:
    out = heedls("complete", "nowhere.py", cwd=tmp_path, env_dir=tmp_path)
    assert out.returncode == 2 and out.stdout == b"" and b"FILE:LINE:COL" in out.stderr
    missing = heedls("complete", "nowhere.py:1:1", cwd=tmp_path, env_dir=tmp_path)
    assert missing.returncode == 2 and b"cannot read" in missing.stderr


def test_complete_rejects_a_place_outside_the_file_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\nprint(x)\n")
    for where, why in (("a.py:0:1", b"line 0 is outside the file: it has 2 lines"),
                       ("a.py:4:1", b"line 4 is outside the file: it has 2 lines"),
                       ("a.py:2:10", b"column 10 is outside line 2: it has 8 characters (columns 1-9)")):
        out = heedls("complete", where, cwd=tmp_path, env_dir=tmp_path)
        assert out.returncode == 2 and out.stdout == b"" and why in out.stderr, out.stderr
    assert heedls("complete", "a.py:3:1", cwd=tmp_path, env_dir=tmp_path).returncode == 0  # after the last line break


def test_complete_counts_columns_without_a_byte_order_mark_and_lines_at_a_lone_cr(tmp_path: Path) -> None:
    demo = (ROOT / "examples" / "demo" / "stats.py").read_text()
    (tmp_path / "bom.py").write_text("\ufeff" + demo, encoding="utf-8")
    (tmp_path / "cr.py").write_text(demo.replace("\n", "\r"), newline="")
    for name in ("bom.py", "cr.py"):
        out = heedls("complete", f"{name}:29:24", cwd=tmp_path, env_dir=tmp_path)
        assert out.returncode == 0 and out.stdout.decode() == "values)):\n", (name, out.stderr)


def test_complete_applies_the_files_project_configuration_from_anywhere(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "pkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[tool.heedls.inline]\nenabled = false\n")
    (project / "pkg" / "stats.py").write_text((ROOT / "examples" / "demo" / "stats.py").read_text())
    for cwd in (project, project / "pkg", tmp_path):
        out = heedls("complete", str(project / "pkg" / "stats.py") + ":29:24", cwd=cwd, env_dir=tmp_path)
        assert out.returncode == 0 and out.stdout == b"", (cwd, out.stdout)  # suggestions are off there


def test_serve_refuses_a_tcp_address_it_cannot_listen_on_in_one_line_before_starting(tmp_path: Path) -> None:
    """A bad port, an unknown host, an address of another machine or one in use was asyncio's
    traceback (OverflowError, gaierror, OSError 98/99); each is now one line and exit 2."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = {
            "127.0.0.1:99999": "--tcp expects HOST:PORT with a port of 1-65535, got '127.0.0.1:99999'",
            "localhost:0": "--tcp expects HOST:PORT with a port of 1-65535, got 'localhost:0'",
            "nosuch.invalid:2087": "cannot listen on nosuch.invalid:2087: ",
            f"127.0.0.1:{port}": f"cannot listen on 127.0.0.1:{port}: Address already in use",
        }
        for address, said in cases.items():
            out = heedls("serve", "--tcp", address, cwd=tmp_path, env_dir=tmp_path, stdin=b"")
            err = out.stderr.decode()
            assert out.returncode == 2 and err.startswith(f"heedls: {said}"), (address, err)
            assert "Traceback" not in err and len(err.splitlines()) == 1


def test_serve_refuses_an_unknown_log_level_and_ignores_a_bad_one_from_the_environment(tmp_path: Path) -> None:
    out = heedls("serve", "--log-level", "loud", cwd=tmp_path, env_dir=tmp_path, stdin=b"")
    assert out.returncode == 2
    assert out.stderr.decode() == "heedls: --log-level expects one of error, warning, info, debug, got 'loud'\n"
    env = dict(os.environ, HEEDLS_LOG_LEVEL="verbose", HEEDLS_DATA_DIR=str(tmp_path / "d"))
    served = subprocess.run([sys.executable, "-m", "heedls", "serve"], cwd=tmp_path, env=env, input=b"",
                            capture_output=True, timeout=120)
    err = served.stderr.decode()
    assert "HEEDLS_LOG_LEVEL='verbose' is not a level" in err and "Traceback" not in err
    assert served.returncode == 1  # the client went away without shutdown: LSP's exit status 1
