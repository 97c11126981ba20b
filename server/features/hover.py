"""Hover and `heedls/explain`: the plain-language explanation of the diagnostics under the cursor.

Diagnostics come from the diagnostics feature's store (`server.services["diagnostics"].for_uri`);
without it (feature disabled or not registered) hover shows nothing and `heedls/explain` answers
an empty list. The explanation is the analyzer's (`analyzers.explain`), computed on demand; with
`{"ai": true}` in the request and a provider that can chat, `heedls/explain` asks it for an
explanation grounded in the same facts, marked "(AI-generated)".
"""

from __future__ import annotations

import logging
from typing import Any

from heedls.analyzers import explain as explain_mod
from heedls.analyzers.model import Diagnostic
from heedls.server.app import HeedlsServer  # runtime import: pygls reads handler type hints
from heedls.server.features.documents import opened
from heedls.server.features.params import field as _field
from heedls.server.positions import column_from_units, split_lines
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

log = logging.getLogger("heedls.hover")

EXPLAIN_METHOD = "heedls/explain"
AI_DEADLINE_S = 15.0


def _diagnostics(server: HeedlsServer, uri: str) -> list[Diagnostic]:
    store = server.services.get("diagnostics")
    if store is None or not hasattr(store, "for_uri"):
        return []
    try:
        return list(store.for_uri(uri))
    except Exception:
        log.exception("diagnostics store failed for hover")
        return []


def _lines(server: HeedlsServer, uri: str) -> list[str] | None:
    """The open document's lines, where the client breaks them, without their line breaks."""
    document = opened(server.workspace, uri)  # not open: no client-unit conversion beyond ASCII
    return [line.rstrip("\r\n") for line in split_lines(str(document.source))] if document is not None else None


def _to_python_char(server: HeedlsServer, lines: list[str] | None, line: int, character: int) -> int:
    """Client column (the negotiated code units) -> the code-point column analyzer ranges use.
    Past the line's end it is the line's end, as the LSP says, on every line: pygls' codec made it
    the line's last character on a line that is not ASCII (a diagnostic ending just before it was
    shown for a position past the end), where an ASCII line kept the column."""
    if lines is None or not 0 <= line < len(lines):
        return character
    return column_from_units(lines[line], character, server.workspace.position_codec.encoding)


def _to_client_char(server: HeedlsServer, lines: list[str] | None, line: int, character: int) -> int:
    if lines is None or not 0 <= line < len(lines) or lines[line].isascii():
        return character
    try:
        return int(server.workspace.position_codec.client_num_units(lines[line][:character]))
    except Exception:  # noqa: BLE001
        return character


def at_position(diagnostics: list[Diagnostic], line: int, character: int, *, same_line: bool = False) -> list[Diagnostic]:
    """Diagnostics whose range contains (line, character); with `same_line`, those on the line
    when none contains the position exactly (an explain request from a line-level gesture)."""
    hits = []
    for d in diagnostics:
        start, end = d.range.start, d.range.end
        # an empty range (a syntax error at a point) still answers on the character it sits on
        end_char = end.character if (end.line, end.character) > (start.line, start.character) else start.character + 1
        if (start.line, start.character) <= (line, character) <= (end.line, end_char):
            hits.append(d)
    if not hits and same_line:
        hits = [d for d in diagnostics if d.range.start.line <= line <= d.range.end.line]
    return hits


def explanation_of(diagnostic: Diagnostic) -> str:
    try:
        return str(explain_mod.explain(diagnostic) or diagnostic.explanation or diagnostic.message)
    except Exception:
        log.exception("explain failed for %s %s", diagnostic.source, diagnostic.code)
        return str(diagnostic.explanation or diagnostic.message)


def _range_json(server: HeedlsServer, lines: list[str] | None, d: Diagnostic) -> dict[str, Any]:
    s, e = d.range.start, d.range.end
    return {
        "start": {"line": s.line, "character": _to_client_char(server, lines, s.line, s.character)},
        "end": {"line": e.line, "character": _to_client_char(server, lines, e.line, e.character)},
    }


def hover_markdown(diagnostics: list[Diagnostic]) -> str:
    blocks = []
    for d in diagnostics:
        head = f"**heedls** · {d.source}" + (f" `{d.code}`" if d.code else "")
        blocks.append(f"{head}\n\n{explanation_of(d)}")
    return "\n\n---\n\n".join(blocks)


def _chat_provider(server: HeedlsServer) -> Any | None:
    for candidate in (server.services.get("chat"), getattr(server.services.get("engine"), "provider", None),
                      server.services.get("provider")):
        if candidate is not None and hasattr(candidate, "chat"):
            return candidate
    return None


def register(server: HeedlsServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: HeedlsServer, params: types.HoverParams) -> types.Hover | None:
        uri = params.text_document.uri
        diagnostics = _diagnostics(ls, uri)
        if not diagnostics:
            return None
        lines = _lines(ls, uri)
        line = params.position.line
        character = _to_python_char(ls, lines, line, params.position.character)
        found = at_position(diagnostics, line, character)
        if not found:
            return None
        first = found[0].range
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=hover_markdown(found)),
            range=types.Range(
                start=types.Position(line=first.start.line,
                                     character=_to_client_char(ls, lines, first.start.line, first.start.character)),
                end=types.Position(line=first.end.line,
                                   character=_to_client_char(ls, lines, first.end.line, first.end.character)),
            ),
        )

    @server.feature(EXPLAIN_METHOD)
    async def explain_request(ls: HeedlsServer, params: Any) -> dict[str, Any]:
        document = _field(params, "textDocument")
        uri = _field(document, "uri")
        if not isinstance(uri, str):
            raise JsonRpcInvalidParams(f"{EXPLAIN_METHOD}: textDocument.uri must be given (a string)")
        diagnostics = _diagnostics(ls, uri)
        position = _field(params, "position")
        lines = _lines(ls, uri)
        if position is not None:
            line, character = _field(position, "line"), _field(position, "character")
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (line, character)):
                raise JsonRpcInvalidParams(f"{EXPLAIN_METHOD}: position must be {{line, character}}, "
                                           "non-negative integers")
            character = _to_python_char(ls, lines, line, character)
            diagnostics = at_position(diagnostics, line, character, same_line=True)
        chat = _chat_provider(ls) if _field(params, "ai") else None
        out = []
        for d in diagnostics:
            text = explanation_of(d)
            if chat is not None:
                try:
                    text = await explain_mod.explain_with_llm(d, chat, deadline_s=AI_DEADLINE_S)
                except Exception:
                    log.exception("LLM explanation failed")
            out.append({"message": d.message, "explanation": text, "range": _range_json(ls, lines, d),
                        "source": d.source, "code": d.code, "severity": d.severity})
        return {"explanations": out}
