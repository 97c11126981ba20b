"""Lines the way Python and the LSP break them: only at `\\r\\n`, `\\r` and `\\n`.

str.splitlines also breaks at form feeds, `\\x0b`, `\\x1c`-`\\x1e`, `\\x85`, `\\u2028` and `\\u2029`,
which may stand in source (PEP 8 allows form feeds): line numbers counted by it drift from those of
ast, tokenize, tree-sitter and every editor."""

from __future__ import annotations

import re

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
# The characters str.splitlines breaks at besides \r and \n: with none of them the C split is right.
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def split_lines(text: str) -> list[str]:
    """The lines of `text`, each with its line break (the last one may have none)."""
    if _OTHER_BREAKS.search(text) is None:
        return text.splitlines(True)
    return _LINE.findall(text)
