"""`heedls complete FILE:LINE:COL` given what it cannot complete in: stdout carries only a
suggestion, a usage error is exit 2 with a message that says what is wrong, and nothing hangs,
eats the machine's memory or ends in a traceback."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

MEMORY_CAP = 4 * 1024**3  # an address-space limit: a reader of /dev/zero fails instead of swapping


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def heedls(*args: str, cwd: Path, env_dir: Path, capped: bool = False, **env: str) -> subprocess.CompletedProcess[bytes]:
    """`capped`: for the runs that must not read their input at all (a regression would read it)."""
    environment = dict(os.environ, HEEDLS_DATA_DIR=str(env_dir / "data"), HEEDLS_CACHE_DIR=str(env_dir / "cache"), **env)
    return subprocess.run([sys.executable, "-m", "heedls", "complete", *args], cwd=cwd, env=environment,
                          capture_output=True, timeout=60, preexec_fn=_capped if capped else None)


def refused(out: subprocess.CompletedProcess[bytes], why: bytes) -> bool:
    return out.returncode == 2 and out.stdout == b"" and why in out.stderr and b"Traceback" not in out.stderr


def test_a_fifo_a_device_or_a_directory_is_refused_at_once_not_read(tmp_path: Path) -> None:
    """A FIFO nobody writes to would block the open forever; /dev/zero and /dev/urandom never end
    (reading them took 24 GB before the OOM killer came)."""
    os.mkfifo(tmp_path / "pipe.py")
    for where in ("pipe.py:1:1", "/dev/zero:1:1", "/dev/urandom:1:1"):
        out = heedls(where, cwd=tmp_path, env_dir=tmp_path, capped=True)
        assert refused(out, b"not a regular file"), (where, out.stderr[-300:])
    assert refused(heedls(".:1:1", cwd=tmp_path, env_dir=tmp_path), b"cannot read .: it is a directory")


def test_a_file_larger_than_any_source_is_refused_unread(tmp_path: Path) -> None:
    with (tmp_path / "huge.py").open("wb") as file:
        file.truncate(65 * 1024 * 1024)  # sparse: no disk, no time
    assert refused(heedls("huge.py:1:1", cwd=tmp_path, env_dir=tmp_path, capped=True), b"too large (65 MB; the limit is 64 MB)")


def test_a_binary_file_is_no_text_to_complete_in(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")  # a neighbour the index could suggest from
    (tmp_path / "blob.py").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    out = heedls("blob.py:1:1", cwd=tmp_path, env_dir=tmp_path)
    assert refused(out, b"cannot read blob.py: not a text file (it contains NUL bytes)"), out.stderr


def test_a_latin1_file_with_a_coding_line_is_read_in_its_encoding(tmp_path: Path) -> None:
    """PEP 263: the `coding:` line says how the file is written; its é is no U+FFFD."""
    (tmp_path / "l1.py").write_bytes('# -*- coding: latin-1 -*-\ns = "café crème"\nt = "caf'.encode("latin-1"))
    out = heedls("l1.py:3:9", "--no-gate", cwd=tmp_path, env_dir=tmp_path)
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    assert out.stdout.decode("utf-8") == 'é crème"\n'


def test_a_file_that_is_not_utf8_is_said_to_be_and_no_suggestion_copies_its_bad_bytes(tmp_path: Path) -> None:
    (tmp_path / "latin.py").write_bytes('name = "café"\nprint(na'.encode("latin-1"))
    out = heedls("latin.py:2:9", "--no-gate", cwd=tmp_path, env_dir=tmp_path)
    assert out.returncode == 0 and "\ufffd" not in out.stdout.decode("utf-8", "replace"), out.stdout
    assert b"latin.py: not valid UTF-8 (byte 0xe9 on line 1)" in out.stderr, out.stderr


def test_a_suggestion_the_output_encoding_cannot_carry_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "u.py").write_text('def f():\n    return "été 中文 café"\n\nx = f()\ny = "été\n', encoding="utf-8")
    assert heedls("u.py:5:9", "--no-gate", cwd=tmp_path, env_dir=tmp_path).stdout.decode() == ' 中文 café"\n'
    out = heedls("u.py:5:9", "--no-gate", cwd=tmp_path, env_dir=tmp_path, PYTHONIOENCODING="ascii")
    assert out.returncode == 1 and out.stdout == b"" and b"Traceback" not in out.stderr, out.stderr[-300:]
    assert b"the output encoding (ascii) cannot write; set PYTHONIOENCODING=utf-8" in out.stderr


def test_a_relative_path_from_a_deleted_directory_is_a_usage_error(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    out = subprocess.run(  # the child starts in `gone`, which is removed before it resolves the path
        [sys.executable, "-c", f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); "
                               "sys.argv = ['heedls', 'complete', 'a.py:1:1']; from heedls.server.cli import main; main()"],
        env=dict(os.environ, HEEDLS_DATA_DIR=str(tmp_path / "d"), HEEDLS_CACHE_DIR=str(tmp_path / "c")),
        capture_output=True, timeout=60)
    assert refused(out, b"cannot read a.py: the current directory no longer exists"), out.stderr[-300:]


@pytest.mark.parametrize(("where", "why"), [
    ("a.py:-1:1", b"a.py:-1:1: LINE '-1' must be a number from 1 (LINE and COL are 1-based)"),
    ("a.py:1:x", b"a.py:1:x: COL 'x' must be a number from 1"),
    ("a.py::", b"LINE '' and COL '' must be numbers from 1"),
    ("a.py:\u0661:\u0661", b"must be numbers from 1"),  # Arabic-Indic digits are no line number
])
def test_a_bad_line_or_column_is_named(tmp_path: Path, where: str, why: bytes) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    out = heedls(where, cwd=tmp_path, env_dir=tmp_path)
    assert refused(out, why), out.stderr


def test_a_project_file_nested_too_deep_is_a_note_and_the_suggestion_still_comes(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.heedls]\nx = " + "[" * 3000 + "]" * 3000 + "\n")
    (tmp_path / "a.py").write_text("import collections\n\nd = collections.OrderedD\n")
    out = heedls("a.py:3:25", "--no-gate", cwd=tmp_path, env_dir=tmp_path)
    assert out.returncode == 0 and out.stdout == b"ict\n", out.stderr[-300:]
    assert b"values nested too deep); using defaults" in out.stderr and b"Traceback" not in out.stderr
