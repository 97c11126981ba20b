"""The `local` provider end to end (no server): useful whole-line suggestions on ordinary code."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from heedls.server.providers import local as local_mod
from heedls.server.providers.base import Candidate, CompletionRequest, Provider
from heedls.server.providers.local import IndexLimits, LocalProvider, python_files


def _request(path: Path, prefix: str) -> CompletionRequest:
    line = prefix.count("\n")
    col = len(prefix) - (prefix.rfind("\n") + 1)
    return CompletionRequest(prefix=prefix, suffix="", path=str(path), line=line, character=col, document=prefix)


async def _complete(provider: LocalProvider, path: Path, prefix: str) -> list[Candidate]:
    # A generous budget: these tests are about what is suggested, not how fast.
    provider.budget_s = 2.0
    return await provider.complete(_request(path, prefix), 2.0)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


LIB = '''import os
import sys
from collections import OrderedDict, defaultdict


def scale(values, factor):
    out = []
    for i in range(len(values)):
        out.append(values[i] * factor)
    return out


def pairs(values):
    for i in range(len(values)):
        for j in range(len(values)):
            yield values[i], values[j]
'''

OTHER = '''import os
import sys
from collections import OrderedDict, defaultdict


def index_of(items, wanted):
    for i in range(len(items)):
        if items[i] == wanted:
            return i
    return -1
'''


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/lib.py": LIB, "pkg/other.py": OTHER})
    return tmp_path


@pytest.fixture
async def provider(workspace: Path, tmp_path: Path) -> LocalProvider:
    prov = LocalProvider(workspace, cache_dir=tmp_path / "cache", use_jedi=False)
    prov.index_now()
    yield prov  # type: ignore[misc]
    await prov.aclose()


def test_it_is_a_provider_named_local(provider: LocalProvider) -> None:
    assert isinstance(provider, Provider)
    assert provider.name == "local"


async def test_finishes_for_i_in_range_len(provider: LocalProvider, workspace: Path) -> None:
    prefix = "def total(numbers):\n    s = 0\n    for i in range(len("
    cands = await _complete(provider, workspace / "pkg" / "new.py", prefix)
    assert cands, "no suggestion"
    top = cands[0]
    # Whatever name it picks, it closes both calls and opens the block.
    assert re.fullmatch(r"\w+\)\):", top.text), top.text
    assert top.provider == "local" and top.source
    assert top.confidence is not None and 0.0 <= top.confidence <= 1.0


async def test_finishes_for_i_in_range_len_with_the_name_used_earlier_in_the_file(
    provider: LocalProvider, workspace: Path
) -> None:
    prefix = (
        "def first(rows):\n"
        "    for i in range(len(rows)):\n"
        "        print(rows[i])\n"
        "\n"
        "\n"
        "def second(rows):\n"
        "    for i in range(len("
    )
    cands = await _complete(provider, workspace / "pkg" / "new.py", prefix)
    assert cands and cands[0].text == "rows)):"


TEST_FILE = '''import unittest

from pkg.lib import scale


class TestScale(unittest.TestCase):
    def test_one(self):
        self.assertEqual(scale([1], 2), [2])
        self.assertEqual(scale([1, 2], 2), [2, 4])
        self.assertEqual(scale([], 2), [])
'''


async def test_repeats_the_assert_equal_pattern_of_a_test_file(provider: LocalProvider, workspace: Path) -> None:
    path = workspace / "tests" / "test_scale.py"
    # At the start of the next line: the whole pattern's opening.
    cands = await _complete(provider, path, TEST_FILE + "        ")
    assert cands and cands[0].text.startswith("self.assertEqual(scale("), cands[0].text
    # Mid-way through the attribute: the rest of the name and the call.
    cands = await _complete(provider, path, TEST_FILE + "        self.assertE")
    assert cands and cands[0].text.startswith("qual(scale("), cands[0].text
    assert cands[0].confidence is not None and cands[0].confidence > 0.05


async def test_suggests_an_import_line_seen_elsewhere_in_the_repo(provider: LocalProvider, workspace: Path) -> None:
    path = workspace / "pkg" / "third.py"
    cands = await _complete(provider, path, "import os\nimport sys\nfrom collections import ")
    assert cands and cands[0].text == "OrderedDict, defaultdict"
    # At a line start right after `import os`: the import that followed it elsewhere.
    cands = await _complete(provider, path, "import os\n")
    assert cands and cands[0].text == "import sys"


async def test_the_current_file_is_held_out_of_the_index(workspace: Path, tmp_path: Path) -> None:
    _write(workspace, {"pkg/unique.py": "magic_value = compute_the_unique_thing(42)\n"})
    prov = LocalProvider(workspace, use_jedi=False)
    prov.index_now()
    try:
        # Typed in another file, the line is found in pkg/unique.py ...
        elsewhere = await _complete(prov, workspace / "pkg" / "mine.py", "magic_value = comp")
        assert any("ute_the_unique_thing(42)" in c.text for c in elsewhere)
        # ... but not when editing pkg/unique.py itself: its disk copy is not evidence.
        itself = await _complete(prov, workspace / "pkg" / "unique.py", "magic_value = comp")
        assert not any("unique_thing" in c.text for c in itself)
    finally:
        await prov.aclose()


async def test_confidence_is_ordered_and_bounded(provider: LocalProvider, workspace: Path) -> None:
    cands = await _complete(provider, workspace / "pkg" / "new.py", "import os\nimport sys\nfrom collections import ")
    confs = [c.confidence for c in cands]
    assert all(c is not None and 0.0 <= c <= 1.0 for c in confs)
    assert confs == sorted(confs, reverse=True)  # type: ignore[type-var]


async def test_open_buffers_override_the_disk_at_reindex(provider: LocalProvider, workspace: Path) -> None:
    provider.update_document(str(workspace / "pkg" / "other.py"), "zebra_count = count_the_zebras(herd)\n")
    provider.index_now()
    cands = await _complete(provider, workspace / "pkg" / "new.py", "zebra_count = cou")
    assert cands and cands[0].text == "nt_the_zebras(herd)"


def test_indexing_skips_environments_vcs_and_huge_files(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "app.py": "x = 1\n",
            ".venv/lib/site.py": "x = 1\n",
            "node_modules/pkg/a.py": "x = 1\n",
            ".git/hooks/h.py": "x = 1\n",
            "env2/pyvenv.cfg": "home = /usr\n",
            "env2/lib/mod.py": "x = 1\n",
            "big.py": "x = 1\n" * 200_000,
        },
    )
    found = [Path(p).relative_to(tmp_path).as_posix() for p in python_files(tmp_path, IndexLimits())]
    assert found == ["app.py"]
    assert len(python_files(tmp_path, IndexLimits(max_files=0))) <= 1


def test_an_open_buffer_above_the_file_cap_is_not_indexed_either(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a 1 MB cap that a file on disk keeps must hold for the same file open in the editor and
    # grown past it (a pasted data dump): tokenizing it whole took seconds and its memory
    prov = LocalProvider(workspace, use_jedi=False, limits=IndexLimits(max_file_bytes=10_000))
    tokenized: list[int] = []
    real = local_mod.tokenize_source
    monkeypatch.setattr(local_mod, "tokenize_source", lambda text: tokenized.append(len(text)) or real(text))
    prov.update_document(str(workspace / "pkg" / "lib.py"), "value = 1\n" * 5_000)  # 50 kB
    prov.index_now()
    assert tokenized and max(tokenized) <= 10_000  # the disk copy (LIB), not the 50 kB buffer


async def test_a_restart_reuses_the_persisted_index(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache2"
    first = LocalProvider(workspace, cache_dir=cache, use_jedi=False)
    first.index_now()
    await first.aclose()
    assert [p.name for p in cache.iterdir()] == [p.name for p in cache.glob("local-index-*.marshal")] != []

    def no_tokenizing(text: str) -> list[str]:
        raise AssertionError("unchanged files must not be re-tokenized")

    monkeypatch.setattr(local_mod, "tokenize_source", no_tokenizing)
    second = LocalProvider(workspace, cache_dir=cache, use_jedi=False)
    second.index_now()
    assert second.index_stats()["files"] == first.index_stats()["files"]
    await second.aclose()


async def test_a_failed_save_keeps_the_persisted_index_whole(workspace: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The index is written whole or not at all (files.write_atomic): a full disk half-way leaves the
    previous index and no temporary file (a fixed `.tmp` name was also shared by two servers)."""
    cache = tmp_path / "cache3"
    first = LocalProvider(workspace, cache_dir=cache, use_jedi=False)
    first.index_now()
    await first.aclose()
    [store] = cache.iterdir()
    before = store.read_bytes()
    (workspace / "more.py").write_text("def more():\n    return 1\n")

    real_write = Path.write_bytes

    def half_then_full(self: Path, data: bytes) -> int:
        real_write(self, data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    second = LocalProvider(workspace, cache_dir=cache, use_jedi=False)
    second.index_now()  # a warning, not an error
    await second.aclose()
    monkeypatch.undo()
    assert [p.name for p in cache.iterdir()] == [store.name] and store.read_bytes() == before


async def test_background_indexing_does_not_block_requests(workspace: Path) -> None:
    prov = LocalProvider(workspace, use_jedi=False)
    prov.start_indexing()  # returns at once; requests before the index exists still answer
    cands = await prov.complete(_request(workspace / "x.py", "import o"), 0.05)
    assert isinstance(cands, list)
    await prov.aclose()


async def test_a_zero_deadline_returns_promptly_with_a_list(provider: LocalProvider, workspace: Path) -> None:
    assert isinstance(await provider.complete(_request(workspace / "x.py", "for i in range(len("), 0.0), list)


async def test_jedi_completes_an_attribute_with_the_open_paren(workspace: Path) -> None:
    prov = LocalProvider(workspace, jedi_share=1.0, budget_s=20.0)  # wait for jedi's first start
    try:
        prefix = "import collections\ncollections.OrderedD"
        cands = await prov.complete(_request(workspace / "pkg" / "j.py", prefix), 20.0)
        jedi = [c for c in cands if c.source == "jedi"]
        assert jedi and jedi[0].text == "ict("
    finally:
        await prov.aclose()


async def test_the_cache_sees_the_whole_file_when_the_prefix_is_truncated(workspace: Path) -> None:
    prov = LocalProvider(workspace, use_jedi=False, budget_s=2.0)
    try:
        head = "ANSWER = compute_the_answer(6, 7)\n" + "x = 0\n" * 1000
        document = head + "ANSWER = comp"
        line = document.count("\n")
        # The caller sends only the last few thousand characters, as the pipeline does ...
        request = CompletionRequest(prefix=document[-3000:], suffix="", path=str(workspace / "big.py"),
                                    line=line, character=len("ANSWER = comp"), document=document)
        cands = await prov.complete(request, 2.0)
        # ... and the line from the top of the file still completes from the cache component.
        assert cands and cands[0].text == "ute_the_answer(6, 7)"
    finally:
        await prov.aclose()


async def test_huge_documents_and_lines_are_handled(workspace: Path) -> None:
    prov = LocalProvider(workspace, use_jedi=False, budget_s=5.0)
    try:
        big = "value = compute(1)\n" * 250_000 + "value = comp"  # ~5 MB above the cursor
        request = CompletionRequest(prefix=big[-6000:], suffix="", path=str(workspace / "huge.py"),
                                    line=big.count("\n"), character=len("value = comp"), document=big)
        cands = await prov.complete(request, 5.0)
        assert cands and cands[0].text == "ute(1)"
        line = "x = [" + "1, " * 400_000  # a single 1.2 MB line
        cands = await prov.complete(_request(workspace / "long.py", line), 5.0)
        assert isinstance(cands, list)
    finally:
        await prov.aclose()


def _with_suffix(path: Path, prefix: str, suffix: str) -> CompletionRequest:
    col = len(prefix) - (prefix.rfind("\n") + 1)
    return CompletionRequest(prefix=prefix, suffix=suffix, path=str(path), line=prefix.count("\n"), character=col,
                             document=prefix + suffix)


async def test_what_follows_the_cursor_is_not_suggested_again(provider: LocalProvider, workspace: Path) -> None:
    prefix = "def total(numbers):\n    s = 0\n    for i in range(len("
    provider.budget_s = 2.0
    cands = await provider.complete(_with_suffix(workspace / "pkg" / "s.py", prefix, "))\n"), 2.0)
    assert cands and all(not c.text.endswith("))") for c in cands)  # `values):`, not `values))` + `))`


async def test_nothing_is_typed_in_front_of_a_word_after_the_cursor(provider: LocalProvider, workspace: Path) -> None:
    # `len(val|ues))`: the n-gram model does not see the suffix, so anything it offers would retype
    # the rest of the word (`ues)):` + `ues)):`) or push it aside
    provider.budget_s = 2.0
    prefix = "def total(numbers):\n    s = 0\n    for i in range(len(val"
    path = workspace / "pkg" / "s.py"
    assert [c.text for c in await provider.complete(_with_suffix(path, prefix, ""), 2.0)][:1] == ["ues)):"]
    assert await provider.complete(_with_suffix(path, prefix, "ues)):\n"), 2.0) == []
    assert await provider.complete(_with_suffix(path, prefix[:-3], "values)):\n"), 2.0) == []


async def test_inside_a_string_or_a_comment_only_the_literal_is_completed(tmp_path: Path) -> None:
    # after `x = "hello ` the string is still open: going on with code as if it were closed
    # (`x = "hello None,`) is never right; completing a string the workspace has is
    lines = ['def greet(name, other):', '    x = "hello world"', '    y = x.encode("utf-8")',
             '    z = name.encode("utf-8")', '    w = None', '    return x, None, [], {}']
    _write(tmp_path, {f"m{i}.py": "\n".join(lines * 3) + "\n" for i in range(4)})
    prov = LocalProvider(tmp_path, use_jedi=False, budget_s=2.0)
    prov.index_now()
    try:
        path = tmp_path / "new.py"
        for open_literal in ('def f(name):\n    x = "hello ', "def f(name):\n    # say hello ",
                             "def f(name):\n    w = None  # the "):
            for cand in await prov.complete(_request(path, open_literal), 2.0):
                assert not cand.text.lstrip().startswith(("None", "=", ",", ")")), (open_literal, cand.text)
        cands = await prov.complete(_request(path, 'def f(name):\n    y = name.encode("ut'), 2.0)
        assert cands and cands[0].text.startswith('f-8")')
    finally:
        await prov.aclose()


async def test_optionally_the_block_line_after_a_colon(tmp_path: Path) -> None:
    main_block = 'def main():\n    pass\n\n\nif __name__ == "__main__":\n    main()\n'
    _write(tmp_path, {f"tool{i}.py": f"import os\n\n\n{main_block}" for i in range(3)})
    prov = LocalProvider(tmp_path, use_jedi=False, block_lines=True, budget_s=2.0)
    prov.index_now()
    try:
        cands = await prov.complete(_request(tmp_path / "new.py", 'if __name__ == "__main__"'), 2.0)
        assert cands and cands[0].text == ":\n    main()"
    finally:
        await prov.aclose()


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="POSIX")
def test_only_regular_files_are_indexed_so_a_fifo_or_a_device_cannot_hang_or_flood_it(tmp_path: Path) -> None:
    """A FIFO named x.py blocked the index build forever; a link to /dev/zero read until memory ran
    out (stat() gives both a size of 0, under the cap)."""
    import os

    _write(tmp_path, {"app.py": "def scale(x):\n    return x * 2\n"})
    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "zero.py").symlink_to("/dev/zero")
    found = [Path(p).name for p in python_files(tmp_path, IndexLimits())]
    assert found == ["app.py"]
    provider = LocalProvider(tmp_path, cache_dir=tmp_path / "cache")
    provider.index_now([tmp_path / "pipe.py", tmp_path / "zero.py", tmp_path / "app.py"])  # returns: nothing read


