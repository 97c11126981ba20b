"""Files written completely or not at all: the data goes to a temporary sibling, then os.replace
(atomic on one file system) puts it in place, so a crash never leaves half a file and a reader sees
the old file or the new one. Also what such a writer needs around it: a user's source file keeps
its line endings, mode and symlink when rewritten (rewrite_source), and processes sharing a file
take turns through an advisory lock (locked)."""

from __future__ import annotations

import difflib
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from heedls.analyzers.lines import split_lines

try:
    import fcntl
except ImportError:  # Windows: no advisory locks between processes
    fcntl = None  # type: ignore[assignment]


def temporary_sibling(path: Path) -> Path:
    """A temporary name next to `path` that no other process uses (pid + random): two servers
    sharing a data directory never write the same one. Hidden (a leading dot), so that a listing or
    a glob of the directory does not show a half-written file while it is written."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """Yields a temporary sibling to write; on a normal exit it replaces `path`. It never outlives
    the block (an error leaves `path` as it was)."""
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def locked(path: Path, *, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """An advisory lock between processes on the file `path` (created if missing): exclusive, or
    shared with other shared holders. Yields True while it is held; False when `wait` is off and
    another process holds it. Where there are no such locks (Windows) or `path` cannot be opened,
    it yields True at once and locks nothing: a lock never stops the work it guards."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if fcntl is not None else -1
    except OSError:
        fd = -1
    if fd < 0:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _special(path: Path) -> bool:
    """An existing file that is not a regular file or a directory (/dev/null, /dev/stdout, a FIFO)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


_FD_PATH = re.compile(r"/dev/(?:std(out|err)|fd/(\d+))|/proc/self/fd/(\d+)")


def _descriptor(path: Path) -> int | None:
    """The open file descriptor a path names (/dev/stdout, /dev/fd/3, /proc/self/fd/1), if any."""
    found = _FD_PATH.fullmatch(str(path))
    if found is None:
        return None
    std, fd, proc_fd = found.groups()
    return (1 if std == "out" else 2) if std else int(fd or proc_fd)


@contextmanager
def output_file(path: Path) -> Iterator[Path]:
    """Where to write an output file the user named (`-o FILE`): a temporary sibling that replaces
    the file whole when the block completes (an error leaves the old one), with the old file's
    permissions (a private export stays private). Through a symbolic link the file it points to is
    replaced and the link stays; a file with other hard links is written in place, so that they all
    see it. /dev/stdout, /dev/stderr and /dev/fd/N are written through the descriptor itself (to a
    pipe, or appending where the shell said `>>`); another device or a FIFO (/dev/full) in place:
    renaming a file over it would replace the device."""
    fd = _descriptor(path)
    if fd is not None:
        tmp = Path(tempfile.mkstemp(prefix=".heedls-output.")[1])
        try:
            yield tmp
            with open(tmp, "rb") as data, os.fdopen(os.dup(fd), "wb") as out:
                shutil.copyfileobj(data, out)
        finally:
            tmp.unlink(missing_ok=True)
        return
    if _special(path):  # stat() follows links: a link to a FIFO or a device is one too
        yield path
        return
    target = path.resolve() if path.is_symlink() else path
    try:
        before = target.stat()
    except OSError:
        before = None
    if before is not None and stat.S_ISREG(before.st_mode) and before.st_nlink > 1:
        tmp = temporary_sibling(target)
        try:
            yield tmp  # written completely first: an error leaves the old file
            with open(tmp, "rb") as data, open(target, "r+b") as out:
                shutil.copyfileobj(data, out)
                out.truncate()
        finally:
            tmp.unlink(missing_ok=True)
        return
    with replaced_atomically(target) as tmp:
        yield tmp
        if before is not None and stat.S_ISREG(before.st_mode):
            with suppress(OSError):
                os.chmod(tmp, stat.S_IMODE(before.st_mode))


def write_atomic(path: Path, data: bytes) -> None:
    with replaced_atomically(path) as tmp:
        tmp.write_bytes(data)


def _split_lines(text: str) -> list[tuple[str, str]]:
    """(body, line ending) of each line, broken as Python breaks them (analyzers/lines.py)."""
    out = []
    for line in split_lines(text):
        body = line.rstrip("\r\n")
        out.append((body, line[len(body):]))
    return out


def with_line_endings_of(original: str, text: str) -> str:
    """`text` (read with universal newlines, then edited) with the line endings `original` has on
    disk: unchanged and changed lines keep those of the lines they stand in place of, added lines
    take the file's most common one."""
    old, new = _split_lines(original), _split_lines(text)
    endings = Counter(end for _, end in old if end)
    common = endings.most_common(1)[0][0] if endings else "\n"
    matcher = difflib.SequenceMatcher(None, [b for b, _ in old], [b for b, _ in new], autojunk=False)
    out: list[str] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for k, (body, end) in enumerate(new[j1:j2]):
            if end and tag in ("equal", "replace") and i1 + k < i2:  # a line in an old one's place
                end = old[i1 + k][1] or common
            elif end:
                end = common
            out.append(body + end)
    return "".join(out)


class ChangedOnDisk(Exception):
    """The file is no longer what the edit was made from (someone saved it meanwhile)."""


class _InPlace(Exception):
    """The file must keep its inode: rewrite it in place."""


def rewrite_source(path: Path, text: str, expected: bytes | None = None) -> None:
    """Replace a user's source file with `text` (edited after reading it with universal newlines):
    its line endings (CRLF stays CRLF), permission bits, owner and, for a symbolic link, the link
    itself (the file it points to is rewritten) are kept. Written whole or not at all (a temporary
    file, then a rename), except where a new file could not be the same file: one with other hard
    links, or owned by someone this process cannot give a file to; those are rewritten in place,
    as ruff --fix does. With `expected` (the bytes the edit was made from), a file saved since
    raises ChangedOnDisk and stays as it is."""
    target = path.resolve()
    raw = target.read_bytes()
    if expected is not None and raw != expected:
        raise ChangedOnDisk(f"{path} changed since it was read")
    original = raw.decode("utf-8", "surrogateescape")
    data = with_line_endings_of(original, text).encode("utf-8", "surrogateescape")
    before = target.stat()
    try:
        if before.st_nlink > 1:
            raise _InPlace
        with replaced_atomically(target) as tmp:
            tmp.write_bytes(data)
            shutil.copymode(target, tmp)
            made = tmp.stat()
            if (made.st_uid, made.st_gid) != (before.st_uid, before.st_gid):
                try:
                    os.chown(tmp, before.st_uid, before.st_gid)
                except PermissionError:
                    raise _InPlace from None
    except _InPlace:
        with open(target, "r+b") as fh:
            fh.write(data)
            fh.truncate()
