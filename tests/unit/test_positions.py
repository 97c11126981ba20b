"""LSP positions and lines (positions.py): the client's line breaks and code units."""

from __future__ import annotations

from heedls.server.positions import UTF8, UTF16, UTF32, column_from_units, split_lines, units


def test_lines_break_only_at_crlf_cr_and_lf() -> None:
    assert split_lines("a\r\nb\rc\nd") == ["a\r\n", "b\r", "c\n", "d"]
    assert split_lines("x = 1\n\x0c\ny\u2028z\x85\n") == ["x = 1\n", "\x0c\n", "y\u2028z\x85\n"]
    assert split_lines("") == [] and split_lines("a\n") == ["a\n"]


def test_code_units_per_encoding() -> None:
    text = 'x = "😀é"'
    assert (units(text, UTF8), units(text, UTF16), units(text, UTF32)) == (12, 9, 8)
    assert units(text, None) == 9  # the protocol's default is UTF-16


def test_a_column_in_code_units_becomes_one_in_code_points() -> None:
    line = 'x = "😀é"'
    assert column_from_units(line, 7, UTF16) == 6 and column_from_units(line, 9, UTF8) == 6
    assert column_from_units(line, 11, UTF8) == 7 and column_from_units(line, 10, UTF8) == 7  # inside é: after it
    assert column_from_units(line, 6, UTF16) == 6  # inside the emoji: just after it
    assert column_from_units(line, 7, UTF8) == 6  # a byte inside the emoji's four
    assert column_from_units(line, 99, UTF16) == 8 and column_from_units(line, -1, UTF32) == 0
