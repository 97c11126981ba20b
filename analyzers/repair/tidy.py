"""Parentheses an edit leaves around a lone operand, dropped before the fix is shown.

Dropping `- 1` from `total / (len(xs) - 1)` validates as `total / (len(xs))`; a developer would
write `total / len(xs)`. Only parentheses the edit happened inside are touched (the author's own
elsewhere stay), only around an operand that needs none (a name, call, attribute, subscript,
literal or display; never a tuple, generator, operator expression or lambda), and only when the
module's AST is the same without them, so the tests' verdict on the fix still holds word for word.
"""

from __future__ import annotations

import ast
import io
import keyword
import os
import tokenize

from heedls.analyzers import pyparse

_LONE = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant, ast.List, ast.Dict, ast.Set,
         ast.ListComp, ast.SetComp, ast.DictComp, ast.JoinedStr)
_ROUNDS = 4  # nested leftovers, e.g. `((x))`; each round drops one pair


def drop_redundant_parens(original: str, new: str) -> str:
    """`new` (an edit of `original`) without the redundant parentheses the edit left."""
    for _ in range(_ROUNDS):
        tidier = _drop_one(original, new)
        if tidier is None:
            break
        new = tidier
    return new


def _drop_one(original: str, new: str) -> str | None:
    head = len(os.path.commonprefix([original, new]))
    tail = len(os.path.commonprefix([original[head:][::-1], new[head:][::-1]]))
    lo, hi = head, len(new) - tail  # the edit's range in `new`
    try:
        reference = ast.dump(pyparse.parse(new))
        tokens = list(tokenize.generate_tokens(io.StringIO(new).readline))
    except (SyntaxError, ValueError, tokenize.TokenError, RecursionError, MemoryError):
        return None
    starts = _line_starts(new)
    for start, end in _enclosing_pairs(tokens, starts, lo, hi):
        inner = new[start + 1 : end]
        try:
            root = pyparse.parse_expression(inner.strip())
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        if not isinstance(root, _LONE):
            continue
        # `if(x)` → `if x`, not `ifx`
        left = " " if start > 0 and _is_word(new[start - 1]) else ""
        right = " " if end + 1 < len(new) and _is_word(new[end + 1]) else ""
        candidate = new[:start] + left + inner.strip() + right + new[end + 1 :]
        try:
            if ast.dump(pyparse.parse(candidate)) == reference:
                return candidate
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return None


def _enclosing_pairs(tokens: list[tokenize.TokenInfo], starts: list[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """Offsets of `(`/`)` pairs on one line that group (not call) and that the edit lies inside,
    innermost first."""
    stack: list[tuple[tokenize.TokenInfo, tokenize.TokenInfo | None]] = []
    previous: tokenize.TokenInfo | None = None
    pairs: list[tuple[int, int]] = []
    for tok in tokens:
        if tok.type == tokenize.OP and tok.string in "([{":
            stack.append((tok, previous))
        elif tok.type == tokenize.OP and tok.string in ")]}" and stack:
            opened, before = stack.pop()
            if opened.string == "(" and tok.string == ")" and opened.start[0] == tok.start[0] and not _calls(before):
                start = starts[opened.start[0] - 1] + opened.start[1]
                end = starts[tok.start[0] - 1] + tok.start[1]
                if start < lo and hi <= end:
                    pairs.append((start, end))
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            previous = tok
    return sorted(pairs, key=lambda p: p[1] - p[0])


def _calls(before: tokenize.TokenInfo | None) -> bool:
    """Whether a `(` after this token opens a call's arguments (or a def's parameters)."""
    if before is None:
        return False
    if before.type == tokenize.NAME:
        return not keyword.iskeyword(before.string) or before.string in ("True", "False", "None")
    return before.type == tokenize.STRING or (before.type == tokenize.OP and before.string in ")]}")


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _line_starts(text: str) -> list[int]:
    starts = [0]  # split as the tokenizer's readline splits
    for line in io.StringIO(text).readlines():
        starts.append(starts[-1] + len(line))
    return starts
