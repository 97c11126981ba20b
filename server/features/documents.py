"""Text document sync (incremental); fans the events out to the feature listeners."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

import numpy as np
import numpy.typing as npt
from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from heedls.server.positions import column_from_units, split_lines
from lsprotocol import types
from pygls.workspace import TextDocument, Workspace


class LspTextDocument(TextDocument):
    """pygls' document with its lines broken where the client breaks them (positions.py): pygls
    uses str.splitlines, so after a form feed (PEP 8 allows one) its line numbers ran one behind
    the editor's and incremental edits landed on the wrong line.

    An edit is applied without splitting the document: where each line starts is kept for the
    current text (`_starts`, offsets in it) and moved along by each edit, as long as the text has
    no carriage return. Splitting a 5.8 MB document cost ~45 ms per keystroke on the event loop."""

    _starts: npt.NDArray[np.int64] | None = None
    _starts_of: str | None = None  # the text `_starts` are the line starts of (the same object)

    @property
    def lines(self) -> Sequence[str]:
        return tuple(split_lines(self.source))

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        """The range's text replaced, its ends clamped as the LSP says (`_offset`). pygls clamped a
        character past a line's end to after the line break (the insert landed on the next line)
        and, on a last line without one, to one character before the end."""
        source = self.source
        starts = self._line_starts(source) if "\r" not in change.text else None
        if starts is None:  # carriage returns: each of \r\n, \r and \n ends a line
            lines = self.lines
            start = self._offset(lines, change.range.start)
            end = max(start, self._offset(lines, change.range.end))  # a reversed range must not duplicate text
            self._source = source[:start] + change.text + source[end:]
            return
        start, first = self._offset_at(source, starts, change.range.start)
        end, last = self._offset_at(source, starts, change.range.end)
        if end < start:  # a reversed range must not duplicate text
            end, last = start, first
        text = change.text
        self._source = edited = source[:start] + text + source[end:]
        breaks = [start + 1 + i for i, char in enumerate(text) if char == "\n"] if "\n" in text else []
        self._starts = np.concatenate((starts[: first + 1], np.array(breaks, dtype=np.int64),
                                       starts[last + 1:] + (len(text) - (end - start))))
        self._starts_of = edited

    def _line_starts(self, source: str) -> npt.NDArray[np.int64] | None:
        """Where each line of `source` starts (None: it has a carriage return)."""
        if self._starts_of is source:
            return self._starts
        starts: npt.NDArray[np.int64] | None = None
        if "\r" not in source:
            codes = (np.frombuffer(source.encode("ascii"), dtype=np.uint8) if source.isascii()
                     else np.frombuffer(source.encode("utf-32-le"), dtype=np.uint32))
            starts = np.concatenate((np.zeros(1, dtype=np.int64), np.flatnonzero(codes == 10).astype(np.int64) + 1))
        self._starts, self._starts_of = starts, source
        return starts

    def _offset_at(self, source: str, starts: npt.NDArray[np.int64], position: types.Position) -> tuple[int, int]:
        """`_offset` from the line starts (a text without carriage returns), and the offset's line."""
        count = len(starts)
        if position.line >= count:
            return len(source), count - 1
        begin = int(starts[position.line])
        stop = int(starts[position.line + 1]) - 1 if position.line + 1 < count else len(source)
        column = column_from_units(source[begin:stop], position.character, self.position_codec.encoding)
        return begin + column, position.line

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
