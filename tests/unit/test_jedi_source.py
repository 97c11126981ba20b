"""The jedi worker: a parser cache left broken by a process killed while writing it (parso writes its
pickles in place) costs a miss and a warning, not jedi's answers for good."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from heedls.server.providers.jedi_source import JediSource

CODE = "import collections\n\nd = collections.OrderedD\n"


async def _names(source: JediSource, path: Path) -> list[str]:
    found = await source.complete(CODE, str(path), 3, len("d = collections.OrderedD"), timeout_s=60.0)
    return [c.name for c in found or []]


async def test_a_truncated_parser_cache_file_is_deleted_and_jedi_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # jedi's cache directory, in the worker
    path = tmp_path / "a.py"
    path.write_text(CODE)
    first = JediSource(tmp_path)
    try:
        assert "OrderedDict" in await _names(first, path)
    finally:
        first.close()
    pickles = list((tmp_path / "cache").rglob("*.pkl"))
    assert pickles, "jedi wrote no parser cache to break"
    for pickle_file in pickles:  # as a kill -9 halfway through each write leaves them
        pickle_file.write_bytes(pickle_file.read_bytes()[:40])

    second = JediSource(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="heedls.local.jedi"):
            assert "OrderedDict" in await _names(second, path)
    finally:
        second.close()
    assert "jedi's parser cache had an unreadable file" in caplog.text
    rebuilt = list((tmp_path / "cache").rglob("*.pkl"))
    assert rebuilt and all(p.stat().st_size > 40 for p in rebuilt)  # parso wrote whole ones again
