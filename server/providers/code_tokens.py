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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EOL = "\n"
IND = "<IND>"
DED = "<DED>"
BOF = "<BOF>"
SPECIAL = frozenset({EOL, IND, DED, BOF})
MAX_LINE_CHARS = 4000

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


def _open_quote(toks: list[str]) -> str | None:
    """The triple quote left open by the last token of a line, if any (a docstring goes on)."""
    if not toks:
        return None
    body = toks[-1].lstrip().lstrip("rRbBuUfF")
    if body.startswith(("'''", '"""')):
        quote = body[:3]
        if len(body) < 6 or not body.endswith(quote):
            return quote
    return None


def _open_literal(token: str) -> bool:
    """Is `token` (a line's last) a comment, or a string its line leaves open?"""
    body = token.lstrip()
    if body.startswith("#"):
        return True
    body = body.lstrip("rRbBuUfF")
    if not body or body[0] not in "'\"":
        return False
    quote = body[:3] if body.startswith(("'''", '"""')) else body[0]
    if len(body) < 2 * len(quote) or not body.endswith(quote):
        return True
    inside = body[: len(body) - len(quote)]
    escapes = len(inside) - len(inside.rstrip("\\"))
    return escapes % 2 == 1  # `"a\"`: the last quote is escaped, the string goes on


LineState = tuple[str | None, int]  # (open triple quote, indentation) after a line


def tokenize_one(line: str, state: LineState) -> tuple[list[str], LineState]:
    """Tokens of one physical line given the state after the previous line."""
    quote, prev_indent = state
    stripped = line.strip()
    if not stripped:
        return [], state
    if quote is not None:
        # Inside a multi-line string: the line is prose, kept as one opaque token.
        end = line.find(quote)
        if end < 0:
            return [stripped, EOL], (quote, prev_indent)
        rest = tokenize_line(line[end + 3 :])
        return [line[: end + 3].strip()] + rest + [EOL], (_open_quote(rest), prev_indent)
    ind = indent_of(line)
    head = [IND] if ind > prev_indent else [DED] if ind < prev_indent else []
    toks = tokenize_line(line)
    return head + toks + [EOL], (_open_quote(toks), ind)


def line_tokens(lines: list[str]) -> list[list[str]]:
    """Per physical line, its tokens with EOL/IND/DED markers (blank lines give [])."""
    return _line_tokens(lines)[0]


def _line_tokens(lines: list[str]) -> tuple[list[list[str]], str | None, int]:
    """line_tokens plus the state after the last line: open triple quote and indentation."""
    result: list[list[str]] = []
    state: LineState = (None, 0)
    for line in lines:
        toks, state = tokenize_one(line, state)
        result.append(toks)
    return result, state[0], state[1]


def _bounded(line: str) -> str:
    """A line above the cursor as the request path tokenizes it: a pathological line (a 1 MB data
    literal) keeps its indentation and its last MAX_LINE_CHARS characters, as the cursor line does
    (tokenizing it whole took ~0.6 s on the event loop). Code lines are far shorter: kept whole."""
    if len(line) <= MAX_LINE_CHARS:
        return line
    body = line.lstrip()
    indent = line[: len(line) - len(body)]
    return indent[-MAX_LINE_CHARS:] + body[-MAX_LINE_CHARS:]


START: LineState = (None, 0)  # the state before a document's (or a window's) first line

# A line's tokens and the state after it, by the state before it and the line's text: what
# tokenize_one answers, worked out ahead of the requests (a document primed when it is opened).
KnownLines = Mapping[tuple[LineState, str], Sequence[object]]


def tokenize_known(line: str, state: LineState, known: KnownLines | None) -> tuple[list[str], LineState, bool]:
    """tokenize_one(line) as the request path does it (a pathological line bounded), or what
    `known` already has for this line after this state; the flag says whether it was known."""
    if known is not None:
        hit = known.get((state, line))
        if hit is not None:
            return hit[0], hit[1], True  # type: ignore[return-value]
    toks, after = tokenize_one(_bounded(line), state)
    return toks, after, False


