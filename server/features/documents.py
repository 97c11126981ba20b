"""Text document sync (incremental); fans the events out to the feature listeners."""

from __future__ import annotations

from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from lsprotocol import types


def register(server: HeedlsServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls: HeedlsServer, params: types.DidOpenTextDocumentParams) -> None:
        await ls.dispatch("on_open", params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls: HeedlsServer, params: types.DidChangeTextDocumentParams) -> None:
        await ls.dispatch("on_change", params.text_document.uri, list(params.content_changes))

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    async def did_save(ls: HeedlsServer, params: types.DidSaveTextDocumentParams) -> None:
        await ls.dispatch("on_save", params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(ls: HeedlsServer, params: types.DidCloseTextDocumentParams) -> None:
        await ls.dispatch("on_close", params.text_document.uri)
