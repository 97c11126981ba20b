"""scripts/replay_corpus.py: the pinned wheels' Python files, unpacked once into a cache folder
named after the list, side by side as in site-packages (one replay project per package)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from heedls.server.acceptance.replay import find_projects

from tests.support.scripts import load_script


def _corpus() -> ModuleType:
    return load_script("replay_corpus")


def _wheel(folder: Path, name: str, members: dict[str, str]) -> Path:
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in members.items():
            archive.writestr(member, text)
    return path


CODE = "def f(x):\n    return x + 1\n" * 60  # over the replay's 1 KB floor


def _listing(tmp_path: Path, *lines: str) -> Path:
    listing = tmp_path / "corpus.txt"
    listing.write_text("# pinned\n" + "".join(f"{line}\n" for line in lines))
    return listing


def _fake_pip(module: ModuleType, monkeypatch: pytest.MonkeyPatch, wheels: dict[str, dict[str, str]],
              calls: list[Path]) -> None:
    def download(listing: Path, into: Path) -> None:
        calls.append(listing)
        into.mkdir(parents=True)
        for name, members in wheels.items():
            _wheel(into, name, members)

    monkeypatch.setattr(module, "_download", download)


def test_only_the_wheels_python_files_are_unpacked_and_nothing_outside_the_folder(tmp_path: Path) -> None:
    module = _corpus()
    wheel = _wheel(tmp_path, "pkg", {
        "pkg/__init__.py": "", "pkg/core.py": CODE, "pkg/data.json": "{}",
        "pkg-1.0.dist-info/METADATA": "Name: pkg", "pkg-1.0.data/scripts/tool.py": CODE,
        "../escape.py": CODE, "/abs.py": CODE,
    })
    into = tmp_path / "out"
    into.mkdir()
    module._unpack_sources(wheel, into)
    assert sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file()) == ["pkg/__init__.py",
                                                                                         "pkg/core.py"]
    assert not (tmp_path / "escape.py").exists()


def test_the_corpus_is_fetched_once_and_each_package_is_a_replay_project(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    module = _corpus()
    calls: list[Path] = []
    _fake_pip(module, monkeypatch, {"alpha": {"alpha/__init__.py": "", "alpha/a.py": CODE, "alpha/b.py": CODE},
                                    "beta": {"beta/__init__.py": "", "beta/c.py": CODE, "beta/d.py": CODE}}, calls)
    listing = _listing(tmp_path, "alpha==1.0 --hash=sha256:00", "beta==1.0 --hash=sha256:11")
    folder = module.prepare(tmp_path / "cache", listing, quiet=True)
    assert folder == module.corpus_dir(tmp_path / "cache", listing) and (folder / module.DONE).is_file()
    assert [root.name for root, _ in find_projects([folder])] == ["alpha", "beta"]
    assert module.prepare(tmp_path / "cache", listing, quiet=True) == folder and len(calls) == 1
    # another list is another folder, fetched anew
    other = module.prepare(tmp_path / "cache", _listing(tmp_path, "alpha==1.0 --hash=sha256:22"), quiet=True)
    assert other != folder and len(calls) == 2


def test_an_interrupted_fetch_is_fetched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _corpus()
    calls: list[Path] = []
    _fake_pip(module, monkeypatch, {"alpha": {"alpha/__init__.py": "", "alpha/a.py": CODE}}, calls)
    listing = _listing(tmp_path, "alpha==1.0 --hash=sha256:00")
    half = module.corpus_dir(tmp_path / "cache", listing)
    (half / "alpha").mkdir(parents=True)  # a folder without its completion mark
    folder = module.prepare(tmp_path / "cache", listing, quiet=True)
    assert folder == half and (folder / "alpha" / "a.py").is_file() and len(calls) == 1


def test_a_failed_download_is_an_error_that_names_pips_reason(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    module = _corpus()

    def failing(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert "--require-hashes" in command and "--no-deps" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES\n")

    monkeypatch.setattr(module.subprocess, "run", failing)
    listing = _listing(tmp_path, "alpha==1.0 --hash=sha256:00")
    with pytest.raises(module.CorpusError, match="DO NOT MATCH THE HASHES"):
        module.prepare(tmp_path / "cache", listing, quiet=True)
    assert not module.corpus_dir(tmp_path / "cache", listing).exists()


def test_the_shipped_list_pins_every_wheel_by_version_and_hash() -> None:
    module = _corpus()
    lines = [line for line in module.LIST.read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) >= 100
    for line in lines:
        requirement, _, digest = line.partition(" --hash=sha256:")
        assert "==" in requirement and len(digest) == 64, line


def test_a_cache_that_cannot_hold_the_corpus_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    module = _corpus()
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    with pytest.raises(module.CorpusError, match="cannot unpack the corpus"):
        module.prepare(not_a_folder, _listing(tmp_path, "alpha==1.0 --hash=sha256:00"), quiet=True)


def test_another_process_unpacking_the_same_list_meanwhile_is_not_an_error(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    module = _corpus()
    listing = _listing(tmp_path, "alpha==1.0 --hash=sha256:00")
    target = module.corpus_dir(tmp_path / "cache", listing)

    def download_while_another_finishes(listing: Path, into: Path) -> None:
        (target / "alpha").mkdir(parents=True)
        (target / "alpha" / "a.py").write_text(CODE)
        (target / module.DONE).write_text("")
        into.mkdir(parents=True)
        _wheel(into, "alpha", {"alpha/__init__.py": "", "alpha/a.py": CODE})

    monkeypatch.setattr(module, "_download", download_while_another_finishes)
    assert module.prepare(tmp_path / "cache", listing, quiet=True) == target
    assert (target / "alpha" / "a.py").read_text() == CODE
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [target.name]  # no temporary folder left
