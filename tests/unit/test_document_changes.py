"""Incremental didChange edits applied to the server's copy of a document as the LSP says: a
character past the end of its line is the end of that line (before its line break, whichever of
\\r\\n, \\r or \\n it is), a line past the end of the document is the end of the document, and a
column counts the negotiated code units. The workspace is the one the server uses (LspWorkspace)."""

from __future__ import annotations

import pytest
from heedls.server.features.documents import LspWorkspace
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types

URI = "file:///ws/a.py"
UTF8, UTF16, UTF32 = types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf32


def _edited(text: str, start: tuple[int, int], end: tuple[int, int], new: str,
            encoding: types.PositionEncodingKind = UTF16) -> str:
    """`text` after one incremental change replacing start..end (line, character) with `new`."""
    workspace = LspWorkspace(None, position_encoding=encoding)
    workspace.put_text_document(types.TextDocumentItem(uri=URI, language_id="python", version=1, text=text))
    change = types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(*start), types.Position(*end)), text=new)
    workspace.update_text_document(types.VersionedTextDocumentIdentifier(uri=URI, version=2), change)
    return str(workspace.get_text_document(URI).source)


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_an_insert_past_the_end_of_a_line_goes_at_the_end_of_that_line(eol: str) -> None:
    text = f"a = 1{eol}b = 2{eol}"
    assert _edited(text, (0, 6), (0, 6), " if 1 else 2") == f"a = 1 if 1 else 2{eol}b = 2{eol}"
    assert _edited(text, (0, 40), (0, 40), " if 1 else 2") == f"a = 1 if 1 else 2{eol}b = 2{eol}"


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_a_range_whose_ends_are_past_the_end_of_a_line_keeps_its_line_break(eol: str) -> None:
    text = f"a = 1{eol}b = 2{eol}"
    assert _edited(text, (0, 6), (0, 9), "  # one") == f"a = 1  # one{eol}b = 2{eol}"
    assert _edited(text, (0, 4), (0, 6), "7") == f"a = 7{eol}b = 2{eol}"


def test_on_a_last_line_without_a_line_break_past_its_end_is_after_its_last_character() -> None:
    assert _edited("a = 1\nb = 2", (1, 99), (1, 99), "0") == "a = 1\nb = 20"
    assert _edited("a = 1\nb = 2", (1, 4), (1, 99), "3") == "a = 1\nb = 3"


def test_a_line_past_the_end_of_the_document_is_the_end_of_the_document() -> None:
    assert _edited("a = 1\nb = 2\n", (0, 6), (9, 0), "") == "a = 1"  # from past line 0's end to past the last line
    assert _edited("a = 1\nb = 2", (7, 3), (9, 0), "\nc = 3") == "a = 1\nb = 2\nc = 3"
    assert _edited("a = 1\nb = 2\n", (5, 0), (5, 0), "c = 3\n") == "a = 1\nb = 2\nc = 3\n"


@pytest.mark.parametrize(("encoding", "length"), [(UTF16, 9), (UTF8, 12), (UTF32, 8)], ids=["utf-16", "utf-8", "utf-32"])
@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_past_the_end_of_a_non_ascii_line_counts_the_negotiated_code_units(
        encoding: types.PositionEncodingKind, length: int, eol: str) -> None:
    text = f'x = "😀é"{eol}y = 2{eol}'  # line 0: 8 code points, 9 UTF-16 units, 12 UTF-8 bytes
    expected = f'x = "😀é"  # note{eol}y = 2{eol}'
    assert _edited(text, (0, length), (0, length), "  # note", encoding) == expected  # the line's very end
    assert _edited(text, (0, length + 1), (0, length + 1), "  # note", encoding) == expected
    assert _edited(text, (0, length + 30), (0, length + 30), "  # note", encoding) == expected


def _reference_edit(text: str, start: tuple[int, int], end: tuple[int, int], new: str, encoding: str) -> str:
    """The rule above applied by splitting the whole text into lines (as the server did until
    2026-12-03): what the server's faster bookkeeping of line starts must give."""
    from heedls.server.positions import column_from_units, split_lines

    lines = split_lines(text)

    def offset(line: int, character: int) -> int:
        if line >= len(lines):
            return len(text)
        return sum(map(len, lines[:line])) + column_from_units(lines[line].rstrip("\r\n"), character, encoding)

    a = offset(*start)
    b = max(a, offset(*end))
    return text[:a] + new + text[b:]


_TEXT = st.text(alphabet=["a", "b", " ", "é", "😀", "\n", "\n", "\n"], max_size=40)
_EDIT = st.tuples(st.tuples(st.integers(0, 12), st.integers(0, 12)), st.tuples(st.integers(0, 12), st.integers(0, 12)),
                  st.text(alphabet=["x", "é", "😀", "\n", "\r"], max_size=6))


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, edits=st.lists(_EDIT, max_size=8), encoding=st.sampled_from([UTF8, UTF16, UTF32]))
def test_a_series_of_edits_gives_what_splitting_the_text_into_lines_gives(
        text: str, edits: list[tuple[tuple[int, int], tuple[int, int], str]], encoding: types.PositionEncodingKind) -> None:
    """The server keeps where each line starts and moves that along with each edit (a 5.8 MB
    document no longer split into lines at each keystroke); edits with carriage returns, and
    edits past a line's or the document's end, and reversed ranges, included."""
    workspace = LspWorkspace(None, position_encoding=encoding)
    workspace.put_text_document(types.TextDocumentItem(uri=URI, language_id="python", version=1, text=text))
    expected = text
    for version, (start, end, new) in enumerate(edits, 2):
        change = types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(*start), types.Position(*end)), text=new)
        workspace.update_text_document(types.VersionedTextDocumentIdentifier(uri=URI, version=version), change)
        expected = _reference_edit(expected, start, end, new, encoding.value)
        assert workspace.get_text_document(URI).source == expected
