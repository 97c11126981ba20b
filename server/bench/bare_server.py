"""The baseline for `heedls bench latency`: a bare pygls server that answers inline completion
immediately with a fixed item. Same transport, same library, no heedls pipeline."""

from __future__ import annotations

from lsprotocol import types
from pygls.lsp.server import LanguageServer

server = LanguageServer("bare", "0", text_document_sync_kind=types.TextDocumentSyncKind.Incremental)


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline(ls: LanguageServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    position = params.position
    return types.InlineCompletionList(
        items=[types.InlineCompletionItem(insert_text="print('bare')", range=types.Range(position, position))]
    )


if __name__ == "__main__":
    server.start_io()
