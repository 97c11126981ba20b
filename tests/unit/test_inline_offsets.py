"""The inline handler's cursor (`_cursor`): every position an editor can send on a character
boundary, in every position encoding, maps to that character and back to the same position."""

from __future__ import annotations

import pytest
from heedls.server.features.inline import _cursor
from heedls.server.positions import split_lines, units
from lsprotocol import types

DOCS = [
    "",
    "x",
    "import os\n\n\ndef main():\n    value = os.getcwd()\n    \n",
    "a = 'é😋'\r\nb = 'ü' + a\r\n    c\r\n",
    "s = '😋😋'  # emoji\nprint(s)\n\tlast",
    "form\x0cfeed\nvertical\x0btab\nend",
    "old mac\rline\r",
]
ENCODINGS = [types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf32]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("text", DOCS)
def test_every_character_boundary_round_trips(text: str, encoding: types.PositionEncodingKind) -> None:
    lines = split_lines(text)
    for number, line in enumerate(lines):
        body = line.rstrip("\r\n")
        for column in range(len(body) + 1):
            position = types.Position(number, units(body[:column], encoding))
            assert _cursor(lines, position, encoding) == (number, column, position)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_line_after_a_final_line_break_is_a_line(encoding: types.PositionEncodingKind) -> None:
    lines = split_lines("a\nb\n")
    assert _cursor(lines, types.Position(2, 0), encoding) == (2, 0, types.Position(2, 0))
    assert _cursor(lines, types.Position(7, 4), encoding) == (2, 0, types.Position(2, 0))
    assert _cursor([], types.Position(0, 3), encoding) == (0, 0, types.Position(0, 0))
