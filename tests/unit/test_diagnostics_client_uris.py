"""Where results are published: the URI the client opened a file by. Only a file opened by a URI
other than the one its path gives (through a symlink) needs remembering; remembering every file
ever opened grew by one entry per file for the server's life."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from heedls.server.features.diagnostics import DiagnosticsService


def _service(root: Path) -> DiagnosticsService:
    return DiagnosticsService(SimpleNamespace(root=root, folders=[root]))  # type: ignore[arg-type]


def test_files_opened_by_their_own_path_are_not_remembered(tmp_path: Path) -> None:
    service = _service(tmp_path)
    for i in range(300):
        path = tmp_path / f"m{i}.py"
        path.write_text("x = 1\n")
        service._remember_client_uri(path.as_uri())
        assert service._uri_of(str(path)) == path.as_uri()
    assert service._client_uris == {}


def test_a_file_opened_through_a_symlink_keeps_the_uri_the_client_used(tmp_path: Path) -> None:
    root, real = tmp_path / "ws", tmp_path / "elsewhere"
    root.mkdir()
    real.mkdir()
    (real / "m.py").write_text("x = 1\n")
    (root / "link").symlink_to(real)
    service = _service(root)
    opened = (root / "link" / "m.py").as_uri()
    service._remember_client_uri(opened)
    assert service._uri_of(str((real / "m.py").resolve())) == opened  # not the resolved file's URI


def test_a_symlinked_workspace_derives_its_uris_without_remembering_them(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "m.py").write_text("x = 1\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    service = _service(link)
    opened = (link / "m.py").as_uri()
    service._remember_client_uri(opened)
    assert service._client_uris == {} and service._uri_of(str(real / "m.py")) == opened
