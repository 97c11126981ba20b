"""A forgiving lexer for code completion: physical lines in, spacing-aware tokens out.

Python's own `tokenize` gives up on unfinished code (the very thing a completion engine sees), so
this is a small regex lexer that never fails. Each token carries the whitespace before it as a
single leading space (" =" vs "="), which lets a generated token sequence be turned back into text
exactly as code is usually spaced. Lines are separated by EOL tokens; a change of indentation adds
IND/DED after the EOL so the models know whether a block is opening or closing. Files start with
BOF so "what does a file start with" is learnable and contexts never cross file boundaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EOL = "\n"
IND = "<IND>"
DED = "<DED>"
BOF = "<BOF>"
SPECIAL = frozenset({EOL, IND, DED, BOF})

_STRING_PREFIX = r"(?:[rRbBuUfF]{1,2})?"
_TOKEN = re.compile(
    r"""
    (?P<comment>\#.*)
  | (?P<string>"""
    + _STRING_PREFIX
    + r"""(?:'''(?:\\.|(?!''').)*(?:'''|$)|\"\"\"(?:\\.|(?!\"\"\").)*(?:\"\"\"|$)|'(?:\\.|[^'\\])*(?:'|$)|"(?:\\.|[^"\\])*(?:"|$)))
  | (?P<number>0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?[jJ]?)
  | (?P<name>[^\W\d]\w*)
  | (?P<op>\*\*=|//=|>>=|<<=|\.\.\.|->|:=|[+\-*/%&|^@<>=!]=|\*\*|//|<<|>>|[^\s\w])
    """,
    re.VERBOSE,
)
_TRIPLE = re.compile(r"'''|\"\"\"")


def tokenize_line(text: str) -> list[str]:
    """Tokens of one line's content (indentation already stripped or not: it is ignored)."""
    out: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        start = pos
        while pos < n and text[pos] in " \t\f\r":
            pos += 1
        if pos >= n:
            break
        match = _TOKEN.match(text, pos)
        if match is None:  # unreachable in practice: the op branch takes any non-space char
            pos += 1
            continue
        tok = match.group()
        out.append((" " + tok) if pos > start and out else tok)
        pos = match.end()
    return out


def indent_of(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


@dataclass
class _LineState:
    in_string: str | None = None  # the triple quote we are inside, if any


def _string_state_after(line: str, state: str | None) -> str | None:
    """Track whether a line ends inside a triple-quoted string (docstrings span lines)."""
    pos = 0
    if state is not None:
        end = line.find(state)
        if end < 0:
            return state
        pos = end + 3
        state = None
    # Only look at code tokens so quotes inside comments or ordinary strings don't toggle state.
    for tok in tokenize_line(line[pos:]):
        body = tok.lstrip().lstrip("rRbBuUfF")
        if body.startswith(("'''", '"""')):
            quote = body[:3]
            if len(body) < 6 or not body.endswith(quote):
                return quote
    return None


def line_tokens(lines: list[str]) -> list[list[str]]:
    """Per physical line, its tokens with EOL/IND/DED markers (blank lines give [])."""
    result: list[list[str]] = []
    prev_indent = 0
    state: str | None = None
    for line in lines:
        stripped = line.strip()
        if not stripped:
            result.append([])
            continue
        if state is not None:
            # Inside a multi-line string: the line is prose, keep it as one opaque token.
            new_state = _string_state_after(line, state)
            if new_state is None:
                end = line.find(state) + 3
                toks = [line[:end].strip()] + tokenize_line(line[end:])
            else:
                toks = [stripped]
            state = new_state
            result.append(toks + [EOL])
            continue
        ind = indent_of(line)
        head: list[str] = []
        if ind > prev_indent:
            head = [IND]
        elif ind < prev_indent:
            head = [DED]
        prev_indent = ind
        state = _string_state_after(line, None)
        result.append(head + tokenize_line(line) + [EOL])
    return result


def tokenize_source(text: str) -> list[str]:
    """All tokens of a file, starting with BOF."""
    out = [BOF]
    for toks in line_tokens(text.splitlines()):
        out.extend(toks)
    return out


@dataclass(frozen=True)
class CursorContext:
    """What the models condition on at a cursor position."""

    tokens: list[str]  # complete tokens before the cursor (BOF first)
    pending: str  # the token being typed, as a prefix of its spacing-aware form ("", " ", " fo", ".")
    line_prefix: str  # the current line's text before the cursor, indentation stripped
    indent: str  # the current line's indentation
    prev_lines: list[str]  # up to two previous non-blank lines, stripped, nearest last


def cursor_context(prefix: str, max_lines: int = 400) -> CursorContext:
    """Split the text before the cursor into completed tokens and the token being typed."""
    head, _, current = prefix.rpartition("\n")
    lines = head.split("\n")[-max_lines:] if head or prefix.startswith("\n") else []
    # When the prefix was truncated by the caller, the first line may be partial: harmless.
    indent_str = current[: len(current) - len(current.lstrip())]
    body = current[len(indent_str):]
    per_line = line_tokens(lines + [indent_str + "x"]) if lines or body or indent_str else [[]]
    tokens = [BOF]
    for toks in per_line[:-1]:
        tokens.extend(toks)
    # The marker of the current line's indentation (computed with a placeholder token "x").
    last = per_line[-1]
    if last and last[0] in (IND, DED):
        tokens.append(last[0])
    cur = tokenize_line(body)
    if not body:
        pending = ""
    elif body[-1] in " \t":
        pending = " "
    else:
        pending = cur.pop() if cur else ""
    tokens.extend(cur)
    prev = [ln.strip() for ln in lines if ln.strip()][-2:]
    return CursorContext(tokens=tokens, pending=pending, line_prefix=body, indent=indent_str, prev_lines=prev)


def render(tokens: list[str], pending: str) -> str:
    """Text of a generated token sequence, minus what the user already typed of the first one."""
    parts: list[str] = []
    for i, tok in enumerate(tokens):
        if tok in SPECIAL:
            break
        if i == 0 and pending:
            tok = tok[len(pending):]
        parts.append(tok)
    return "".join(parts)
