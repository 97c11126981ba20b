"""Files written completely or not at all (files.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from heedls.server.files import (
    ChangedOnDisk,
    locked,
    output_file,
    replaced_atomically,
    rewrite_source,
    temporary_sibling,
    with_line_endings_of,
    write_atomic,
)


def test_a_file_is_replaced_whole_and_no_temporary_file_stays(tmp_path: Path) -> None:
    target = tmp_path / "model.json"
    target.write_text("old")
    write_atomic(target, b"new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_a_failed_write_leaves_the_old_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "rows.jsonl"
    target.write_text("old")
    with pytest.raises(RuntimeError), replaced_atomically(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_two_writers_never_share_a_temporary_name(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    assert temporary_sibling(target) != temporary_sibling(target)
    assert temporary_sibling(target).parent == tmp_path


def test_an_edited_crlf_file_keeps_crlf_on_every_line() -> None:
    original = "def f(a, b):\r\n    return a - b\r\n"
    assert with_line_endings_of(original, "def f(a, b):\n    return a + b\n") == "def f(a, b):\r\n    return a + b\r\n"


def test_lines_keep_the_endings_of_those_they_replace_and_added_ones_take_the_most_common() -> None:
    original = "a = 1\r\nb = 2\nc = 3\r\nd = 4\r\n"  # mixed: CRLF is the most common
    edited = "a = 1\nb = 2\nnew = 0\nc = 30\nd = 4\n"
    assert with_line_endings_of(original, edited) == "a = 1\r\nb = 2\nnew = 0\r\nc = 30\r\nd = 4\r\n"
    assert with_line_endings_of(original, "a = 1\nb = 20\nc = 3\nd = 4\n") == "a = 1\r\nb = 20\nc = 3\r\nd = 4\r\n"


def test_a_file_without_a_final_newline_and_a_form_feed_are_kept() -> None:
    original = "x = 1\r\n\x0c\r\ny = 2"  # a form feed is no line break (as when Python reads the file)
    assert with_line_endings_of(original, "x = 1\n\x0c\ny = 3") == "x = 1\r\n\x0c\r\ny = 3"
    assert with_line_endings_of("", "x = 1\n") == "x = 1\n"


def test_a_rewritten_source_keeps_its_mode_and_its_symlink(tmp_path: Path) -> None:
    real = tmp_path / "calc.py"
    real.write_bytes(b"x = 1\r\ny = 2\r\n")
    real.chmod(0o640)
    link = tmp_path / "link.py"
    link.symlink_to(real.name)
    rewrite_source(link, "x = 1\ny = 3\n", expected=b"x = 1\r\ny = 2\r\n")
    assert link.is_symlink() and real.read_bytes() == b"x = 1\r\ny = 3\r\n"
    assert real.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calc.py", "link.py"]


def test_a_source_saved_since_it_was_read_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x = 2  # the user's edit\n")
    with pytest.raises(ChangedOnDisk):
        rewrite_source(path, "x = 3\n", expected=b"x = 1\n")
    assert path.read_text() == "x = 2  # the user's edit\n"


def test_a_lock_held_elsewhere_is_reported_not_waited_for_when_asked(tmp_path: Path) -> None:
    lock = tmp_path / "rows.lock"
    with locked(lock) as held:  # exclusive (as a compaction holds it)
        assert held
        with locked(lock, shared=True, wait=False) as free:
            assert not free
    with locked(lock, shared=True, wait=False) as first, locked(lock, shared=True, wait=False) as second:
        assert first and second  # appenders share it


def test_a_lock_that_cannot_be_taken_never_stops_the_work(tmp_path: Path) -> None:
    with locked(tmp_path / "no such dir" / "x.lock", wait=False) as held:
        assert held


def test_an_output_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.jsonl"
    real.write_text("old")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real.name)
    with output_file(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "real.jsonl"]


def test_an_output_that_is_a_pipe_is_written_in_place(tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with output_file(fifo) as dest:
        assert dest == fifo
        dest.write_text("streamed\n")
    reader.join(10)
    assert got == [b"streamed\n"] and fifo.is_fifo()


def test_a_rewritten_source_with_another_hard_link_stays_one_file(tmp_path: Path) -> None:
    path = tmp_path / "calc.py"
    path.write_text("x = 1\n")
    other = tmp_path / "same_calc.py"
    other.hardlink_to(path)
    rewrite_source(path, "x = 2\n")
    assert other.read_text() == "x = 2\n" and path.stat().st_ino == other.stat().st_ino


def test_a_rewritten_source_keeps_its_owner(tmp_path: Path) -> None:
    import os

    path = tmp_path / "calc.py"
    path.write_text("x = 1\n")
    if os.geteuid() == 0:  # root can give the file away: it must give the new one back
        os.chown(path, 65534, 65534)
    owner = (path.stat().st_uid, path.stat().st_gid)
    rewrite_source(path, "x = 2\n")
    assert (path.stat().st_uid, path.stat().st_gid) == owner and path.read_text() == "x = 2\n"


def test_an_output_over_a_private_file_stays_private(tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    out.write_text("old\n")
    out.chmod(0o600)
    with output_file(out) as tmp:
        tmp.write_text("new\n")
    assert out.read_text() == "new\n" and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_an_output_with_another_hard_link_is_written_through_both(tmp_path: Path) -> None:
    out, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    out.write_text("old old old\n")
    os.link(out, other)
    with output_file(out) as tmp:
        tmp.write_text("new\n")
    assert other.read_text() == "new\n" and out.stat().st_nlink == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl"]


def test_dev_stdout_is_written_through_the_descriptor_so_a_shell_append_appends(tmp_path: Path) -> None:
    log = tmp_path / "app.txt"
    log.write_text("line before\n")
    script = ("from pathlib import Path\nfrom heedls.server import files\n"
              "with files.output_file(Path('/dev/stdout')) as tmp:\n    tmp.write_text('exported\\n')\n")
    with open(log, "a") as appended:
        subprocess.run([sys.executable, "-c", script], stdout=appended, check=True)
    assert log.read_text() == "line before\nexported\n"
    piped = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert piped.stdout == "exported\n"