@pytest.mark.parametrize("line_end", ["\r\n", "\r"])
async def test_a_file_with_crlf_or_cr_line_ends_gets_the_suggestions_of_its_lf_twin(
    provider: LocalProvider, workspace: Path, line_end: str
) -> None:
    """LSP ends a line at \\r, \\n or \\r\\n: an old Mac file (\\r only) is lines too, not one long line."""
    path = workspace / "pkg" / "new.py"
    for prefix in (
        TEST_FILE + "        ",  # a line start: the file's own pattern
        TEST_FILE + "        self.assertE",  # mid-line
        "import os\n",  # the line that followed the previous line elsewhere
    ):
        twin = prefix.replace("\n", line_end)
        request = CompletionRequest(prefix=twin, suffix="", path=str(path), line=prefix.count("\n"),
                                    character=len(prefix) - (prefix.rfind("\n") + 1), document=twin)
        expected = [c.text for c in await _complete(provider, path, prefix)]
        assert expected and [c.text for c in await provider.complete(request, 2.0)] == expected, repr(prefix)


async def test_a_megabyte_line_above_the_cursor_is_tokenized_as_one_capped_line(
    provider: LocalProvider, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model runs on the event loop: a 1 MB data literal above the cursor was tokenized whole
    (0.6-1.5 s per first request). Lines longer than the cursor line's cap are tokenized as their
    indentation and last MAX_LINE_CHARS characters, as the cursor line already was."""
    from heedls.server.providers import code_tokens

    seen: list[int] = []
    real = code_tokens.tokenize_line
    monkeypatch.setattr(code_tokens, "tokenize_line", lambda text: seen.append(len(text)) or real(text))
    provider.budget_s = 0.045  # the server's
    prefix = "DATA = [" + "1, " * 350_000 + "]\nimport os\n"
    cands = await provider.complete(_request(workspace / "pkg" / "data.py", prefix), 0.25)
    # counted, not timed: all lines together are tokenized as about one capped line, not 1 MB
    assert max(seen) <= 2 * code_tokens.MAX_LINE_CHARS and sum(seen) <= 3 * code_tokens.MAX_LINE_CHARS
    assert cands and cands[0].text == "import sys"  # the lines around it still count


async def test_a_request_out_of_time_before_its_document_is_tokenized_leaves_the_work_to_the_next(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first request in a long file stops tokenizing at its deadline and answers nothing (rather
    than late); the lines done are kept, and a later request answers as if it had all been done
    at once, edits in between included."""
    record = ", ".join(f"field_{j}" for j in range(40))
    lines = [f"row_{i} = record(key_{i}, {record})\n" if i % 10 else "total = compute_total(rows, factor)\n"
             for i in range(1800)]
    document = "".join(lines) + "total = comp"
    edited = "".join(lines[:900]) + "# an edit half-way\n" + "".join(lines[900:]) + "total = comp"
    path = workspace / "pkg" / "long.py"
    interrupted = LocalProvider(workspace, use_jedi=False, budget_s=0.0)
    fresh = LocalProvider(workspace, use_jedi=False)
    try:
        calls = _loop_tokenizing(monkeypatch)
        assert await interrupted.complete(_request(path, document), 0.0) == []
        assert len(calls) < 100  # a few lines' work, not 1800 lines' (counted, not timed)
        monkeypatch.undo()
        for text in (document, edited, edited):
            await interrupted.complete(_request(path, text), 0.0)
        expected = await _complete(fresh, path, edited)
        assert expected and await _complete(interrupted, path, edited) == expected
    finally:
        await interrupted.aclose()
        await fresh.aclose()


async def _until_suggested(provider: LocalProvider, path: Path, prefix: str, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.text == text for c in await _complete(provider, path, prefix)):
            return True
        await asyncio.sleep(0.1)
    return False


@contextlib.asynccontextmanager
async def _indexing(workspace: Path, monkeypatch: pytest.MonkeyPatch, disk_check_s: float) -> AsyncIterator[LocalProvider]:
    """A provider indexing in the background, rebuilt 0.2 s after a change and checking the disk
    every `disk_check_s`, once its first index answers."""
    monkeypatch.setattr(local_mod, "DISK_CHECK_S", disk_check_s)
    monkeypatch.setattr(local_mod, "REINDEX_INTERVAL_S", 0.2)
    prov = LocalProvider(workspace, use_jedi=False)
    prov.start_indexing()
    try:
        assert await _until_suggested(prov, workspace / "mine.py", "import os\n", "import sys", 10.0)
        yield prov
    finally:
        await prov.aclose()


async def test_files_changed_on_disk_reach_the_index_without_a_buffer_edit(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A git checkout, a formatter run or a new module changes files no buffer shows: with no
    event at all, the background indexer finds them by size and mtime at its periodic check."""
    async with _indexing(workspace, monkeypatch, disk_check_s=0.2) as prov:
        _write(workspace, {"pkg/zebras.py": "zebra_count = count_the_zebras(herd)\n"})  # a new module
        assert await _until_suggested(prov, workspace / "mine.py", "zebra_count = cou", "nt_the_zebras(herd)", 10.0)
        _write(workspace, {"pkg/zebras.py": "zebra_count = count_every_zebra(herd)\n"})  # changed in place
        assert await _until_suggested(prov, workspace / "mine.py", "zebra_count = cou", "nt_every_zebra(herd)", 10.0)


async def test_a_watched_file_event_reaches_the_index_at_the_next_spaced_rebuild(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client reports files changed on disk (workspace/didChangeWatchedFiles): they are
    re-read at the next rebuild, spaced as after a buffer edit, not at the next disk check."""
    async with _indexing(workspace, monkeypatch, disk_check_s=3600.0) as prov:
        _write(workspace, {"pkg/other.py": "zebra_count = count_the_zebras(herd)\n"})
        prov.files_changed([str(workspace / "pkg" / "other.py")])
        assert await _until_suggested(prov, workspace / "mine.py", "zebra_count = cou", "nt_the_zebras(herd)", 10.0)


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
async def test_a_five_megabyte_document_answers_within_the_servers_budget(workspace: Path, line_end: str) -> None:
    """Each request finds the cursor in the whole document and splits off the lines before it: for
    250,000 lines done line by line that alone took ~100 ms (and ending \r-only lines with \n as
    much again), so at the server's 45 ms budget the deadline came before the context was known,
    on every keystroke."""
    prov = LocalProvider(workspace, use_jedi=False)  # the server's budget
    try:
        big = ("value = compute(1)\n" * 250_000 + "value = comp").replace("\n", line_end)
        request = CompletionRequest(prefix=big[-6000:], suffix="", path=str(workspace / "huge.py"),
                                    line=250_000, character=len("value = comp"), document=big)
        # the first requests tokenize the 2,000-line window, each as far as its budget goes; on a
        # busy machine that takes more keystrokes, but the walk before it must never eat them all
        for _ in range(40):
            answer = await prov.complete(request, 0.25)
            if answer:
                break
        assert answer and answer[0].text == "ute(1)"
    finally:
        await prov.aclose()


def _long_document(lines: int = 4000) -> str:
    record = ", ".join(f"field_{j}" for j in range(10))
    return "".join(f"row_{i} = record(key_{i}, {record})\n" if i % 10 else "total = compute_total(rows, factor)\n"
                   for i in range(lines))


async def _primed(provider: LocalProvider, path: Path, text: str) -> None:
    """The document as an editor opens it (didOpen), and the wait for it to be tokenized."""
    provider.update_document(str(path), text)
    for _ in range(1000):
        if not provider.priming(str(path)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the document was never primed")


async def test_an_opened_document_is_tokenized_before_its_first_request(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first request in a file of thousands of lines spent its budget tokenizing them and
    answered nothing. Opening the document tokenizes it off the request path (in slices, on the
    event loop): its first request tokenizes none of the lines above the cursor, and answers what
    a request with all the time it wants answers."""
    from heedls.server.providers import code_tokens

    document = _long_document() + "total = comp"
    path = workspace / "pkg" / "long.py"
    opened = LocalProvider(workspace, use_jedi=False)
    fresh = LocalProvider(workspace, use_jedi=False)
    try:
        opened.index_now()
        fresh.index_now()
        await _primed(opened, path, document)
        calls: list[str] = []
        real = code_tokens.tokenize_one
        monkeypatch.setattr(code_tokens, "tokenize_one", lambda line, state: calls.append(line) or real(line, state))
        answer = await opened.complete(_request(path, document), 0.25)
        assert calls == []
        monkeypatch.setattr(code_tokens, "tokenize_one", real)
        assert answer and answer == await _complete(fresh, path, document)
        assert answer[0].text == "ute_total(rows, factor)"
    finally:
        await opened.aclose()
        await fresh.aclose()


async def test_a_primed_document_answers_its_first_request_even_with_no_time_to_tokenize(workspace: Path) -> None:
    """With no budget at all (a request whose deadline has passed on a busy machine), a 4,000-line
    document that was opened a moment before still gets the line its own text repeats; unprimed,
    the same request tokenizes one line and answers nothing."""
    document = _long_document() + "total = comp"
    path = workspace / "pkg" / "long.py"
    primed = LocalProvider(workspace, use_jedi=False, budget_s=0.0)
    cold = LocalProvider(workspace, use_jedi=False, budget_s=0.0)
    try:
        for provider in (primed, cold):
            provider.index_now()
        await _primed(primed, path, document)
        answer = await primed.complete(_request(path, document), 0.0)
        assert answer and answer[0].text == "ute_total(rows, factor)"
        assert await cold.complete(_request(path, document), 0.0) == []
    finally:
        await primed.aclose()
        await cold.aclose()


async def test_priming_gives_the_event_loop_back_and_an_edit_starts_it_again(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Priming runs in slices of a few ms: the event loop's other work (a request) runs while a
    large document is being primed. An edit restarts it once typing pauses; lines primed before
    are reused, and a request after it tokenizes only the lines the edit changed."""
    from heedls.server.providers import code_tokens

    monkeypatch.setattr(local_mod, "PRIME_DELAY_S", 0.05)
    document = _long_document(10_000)
    path = workspace / "pkg" / "long.py"
    provider = LocalProvider(workspace, use_jedi=False)
    try:
        provider.update_document(str(path), document)
        await asyncio.sleep(0)
        assert provider.priming(str(path))  # this task ran while the document was being primed
        await _primed(provider, path, document)
        lines = document.splitlines(keepends=True)
        edited = "".join(lines[:3000]) + "# an edit\n" + "".join(lines[3000:3999]) + "total = comp"
        await _primed(provider, path, edited)
        calls: list[str] = []
        real = code_tokens.tokenize_one
        monkeypatch.setattr(code_tokens, "tokenize_one", lambda line, state: calls.append(line) or real(line, state))
        answer = await provider.complete(_request(path, edited), 0.25)
        assert answer and answer[0].text == "ute_total(rows, factor)"
        assert len(calls) <= 2  # at most the first line of the request's window (primed after another state)
    finally:
        await provider.aclose()


async def test_closing_a_document_stops_its_priming(workspace: Path) -> None:
    path = workspace / "pkg" / "long.py"
    provider = LocalProvider(workspace, use_jedi=False)
    try:
        provider.update_document(str(path), _long_document(10_000))
        await asyncio.sleep(0)
        provider.close_document(str(path))
        assert not provider.priming(str(path))
    finally:
        await provider.aclose()


async def _until_primed(provider: LocalProvider, path: Path) -> None:
    for _ in range(3000):
        if not provider.priming(str(path)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the document was never primed")


def _loop_tokenizing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The lines tokenized on this thread (the event loop's: priming, an inline request) from now on."""
    import threading

    from heedls.server.providers import code_tokens

    calls: list[str] = []
    real = code_tokens.tokenize_one
    loop_thread = threading.current_thread()

    def counted(line: str, state: code_tokens.LineState) -> tuple[list[str], code_tokens.LineState]:
        if threading.current_thread() is loop_thread:
            calls.append(line)
        return real(line, state)

    monkeypatch.setattr(code_tokens, "tokenize_one", counted)
    return calls


async def test_a_request_that_arrives_while_a_document_is_primed_is_not_interleaved_with_priming(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request in flight takes precedence over priming: no slice of priming runs until it is
    answered, even when the request leaves the event loop free meanwhile (here the threaded model,
    slowed to 50 ms on its worker thread; priming used to take the loop then). Priming resumes
    after it and completes: the next request tokenizes nothing."""
    document = _long_document(10_000)
    path = workspace / "pkg" / "long.py"
    provider = LocalProvider(workspace, use_jedi=False, threaded=True, budget_s=2.0)
    try:
        provider.index_now()
        calls = _loop_tokenizing(monkeypatch)
        provider.update_document(str(path), document)
        while len(calls) < 200:  # priming is under way
            await asyncio.sleep(0.001)
        during: list[int] = []
        real = provider._suggest

        def slow(request: CompletionRequest, names: object, until: float) -> list[Candidate]:
            during.append(len(calls))
            time.sleep(0.05)
            during.append(len(calls))
            return real(request, None, until)

        monkeypatch.setattr(provider, "_suggest", slow)
        cut = _long_document(3000) + "total = comp"
        await provider.complete(_request(path, cut), 2.0)
        assert provider.priming(str(path))  # it was still priming when the request came
        assert during[1] == during[0]  # not one line tokenized on the event loop meanwhile
        await _until_primed(provider, path)
        monkeypatch.setattr(provider, "_suggest", real)
        before = len(calls)
        provider.threaded = False  # an inline request: its tokenizing is on this thread too
        answer = await provider.complete(_request(path, _long_document(10_000) + "total = comp"), 2.0)
        assert answer and answer[0].text == "ute_total(rows, factor)"
        assert len(calls) - before <= 2
    finally:
        await provider.aclose()


async def test_priming_waits_while_the_server_is_busy_with_other_work(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Priming is idle-time work. While another of the server's threads is working (the syntax and
    lint diagnostics that the same didOpen starts; the stdin reader bringing a request in), priming
    does a fraction of what it does in the same time on an idle server (a slice now and then, so
    that it still ends), and it completes once the server is idle again. The other work here is
    hashing, which leaves the interpreter free: priming is not held back, it holds itself back."""
    import hashlib
    import threading

    calls = _loop_tokenizing(monkeypatch)
    provider = LocalProvider(workspace, use_jedi=False)
    try:
        provider.update_document(str(workspace / "idle.py"), _long_document(10_000))
        await asyncio.sleep(0.3)
        idle = len(calls)
        assert provider.priming(str(workspace / "idle.py"))  # the measure is of a document not done yet
        provider.close_document(str(workspace / "idle.py"))

        stop = time.perf_counter() + 0.3

        blob = bytes(1 << 20)

        def diagnostics() -> None:
            while time.perf_counter() < stop:
                hashlib.sha256(blob).digest()

        busy = threading.Thread(target=diagnostics)
        busy.start()
        calls.clear()
        path = workspace / "busy.py"
        provider.update_document(str(path), _long_document(10_000))
        await asyncio.sleep(0.3)
        busy.join()
        assert len(calls) < idle / 4
        await _until_primed(provider, path)
        assert len(calls) >= 10_000 - 2
    finally:
        await provider.aclose()


async def test_a_request_gets_the_same_answer_with_and_without_priming(workspace: Path) -> None:
    """Whether its document is not primed, primed part-way or primed in full, a request with the
    time it needs answers the same."""
    document = _long_document(6000) + "total = comp"
    path = workspace / "pkg" / "long.py"
    providers = [LocalProvider(workspace, use_jedi=False) for _ in range(3)]
    cold, partway, full = providers
    try:
        for provider in providers:
            provider.index_now()
        partway.update_document(str(path), document)
        await asyncio.sleep(0.05)
        assert partway.priming(str(path))
        full.update_document(str(path), document)
        await _until_primed(full, path)
        answers = [await _complete(provider, path, document) for provider in providers]
        assert answers[0] and answers[0][0].text == "ute_total(rows, factor)"
        assert answers[1] == answers[0] and answers[2] == answers[0]
    finally:
        for provider in providers:
            await provider.aclose()


def test_freed_memory_is_given_back_to_the_system_where_the_c_library_can() -> None:
    # glibc (Linux): malloc_trim; elsewhere there is nothing to call and nothing is done
    import platform

    glibc = platform.libc_ver()[0] == "glibc"
    assert local_mod.release_free_memory() is glibc
    assert (local_mod._malloc_trim() is not None) is glibc


async def test_each_index_build_is_followed_by_giving_freed_memory_back(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A rebuild drops the previous index; what it freed must not stay in the allocator's arenas.
    import threading

    released = threading.Event()
    indexed_then: list[bool] = []
    prov = LocalProvider(workspace, use_jedi=False)

    def release() -> bool:
        indexed_then.append(prov.indexed)
        released.set()
        return True

    monkeypatch.setattr(local_mod, "release_free_memory", release)
    prov.start_indexing()
    try:
        assert await asyncio.to_thread(released.wait, 60)
        assert indexed_then[0]  # after the build, with the new index in place
    finally:
        await prov.aclose()
