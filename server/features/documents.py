"""Text document sync (incremental); fans the events out to the feature listeners."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from heedls.server.positions import column_from_units, split_lines
from lsprotocol import types
from pygls.workspace import TextDocument, Workspace


class LspTextDocument(TextDocument):
    """pygls' document with its lines broken where the client breaks them (positions.py): pygls
    uses str.splitlines, so after a form feed (PEP 8 allows one) its line numbers ran one behind
    the editor's and incremental edits landed on the wrong line."""

    @property
    def lines(self) -> Sequence[str]:
        return tuple(split_lines(self.source))

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        """The range's text replaced, its ends clamped as the LSP says (`_offset`). pygls clamped a
        character past a line's end to after the line break (the insert landed on the next line)
        and, on a last line without one, to one character before the end."""
        lines = self.lines
        start = self._offset(lines, change.range.start)
        end = max(start, self._offset(lines, change.range.end))  # a reversed range must not duplicate text
        source = self.source
        self._source = source[:start] + change.text + source[end:]

    def _offset(self, lines: Sequence[str], position: types.Position) -> int:
        """The index in the source of `position` (in the negotiated code units): a character past
        its line's end is the line's end, before the line break; a line past the document's end is
        the document's end."""
        if position.line >= len(lines):
            return len(self.source)
        line = lines[position.line]
        # A line holds one break at most (\r\n, \r or \n): stripping both characters removes just it
        column = column_from_units(line.rstrip("\r\n"), position.character, self.position_codec.encoding)
        return sum(map(len, lines[: position.line])) + column


class LspWorkspace(Workspace):
    def _create_text_document(self, doc_uri: str, source: str | None = None, version: int | None = None,
                              language_id: str | None = None) -> TextDocument:
        return LspTextDocument(doc_uri, source=source, version=version, language_id=language_id,
                               sync_kind=self._sync_kind, position_codec=self._position_codec)


def opened(workspace: Any, uri: str) -> TextDocument | None:
    """The document the client opened at `uri`, else None. pygls keeps documents under the decoded
    URI (`my%20project/m.py` as `my project/m.py`), and its get_text_document reads any other path
    from disk on the event loop (a FIFO there blocked the server)."""
    document: TextDocument | None = workspace.text_documents.get(unquote(uri))
    return document


def use_lsp_documents(server: HeedlsServer) -> None:
    """Make the workspace pygls created at `initialize` open LspTextDocuments (it has no hook for
    its document class; no document exists before `initialize`)."""
    workspace = server.workspace
    if type(workspace) is Workspace:
        workspace.__class__ = LspWorkspace


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
