"""Syntax-repair rules for the common error classes, each candidate validated by parsing.

Missing colon, unclosed brackets/quotes, `=` for `==` in a condition, bad indentation, a stray
closing bracket. Rules work on the line the parser blames and its neighbours.
"""

from __future__ import annotations

import re

from heedls.analyzers import pyparse
from heedls.analyzers.repair.edits import Candidate, SourceMap

COMPOUND = re.compile(r"^\s*(if|elif|else|for|while|def|class|try|except|finally|with|async\s+def|async\s+for|async\s+with|match|case)\b")
PAIRS = {"(": ")", "[": "]", "{": "}"}


def _parses(text: str) -> bool:
    try:
        pyparse.parse(text)
        return True
    except (SyntaxError, ValueError):
        return False


def syntax_error(text: str) -> SyntaxError | None:
    try:
        pyparse.parse(text)
        return None
    except SyntaxError as exc:
        return exc


def _unclosed(line: str) -> str:
    stack: list[str] = []
    quote = ""
    for ch in line.split("#", 1)[0] if "'" not in line and '"' not in line else line:
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in PAIRS:
            stack.append(PAIRS[ch])
        elif ch in ")]}" and stack and stack[-1] == ch:
            stack.pop()
    return "".join(reversed(stack))


def candidates(text: str, max_rounds: int = 2) -> list[Candidate]:
    """Edits that make the module parse (several errors: rules are chained up to max_rounds)."""
    found: list[Candidate] = []
    frontier: list[tuple[str, list[str], str]] = [(text, [], "")]
    for _ in range(max_rounds):
        nxt = []
        for current, applied, desc in frontier:
            for new_text, what, line in _one_round(current):
                full = new_text
                label = (desc + "; " if desc else "") + what
                if _parses(full):
                    found.append(Candidate((), "syntax", label, line, 0.9, 0.9, "syntax", new_text=full))
                else:
                    nxt.append((full, applied, label))
        if found:
            break
        frontier = nxt[:20]
    seen = set()
    unique = []
    for c in found:
        if c.new_text not in seen:
            seen.add(c.new_text)
            unique.append(c)
    return unique


def _one_round(text: str) -> list[tuple[str, str, int]]:
    err = syntax_error(text)
    if err is None or err.lineno is None:
        return []
    sm = SourceMap(text)
    out: list[tuple[str, str, int]] = []
    lines = sm.lines
    blamed = {err.lineno, err.lineno - 1, getattr(err, "end_lineno", None) or err.lineno}
    for ln in sorted(x for x in blamed if 1 <= x <= len(lines)):
        line = lines[ln - 1]
        body = line.rstrip("\r\n")
        eol = line[len(body):]
        start, end = sm.line_span(ln)

        def edit(new_line: str, what: str, ln: int = ln, start: int = start, end: int = end) -> None:
            out.append((text[:start] + new_line + text[end:], what, ln))

        code = body.split("#", 1)[0].rstrip() if "#" in body and "'" not in body and '"' not in body else body.rstrip()
        if COMPOUND.match(body) and not code.endswith(":"):
            edit(code + ":" + body[len(code):] + eol, f"add the missing `:` on line {ln}")
        closers = _unclosed(body)
        if closers:
            if code.endswith(":"):
                edit(code[:-1] + closers + ":" + eol, f"close `{closers}` on line {ln}")
            edit(code + closers + body[len(code):] + eol, f"close `{closers}` on line {ln}")
        for q in ("'", '"'):
            if body.count(q) % 2 == 1:
                edit(code + q + eol, f"close the string on line {ln}")
        m = re.match(r"^(\s*(?:if|elif|while)\s+.*?[^=!<>])=([^=].*)$", body)
        if m:
            edit(m.group(1) + "==" + m.group(2) + eol, f"`=` → `==` on line {ln}")
        stripped = body.lstrip()
        indent = body[: len(body) - len(stripped)]
        prev = next((lines[i] for i in range(ln - 2, -1, -1) if lines[i].strip()), "")
        prev_indent = prev[: len(prev) - len(prev.lstrip())]
        options = {prev_indent, prev_indent + "    ", prev_indent[:-4] if len(prev_indent) >= 4 else ""}
        for opt in options:
            if opt != indent and stripped:
                edit(opt + stripped + eol, f"re-indent line {ln}")
        if code and code[-1] in ")]}" and not _unclosed(body) and body.count(code[-1]) > body.count({")": "(", "]": "[", "}": "{"}[code[-1]]):
            edit(code[:-1] + eol, f"remove the stray `{code[-1]}` on line {ln}")
    return out
