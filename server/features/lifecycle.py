"""initialize / initialized / didChangeConfiguration: where the configuration layers come from."""

from __future__ import annotations

from pathlib import Path

from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from heedls.server.features.documents import use_lsp_documents
from lsprotocol import types
from pygls import uris


def _root_from(params: types.InitializeParams) -> Path | None:
    if params.workspace_folders:
        path = uris.to_fs_path(params.workspace_folders[0].uri)
        if path:
            return Path(path)
    if params.root_uri:
        path = uris.to_fs_path(params.root_uri)
        if path:
            return Path(path)
    if params.root_path:
        return Path(params.root_path)
    return None


class _ProjectFile:
    """Re-reads the configuration when the workspace's pyproject.toml is saved in the editor (or
    changes on disk, for a client that reports watched files): [tool.heedls] edits apply at once."""

    def __init__(self, server: HeedlsServer) -> None:
        self.server = server

    def _is_project_file(self, uri: str) -> bool:
        path = uris.to_fs_path(uri)
        root = self.server.root
        return bool(path) and root is not None and Path(path).resolve() == (root / "pyproject.toml").resolve()

    async def on_save(self, uri: str) -> None:
        if self._is_project_file(uri):
            await self.server.reload_config()


def register(server: HeedlsServer) -> None:
    project_file = _ProjectFile(server)
    server.document_listeners.append(project_file)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    async def on_watched_files(ls: HeedlsServer, params: types.DidChangeWatchedFilesParams) -> None:
        if any(project_file._is_project_file(change.uri) for change in params.changes):
            await ls.reload_config()

    @server.feature(types.INITIALIZE)
    async def on_initialize(ls: HeedlsServer, params: types.InitializeParams) -> None:
        use_lsp_documents(ls)
        ls.root = _root_from(params)
        ls.init_options = params.initialization_options
        await ls.reload_config()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_did_change_configuration(ls: HeedlsServer, params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if settings is None or settings == {}:
            return  # a pull-model client; nothing pushed
        ls.client_settings = settings
        await ls.reload_config()
