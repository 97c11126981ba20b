"""The `local` provider in a multi-root workspace: every folder's code is indexed, fairly, and kept
up to date as folders come and go and their files change."""

from __future__ import annotations

from pathlib import Path

import pytest
from heedls.server.providers import local as local_mod
from heedls.server.providers.code_tokens import tokenize_source
from heedls.server.providers.local import IndexLimits, LocalProvider, workspace_files

from tests.unit.test_local_provider import _complete, _until_suggested, _write

APP = "import os\n\n\ndef main():\n    return os.getcwd()\n"
LIB = "import os\n\n\ndef zebras(herd):\n    zebra_count = count_the_zebras(herd)\n    return zebra_count\n"


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    app, lib = tmp_path / "app", tmp_path / "lib"
    _write(app, {"app/__init__.py": "", "app/main.py": APP})
    _write(lib, {"zoo/__init__.py": "", "zoo/herd.py": LIB})
    return app, lib


async def test_names_defined_only_in_the_second_folder_are_suggested(folders: tuple[Path, Path]) -> None:
    app, lib = folders
    provider = LocalProvider(app, use_jedi=False, folders=[app, lib])
    try:
        provider.index_now()
        cands = await _complete(provider, app / "app" / "new.py", "zebra_count = cou")
        assert cands and cands[0].text == "nt_the_zebras(herd)"
        assert provider.index_stats()["files"] == 4
    finally:
        await provider.aclose()


async def test_a_provider_given_only_its_workspace_indexes_that_folder_alone(folders: tuple[Path, Path]) -> None:
    app, _ = folders
    provider = LocalProvider(app, use_jedi=False)
    try:
        provider.index_now()
        assert provider.folders == [app.resolve()] and provider.index_stats()["files"] == 2
        assert not await _complete(provider, app / "app" / "new.py", "zebra_count = cou")
    finally:
        await provider.aclose()


