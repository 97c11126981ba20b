"""The local provider's workspace index when part of the workspace cannot be read (a database's
mode-000 data folder, another user's processes when `/` is a workspace folder, a file without read
permission): what cannot be read is left out, the rest is indexed and suggested from, and one
concise log line names what was left out.

Root reads everything, so unreadable entries are simulated: they raise PermissionError where the
kernel raises it for an ordinary user."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from heedls.server.providers import local as local_mod
from heedls.server.providers.base import CompletionRequest
from heedls.server.providers.local import LocalProvider

HELPERS = '''def frobnicate_the_widget_registry(widgets, registry):
    return [registry[w] for w in widgets]


items = frobnicate_the_widget_registry(widgets, registry)
others = frobnicate_the_widget_registry(widgets, registry)
'''
TYPED = "import os\n\nresult = frobnicate_the_widget_registry(wid"


def _denied(path: object) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


def _lock_folder(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """`folder` as a mode-000 folder is to a user who is not root: it is listed in its parent, but
    nothing in it can be looked at (Path.exists raises in Python 3.11) and it cannot be listed."""
    real_exists, real_scandir = Path.exists, os.scandir

    def exists(self: Path, *args: Any, **kwargs: Any) -> bool:
        if self != folder and self.is_relative_to(folder):
            raise _denied(self)
        return real_exists(self, *args, **kwargs)

    def scandir(path: Any = ".") -> Any:
        if Path(path) == folder:
            raise _denied(path)
        return real_scandir(path)

    monkeypatch.setattr(Path, "exists", exists)
    monkeypatch.setattr(os, "scandir", scandir)


def _lock_file(monkeypatch: pytest.MonkeyPatch, file: Path) -> None:
    """`file` as a mode-000 file is to a user who is not root: it can be looked at, not opened."""
    real_open = open

    def opener(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path) == file:
            raise _denied(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(local_mod, "open", opener, raising=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "pgdata").mkdir(parents=True)
    (root / "pgdata" / "base.py").write_text("x = 1\n", encoding="utf-8")
    (root / "helpers.py").write_text(HELPERS, encoding="utf-8")
    return root


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="heedls.local")
    return caplog


async def _suggestions(provider: LocalProvider, folder: Path) -> list[str]:
    path = folder / "main.py"
    request = CompletionRequest(prefix=TYPED, suffix="", path=str(path), line=2, character=len(TYPED.split("\n")[2]),
                                document=TYPED)
    provider.budget_s = 2.0  # what is suggested matters here, not how fast
    return [candidate.text for candidate in await provider.complete(request, 2.0)]


def _skipped_lines(log: pytest.LogCaptureFixture) -> list[str]:
    """The log's warnings and errors (those of the test's call)."""
    return [r.getMessage() for r in log.records if r.levelno >= logging.WARNING]


async def test_a_folder_that_cannot_be_looked_into_is_left_out_and_the_rest_of_the_workspace_suggested_from(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: pytest.LogCaptureFixture) -> None:
    _lock_folder(monkeypatch, workspace / "pgdata")
    provider = LocalProvider(workspace, cache_dir=tmp_path / "cache", use_jedi=False)
    try:
        provider.index_now()
        assert provider.index_stats()["files"] == 1  # helpers.py
        assert any(text.startswith("gets, registry)") for text in await _suggestions(provider, workspace))
    finally:
        await provider.aclose()
    [line] = _skipped_lines(log)
    assert "1 unreadable" in line and str(workspace / "pgdata") in line and "Permission denied" in line
    assert not any(r.exc_info for r in log.records)  # no traceback


async def test_a_folder_that_can_be_entered_but_not_listed_is_left_out_and_named(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: pytest.LogCaptureFixture) -> None:
    """As a folder with mode 0o100 is; and a mode-000 one from Python 3.12 on, whose Path.exists
    answers False where 3.11's raises."""
    locked = workspace / "pgdata"
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == locked:
            raise _denied(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    provider = LocalProvider(workspace, cache_dir=tmp_path / "cache", use_jedi=False)
    try:
        provider.index_now()
        assert provider.index_stats()["files"] == 1
    finally:
        await provider.aclose()
    [line] = _skipped_lines(log)
    assert str(locked) in line


async def test_a_file_that_cannot_be_read_is_left_out_and_named(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: pytest.LogCaptureFixture) -> None:
    secret = workspace / "pgdata" / "base.py"
    _lock_file(monkeypatch, secret)
    provider = LocalProvider(workspace, cache_dir=tmp_path / "cache", use_jedi=False)
    try:
        provider.index_now()
        assert provider.index_stats()["files"] == 1
        assert any(text.startswith("gets, registry)") for text in await _suggestions(provider, workspace))
    finally:
        await provider.aclose()
    [line] = _skipped_lines(log)
    assert str(secret) in line


async def test_an_unreadable_folder_in_one_of_several_workspace_folders_leaves_the_others_indexed(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: pytest.LogCaptureFixture) -> None:
    """As with `/` added as a workspace folder, where /proc holds folders of other users' processes."""
    system = tmp_path / "root"
    (system / "proc" / "1" / "fd").mkdir(parents=True)
    _lock_folder(monkeypatch, system / "proc" / "1" / "fd")
    provider = LocalProvider(workspace, cache_dir=tmp_path / "cache", use_jedi=False, folders=[workspace, system])
    try:
        provider.index_now()
        assert any(text.startswith("gets, registry)") for text in await _suggestions(provider, workspace))
    finally:
        await provider.aclose()
    [line] = _skipped_lines(log)
    assert str(system / "proc" / "1" / "fd") in line


async def test_the_same_unreadable_folder_is_named_once_not_at_every_rebuild(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: pytest.LogCaptureFixture) -> None:
    _lock_folder(monkeypatch, workspace / "pgdata")
    (workspace / "more").mkdir()
    for n in range(5):
        (workspace / "more" / f"locked{n}").mkdir()
    provider = LocalProvider(workspace, cache_dir=tmp_path / "cache", use_jedi=False)
    try:
        provider.index_now()
        provider.index_now()
        assert len(_skipped_lines(log)) == 1
        for n in range(5):
            _lock_folder(monkeypatch, workspace / "more" / f"locked{n}")
        provider.index_now()
    finally:
        await provider.aclose()
    first, second = _skipped_lines(log)
    assert "6 unreadable" in second and "and 3 more" in second  # a few named, the rest counted


async def test_a_cache_folder_that_cannot_be_looked_into_only_costs_the_persisted_index(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    _lock_folder(monkeypatch, cache)
    provider = LocalProvider(workspace, cache_dir=cache, use_jedi=False)
    try:
        provider.index_now()
        assert any(text.startswith("gets, registry)") for text in await _suggestions(provider, workspace))
    finally:
        await provider.aclose()


def test_a_watched_file_event_for_a_symlink_loop_is_ignored_not_raised(tmp_path: Path) -> None:
    """`Path.resolve()` raises RuntimeError on a symlink loop (Python 3.11): a watched-file event
    for such a path, outside the folders as given, raised out of the handler."""
    from heedls.server.providers.local import LocalProvider

    workspace = tmp_path / "ws"
    workspace.mkdir()
    loop = tmp_path / "loop.py"
    loop.symlink_to(loop)
    provider = LocalProvider(workspace, use_jedi=False)
    provider.files_changed([str(loop)])  # nothing to re-read, and no exception
    assert not provider._dirty.is_set()
    provider.files_changed([str(workspace / "new.py")])
    assert provider._dirty.is_set()
