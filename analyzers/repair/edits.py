"""Text edits located by AST positions, so everything outside the edited span keeps its formatting.

ast gives (line, UTF-8 byte column) positions; `SourceMap` turns them into str offsets. A candidate
is a set of non-overlapping (start, end, replacement) spans on the original text.
"""

from __future__ import annotations

import ast
import difflib
import os
from dataclasses import dataclass, field

from heedls.analyzers import pyparse
from heedls.analyzers.lines import split_lines


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


@dataclass
class Candidate:
    spans: tuple[Span, ...]
    operator: str
    description: str
    line: int  # 1-based line of the edit (for localisation score and ranking)
    prior: float = 0.5
    score: float = 0.0
    source: str = "mutation"  # mutation | syntax | ruff | llm
    new_text: str | None = None  # whole-file replacement (LLM candidates)
    extra: dict[str, object] = field(default_factory=dict)

    def apply(self, text: str) -> str:
        if self.new_text is not None:
            return self.new_text
        return apply_spans(text, self.spans)


def apply_spans(text: str, spans: tuple[Span, ...] | list[Span]) -> str:
    out = []
    pos = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < pos:
            raise ValueError("overlapping spans")
        out.append(text[pos : span.start])
        out.append(span.text)
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


class SourceMap:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = split_lines(text)  # ast's line numbers: form feeds and U+2028 break no line
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, lineno: int, col_bytes: int) -> int:
        """(1-based line, UTF-8 byte column) -> str offset."""
        if lineno - 1 >= len(self.lines):
            return len(self.text)
        line = self.lines[lineno - 1]
        col = len(line.encode("utf-8")[:col_bytes].decode("utf-8", "ignore"))
        return self.starts[lineno - 1] + col

    def node_span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        return start, end

    def segment(self, node: ast.AST) -> str:
        start, end = self.node_span(node)
        return self.text[start:end]

    def line_of(self, offset: int) -> int:
        lo, hi = 0, len(self.starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def indent_of(self, lineno: int) -> str:
        line = self.lines[lineno - 1] if 0 < lineno <= len(self.lines) else ""
        return line[: len(line) - len(line.lstrip())]

    def line_span(self, lineno: int) -> tuple[int, int]:
        return self.starts[lineno - 1], self.starts[lineno]


def gap_operator(text: str, a_end: int, b_start: int) -> tuple[int, int] | None:
    """The operator between two operands: text[a_end:b_start] minus whitespace, parens, comments.

    E.g. ` <= `, `) not in (`, ` and\\n    `: returns the str offsets of `<=`, `not in`, `and`.
    """
    s, e = a_end, b_start
    while s < e and (text[s].isspace() or text[s] in ")\\"):
        s += 1
    while e > s and (text[e - 1].isspace() or text[e - 1] in "(\\"):
        e -= 1
    if s >= e or "#" in text[s:e]:
        return None
    return s, e


def normalised(text: str) -> str | None:
    """AST dump without positions: equal for candidates that differ only in formatting."""
    try:
        return ast.dump(pyparse.parse(text))
    except (SyntaxError, ValueError):
        return None


def change_size(old: str, new: str) -> int:
    """Characters changed, a proxy for patch size used to rank plausible fixes."""
    # Only the span between the common prefix and suffix is matched: SequenceMatcher without
    # autojunk is quadratic in the text, and a 3,000-line module cost half a minute per fix.
    head = len(os.path.commonprefix([old, new]))
    tail = len(os.path.commonprefix([old[head:][::-1], new[head:][::-1]]))
    matcher = difflib.SequenceMatcher(None, old[head:len(old) - tail], new[head:len(new) - tail], autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")