async def test_a_folder_added_or_removed_is_in_or_out_of_the_index_without_the_rebuild_spacing(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """workspace/didChangeWorkspaceFolders: the index follows the folders at once, not after the
    two minutes that space out rebuilds after edits."""
    app, lib = folders
    monkeypatch.setattr(local_mod, "REINDEX_INTERVAL_S", 3600.0)
    provider = LocalProvider(app, use_jedi=False)
    provider.start_indexing()
    try:
        assert await _until_suggested(provider, app / "app" / "new.py", "import ", "os", 10.0)
        provider.set_folders([app, lib])
        assert await _until_suggested(provider, app / "app" / "new.py", "zebra_count = cou", "nt_the_zebras(herd)", 10.0)
        provider.set_folders([app])
        assert await _until_suggested(provider, app / "app" / "new.py", "import ", "os", 10.0)
        for _ in range(100):
            if provider.index_stats()["files"] == 2:
                break
            await _until_suggested(provider, app / "app" / "new.py", "import ", "os", 0.1)
        assert provider.index_stats()["files"] == 2
        assert not await _complete(provider, app / "app" / "new.py", "zebra_count = cou")
    finally:
        await provider.aclose()


async def test_watched_file_events_and_the_disk_check_cover_every_folder(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, lib = folders
    monkeypatch.setattr(local_mod, "REINDEX_INTERVAL_S", 0.2)
    monkeypatch.setattr(local_mod, "DISK_CHECK_S", 3600.0)
    provider = LocalProvider(app, use_jedi=False, folders=[app, lib])
    provider.start_indexing()
    try:
        assert await _until_suggested(provider, app / "app" / "new.py", "zebra_count = cou", "nt_the_zebras(herd)", 10.0)
        # a watched-file event for a file of the second folder
        _write(lib, {"zoo/herd.py": LIB.replace("count_the_zebras", "count_every_zebra")})
        provider.files_changed([str(lib / "zoo" / "herd.py")])
        assert await _until_suggested(provider, app / "app" / "new.py", "zebra_count = cou", "nt_every_zebra(herd)", 10.0)
        # no event at all: the periodic look at the disk walks the second folder too
        monkeypatch.setattr(local_mod, "DISK_CHECK_S", 0.2)
        _write(lib, {"zoo/lions.py": "lion_count = count_the_lions(pride)\n"})
        assert await _until_suggested(provider, app / "app" / "new.py", "lion_count = cou", "nt_the_lions(pride)", 10.0)
    finally:
        await provider.aclose()


def test_a_huge_folder_does_not_starve_a_small_one(tmp_path: Path) -> None:
    """The file cap is the workspace's, shared out: a folder with fewer files than its share keeps
    them all and leaves the rest to the others; files come in turns so the token cap cuts alike."""
    big, small, medium = tmp_path / "big", tmp_path / "small", tmp_path / "medium"
    _write(big, {f"m{i:03}.py": f"x_{i} = {i}\n" for i in range(200)})
    _write(small, {f"s{i}.py": f"y_{i} = {i}\n" for i in range(3)})
    _write(medium, {f"n{i:02}.py": f"z_{i} = {i}\n" for i in range(40)})
    limits = IndexLimits(max_files=30)
    found = [Path(p).parent.name for p in workspace_files([big, small, medium], limits)]
    assert len(found) == 30
    assert found.count("small") == 3 and sorted([found.count("big"), found.count("medium")]) == [13, 14]
    assert found[:3] == ["big", "small", "medium"]  # in turns

    # the token cap: each folder gets about as many files in, whatever the walk order
    per_file = len(tokenize_source("x_0 = 0\n"))
    provider = LocalProvider(big, use_jedi=False, folders=[big, medium],
                             limits=IndexLimits(max_files=3000, max_tokens=20 * per_file))
    provider.index_now()
    indexed = [Path(p).parent.name for p in provider._index.fids] if provider._index else []
    assert indexed.count("big") == indexed.count("medium") == 10


def test_a_folder_inside_another_counts_its_files_once(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    _write(outer, {"a.py": "a = 1\n", "inner/b.py": "b = 2\n"})
    found = workspace_files([outer, outer / "inner"], IndexLimits())
    assert sorted(Path(p).name for p in found) == ["a.py", "b.py"]


async def test_jedi_reads_a_file_s_imports_from_its_own_folder_s_project(tmp_path: Path) -> None:
    """jedi with the first folder's project finds none of the second folder's modules (it answered
    nothing for `helpers_b.spe`); each file is completed in the project of the folder holding it."""
    from heedls.server.providers.jedi_source import JediSource

    first, second = tmp_path / "first", tmp_path / "second"
    _write(first, {"main_a.py": "x = 1\n"})
    _write(second, {"pkgb/__init__.py": "", "pkgb/helpers_b.py": "def special_thing_b():\n    return 1\n"})
    source = JediSource(first.resolve(), [first.resolve(), second.resolve()])
    code = "from pkgb import helpers_b\nhelpers_b.spe"
    try:
        assert source.project_for(str(second / "use_b.py")) == second.resolve()
        assert source.project_for(str(first / "main_a.py")) == first.resolve()
        assert source.project_for(str(tmp_path / "elsewhere.py")) == first.resolve()  # in no folder
        found = await source.complete(code, str(second / "use_b.py"), 2, 13, timeout_s=60)
        assert found is not None and [name.name for name in found] == ["special_thing_b"]
    finally:
        source.close()


async def test_the_provider_tells_jedi_of_folders_added_later(folders: tuple[Path, Path]) -> None:
    app, lib = folders
    provider = LocalProvider(app, folders=[app])
    try:
        assert provider._jedi is not None and provider._jedi.project_for(str(lib / "zoo" / "herd.py")) == app.resolve()
        provider.set_folders([app, lib])
        assert provider._jedi.project_for(str(lib / "zoo" / "herd.py")) == lib.resolve()
    finally:
        await provider.aclose()


async def test_folders_added_and_removed_leave_only_the_current_folders_files_tokenized_in_memory(tmp_path: Path) -> None:
    """A long day adds and removes workspace folders: each removed folder's files stayed tokenized
    in the provider's memory for the life of the server (26 folders of 15 files: 330 files held
    beyond the 361 indexed), and so did deleted files."""
    app = tmp_path / "app"
    _write(app, {"app/__init__.py": "", "app/main.py": APP})
    extras = []
    for k in range(10):
        extra = tmp_path / f"extra{k}"
        _write(extra, {f"x{k}/__init__.py": "", f"x{k}/mod.py": LIB})
        extras.append(extra)
    provider = LocalProvider(app, use_jedi=False, folders=[app])
    try:
        provider.index_now()
        for extra in extras:
            provider.set_folders([app, extra])
            provider.index_now()
        (app / "app" / "main.py").unlink()
        provider.set_folders([app])
        provider.index_now()
        assert provider.index_stats()["files"] == 1
        held = sorted(Path(key).name for key in provider._file_cache)
        assert held == ["__init__.py"]  # 21 files (10 removed folders' and a deleted one) before
    finally:
        await provider.aclose()
