"""The `local` provider in a multi-root workspace prefers the code of the file's own folder.

One index holds every folder's code. Where two folders have the same code before the cursor and
go on differently, a file gets its own folder's continuation: a tie, or a near-tie (an own-folder
occurrence counts OWN_GROUP_WEIGHT times), goes to its own folder, in the n-gram model and in line
retrieval alike. A clear majority in another folder still wins, and code found only in another
folder is still suggested. A single-folder workspace is not affected.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from heedls.server.providers.local import LocalProvider

from tests.unit.test_local_provider import _complete, _write

pytestmark = pytest.mark.timeout(60)


def two_folders(tmp_path: Path, a_code: str, b_code: str) -> tuple[Path, Path]:
    a, b = tmp_path / "alpha", tmp_path / "beta"
    _write(a, {"alpha_pkg/__init__.py": "", "alpha_pkg/setup_a.py": a_code})
    _write(b, {"beta_pkg/__init__.py": "", "beta_pkg/setup_b.py": b_code})
    return a, b


def body(name: str, times: int = 1) -> str:
    """`times` functions that each load the settings, then apply them to `name`."""
    return "".join(f"def setup_{i}():\n    settings = load_settings()\n    settings.apply_to({name})\n\n\n"
                   for i in range(times))


async def texts(provider: LocalProvider, path: Path, prefix: str) -> list[str]:
    return [c.text for c in await _complete(provider, path, prefix)]


PREFIX = "def setup_new():\n    settings = load_settings()\n    settings.apply_to("


@pytest.mark.parametrize("a_times, b_times", [(1, 1), (2, 2), (2, 3)], ids=["tie", "tie-of-two", "near-tie"])
async def test_the_same_code_before_the_cursor_goes_on_as_in_the_files_own_folder(
    tmp_path: Path, a_times: int, b_times: int
) -> None:
    a, b = two_folders(tmp_path, body("alpha_app", a_times), body("beta_app", b_times))
    provider = LocalProvider(a, use_jedi=False, folders=[a, b])
    try:
        provider.index_now()
        in_a = await texts(provider, a / "alpha_pkg" / "new.py", PREFIX)
        in_b = await texts(provider, b / "beta_pkg" / "new.py", PREFIX)
    finally:
        await provider.aclose()
    assert in_a and in_a[0] == "alpha_app)"
    assert in_b and in_b[0] == "beta_app)"


async def test_a_line_seen_in_both_folders_is_retrieved_from_the_files_own_folder_first(tmp_path: Path) -> None:
    a, b = two_folders(tmp_path, "from settings import AlphaSettings, load_all\n",
                       "from settings import BetaSettings, load_all\n")
    provider = LocalProvider(a, use_jedi=False, folders=[a, b])
    try:
        provider.index_now()
        in_a = await _complete(provider, a / "alpha_pkg" / "new.py", "from settings import ")
        in_b = await _complete(provider, b / "beta_pkg" / "new.py", "from settings import ")
    finally:
        await provider.aclose()
    assert [c.text for c in in_a][:1] == ["AlphaSettings, load_all"]
    assert [c.text for c in in_b][:1] == ["BetaSettings, load_all"]


async def test_a_clear_majority_in_another_folder_still_wins(tmp_path: Path) -> None:
    a, b = two_folders(tmp_path, body("alpha_app", 1), body("beta_app", 6))
    provider = LocalProvider(a, use_jedi=False, folders=[a, b])
    try:
        provider.index_now()
        in_a = await texts(provider, a / "alpha_pkg" / "new.py", PREFIX)
    finally:
        await provider.aclose()
    assert in_a and in_a[0] == "beta_app)" and "alpha_app)" in in_a


async def test_code_found_only_in_another_folder_is_still_suggested(tmp_path: Path) -> None:
    a, b = two_folders(tmp_path, "import os\n", body("beta_app", 1))
    provider = LocalProvider(a, use_jedi=False, folders=[a, b])
    try:
        provider.index_now()
        in_a = await texts(provider, a / "alpha_pkg" / "new.py", PREFIX)
    finally:
        await provider.aclose()
    assert in_a and in_a[0] == "beta_app)"


async def test_a_file_in_a_folder_nested_in_another_prefers_the_innermost(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    _write(outer, {"outer_mod.py": body("outer_app", 1)})
    _write(inner, {"inner_mod.py": body("inner_app", 1)})
    provider = LocalProvider(outer, use_jedi=False, folders=[outer, inner])
    try:
        provider.index_now()
        in_inner = await texts(provider, inner / "new.py", PREFIX)
        in_outer = await texts(provider, outer / "new.py", PREFIX)
    finally:
        await provider.aclose()
    assert in_inner[:1] == ["inner_app)"] and in_outer[:1] == ["outer_app)"]


async def test_a_single_folder_workspace_has_no_groups(tmp_path: Path) -> None:
    a, _ = two_folders(tmp_path, body("alpha_app", 1) + body("other_app", 1), "")
    provider = LocalProvider(a, use_jedi=False)
    try:
        provider.index_now()
        assert provider._index is not None and provider._index.group_of(str(a / "alpha_pkg" / "new.py")) is None
        assert not provider._index.lines.grouped()
    finally:
        await provider.aclose()
