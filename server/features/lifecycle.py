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


def register(server: HeedlsServer) -> None:
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