class DocTokens:
    """Incremental tokenization of one document's complete lines before the cursor.

    Typing changes the last lines only, so consecutive requests re-tokenize just the lines that
    differ from the previous call (lines are compared as strings, which is cheap). A deadline
    stops the work between lines; the next update goes on from there (`done` says whether the
    document is all tokenized). Lines `known` ahead (a document tokenized off the request path
    when it was opened) are looked up, not tokenized, and do not count against the deadline."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.tokens: list[list[str]] = []
        self.states: list[LineState] = []
        self.kept = 0  # lines kept unchanged by the last update
        self.done = True  # the last update tokenized every line it was given

    def update(self, lines: list[str], until: float | None = None, known: KnownLines | None = None) -> int:
        """Make the document `lines` (or, past the perf_counter() deadline `until`, a prefix of
        them: at least one more line each call); returns how many leading lines were kept."""
        same = 0
        limit = min(len(lines), len(self.lines))
        while same < limit and lines[same] == self.lines[same]:
            same += 1
        del self.lines[same:], self.tokens[same:], self.states[same:]
        self.kept = same
        state = self.states[-1] if self.states else START
        for line in lines[same:]:
            toks, state, was_known = tokenize_known(line, state, known)
            self.lines.append(line)
            self.tokens.append(toks)
            self.states.append(state)
            if not was_known and until is not None and time.perf_counter() >= until:
                break
        self.done = len(self.lines) == len(lines)
        return same

    @property
    def state(self) -> LineState:
        return self.states[-1] if self.states else (None, 0)


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


def cursor_context(
    prefix: str, max_lines: int = 400, doc: DocTokens | None = None, window: int = 2000,
    until: float | None = None, known: KnownLines | None = None,
) -> CursorContext:
    """Split the text before the cursor into completed tokens and the token being typed.

    With `doc`, the complete lines are tokenized incrementally; `doc` keeps at most about `window`
    lines, its start moving in steps of a quarter window so that typing rarely shifts it (a 5 MB
    file costs the same per keystroke as a small one). Past the deadline `until` (perf_counter)
    `doc` may be left part-way (`doc.done` is False): the context is then not to be used. Lines
    `known` ahead (tokenize_known) are looked up instead of tokenized."""
    head, _, current = prefix.rpartition("\n")
    count = head.count("\n") + 1 if head or prefix.startswith("\n") else 0  # lines before the cursor line
    step = max(window // 4, 1)
    start = max(0, (count - window + step - 1) // step * step) if count > window else 0
    if doc is None:
        doc = DocTokens()
        start = max(0, count - max_lines)
    # Only the lines used are split off (head.split of a 250,000-line file took 30-45 ms).
    lines = head.rsplit("\n", count - start)[1:] if start else head.split("\n") if count else []
    doc.update(lines, until, known)
    quote, prev_indent = doc.state
    current = current[-MAX_LINE_CHARS:]  # a pathological single line must not cost seconds
    indent_str = current[: len(current) - len(current.lstrip())]
    body = current[len(indent_str):]
    # BOF only when the context really reaches the top of the file.
    tokens = [BOF] if start == 0 and len(doc.tokens) <= max_lines else []
    for toks in doc.tokens[-max_lines:]:
        tokens.extend(toks)
    if quote is not None:
        # Inside a docstring: its lines are opaque tokens, so the whole typed text is pending.
        pending = body
        cur: list[str] = []
    else:
        # The cursor line's indentation is known even before anything is typed on it.
        if count or body:
            ind = indent_of(current)
            if ind > prev_indent:
                tokens.append(IND)
            elif ind < prev_indent:
                tokens.append(DED)
        cur = tokenize_line(body)
        if not body:
            pending = ""
        elif cur and _open_literal(cur[-1]):
            # The cursor is inside a one-line string or a comment: the literal is the token being
            # typed (after a space too), so a suggestion can only complete it, never go on with
            # code as if it were closed (`x = "hello ` -> `None,`).
            pending = cur.pop()
        elif body[-1] in " \t":
            pending = " "
        else:
            pending = cur.pop() if cur else ""
    tokens.extend(cur)
    prev: list[str] = []
    for ln in reversed(doc.lines):
        if ln.strip():
            prev.insert(0, ln.strip())
            if len(prev) == 2:
                break
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
