"""The inline handler's offset conversion agrees with pygls' own for every position encoding."""

from __future__ import annotations

import pytest
from lsprotocol import types
from pygls.workspace import PositionCodec, TextDocument

from heedls.server.features.inline import _offset_at

DOCS = [
    "",
    "x",
    "import os\n\n\ndef main():\n    value = os.getcwd()\n    \n",
    "a = 'é😋'\r\nb = 'ü' + a\r\n    c\r\n",
    "s = '😋😋'  # emoji\nprint(s)\n\tlast",
    "form\x0cfeed\nvertical\x0btab\nend",
]


@pytest.mark.parametrize("encoding", [types.PositionEncodingKind.Utf16, types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf32])
@pytest.mark.parametrize("text", DOCS)
def test_offsets_match_pygls(text: str, encoding: types.PositionEncodingKind) -> None:
    doc = TextDocument("file:///t.py", text, position_codec=PositionCodec(encoding))
    lines = doc.lines
    for line in range(max(len(lines), 1)):
        width = len(lines[line].rstrip("\r\n").encode("utf-16-le")) // 2 if lines else 0
        for character in range(width + 1):  # clamped as the handler clamps
            position = types.Position(line, character)
            assert _offset_at(doc, lines, position) == doc.offset_at_position(types.Position(line, character))
