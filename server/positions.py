"""LSP positions and the text they point into, the protocol's way.

A line ends only at `\\r\\n`, `\\r` or `\\n` (str.splitlines also breaks at form feeds, `\\x85`,
`\\u2028` and others, which PEP 8 allows in source: a line count that differs from the editor's
puts every later position on the wrong line). A column counts code units of the position encoding
the client and server agreed on (UTF-16 unless negotiated): UTF-16 counts a character beyond the
Basic Multilingual Plane (an emoji) twice, UTF-8 counts bytes, UTF-32 code points.
"""

from __future__ import annotations

from heedls.analyzers.lines import split_lines

__all__ = ["UTF8", "UTF16", "UTF32", "column_from_units", "split_lines", "units"]

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def units(text: str, encoding: str | None) -> int:
    """How many code units of `encoding` `text` takes."""
    if encoding == UTF32 or text.isascii():
        return len(text)
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def column_from_units(line: str, count: int, encoding: str | None) -> int:
    """The code-point column `count` code units into `line` (its text without the line break):
    past its end, the end; inside a character (half a surrogate pair, a byte of a UTF-8
    sequence), just after that character, where an editor's cursor can actually be."""
    count = max(count, 0)
    if encoding == UTF32 or line.isascii():
        return min(count, len(line))
    seen = 0
    for column, char in enumerate(line):
        if seen >= count:
            return column
        seen += units(char, encoding)
    return len(line)
