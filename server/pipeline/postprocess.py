"""Clean a raw provider suggestion before it is gated and shown.

Every producer of suggestions (the server, `heedls complete`, the replay and the quality benchmark)
runs the same steps, so what is measured is what users see:
1. drop leading text the user already typed (providers sometimes echo the line),
2. stop at a dedent below the cursor's block, at a line that repeats an earlier one, or at the
   line of code that follows the cursor's (the suggestion would retype it),
3. cap the number of lines,
4. drop the tail that the suffix already contains (the "dedupe vs suffix" rule),
5. balance brackets against what is open on the cursor line and closed in the suffix,
6. normalise indentation of continuation lines to the document's indent unit,
7. return None for empty / whitespace-only results.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from heedls.server.providers.base import Candidate, CompletionRequest

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}
_QUOTES_AND_BRACKETS = re.compile(r"[\"'()\[\]{}]")
# Lines a suggestion may repeat without being cut as a degenerate loop.
_REPEATABLE = frozenset({")", "]", "}", "pass", "else:"})


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _width(indent: str) -> int:
    return len(indent.expandtabs(4))


def _imbalance(text: str) -> int:
    """Unmatched brackets in one line of code (strings skipped roughly)."""
    stack: list[str] = []
    unmatched = 0
    quote: str | None = None
    for ch in _QUOTES_AND_BRACKETS.findall(text):  # nothing else changes the count
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS:
            if stack and stack[-1] == CLOSERS[ch]:
                stack.pop()
            else:
                unmatched += 1
    return unmatched + len(stack)


def _strip_echo(text: str, current_line_prefix: str) -> str:
    """If the provider repeated the start of the current line, drop the repeated part."""
    stripped = current_line_prefix.lstrip()
    if stripped and text.startswith(current_line_prefix) and len(text) > len(current_line_prefix):
        return text[len(current_line_prefix) :]
    if stripped and text.startswith(stripped) and len(text) > len(stripped) and not current_line_prefix.endswith(stripped[:1]):
        return text[len(stripped) :]
    return text


def _cut_lines(text: str, request: CompletionRequest, max_lines: int) -> str:
    lines = text.split("\n")
    current = request.prefix.rpartition("\n")[2]
    first = lines[0].strip()
    at_line_start = not current.strip()
    # The next line of code after the cursor's: a suggestion that reaches it retypes what is there
    # (FIM models run past the gap), so it stops before it, as Copilot's and Continue's do.
    following = next((ln.strip() for ln in request.suffix.split("\n", 6)[1:6] if ln.strip()), "")
    if len(following) <= 3 or following in _REPEATABLE:
        following = ""  # `)` or `pass` may well be written again
    if at_line_start and following and first == following:
        return ""
    if len(lines) == 1 and not (at_line_start and len(first) > 8):
        return text  # one line that does not stand for a whole line: nothing below can cut it
    # only the last 40 lines of the prefix matter: split those off the end, not the whole prefix
    seen = {previous.strip() for previous in request.prefix.rsplit("\n", 40)[-40:]}
    seen.discard("")
    base_indent = _width(current) if at_line_start else _width(_indent_of(current))
    kept = [lines[0]]
    repeats_recent_line = first in seen
    if first:
        seen.add(first)
    # The first line continues the cursor line; a block opener lets the next lines indent deeper.
    for line in lines[1:]:
        if len(kept) >= max_lines:
            break
        stripped = line.strip()
        if not stripped:
            # a blank line ends a multi-line suggestion (the block is done)
            break
        indent = _width(_indent_of(line))
        if indent < base_indent:
            break  # dedent past the cursor's block: the suggestion wandered off
        if stripped in seen and stripped not in _REPEATABLE:
            break  # repeating an earlier line is the classic degenerate loop
        if stripped == following:
            break
        seen.add(stripped)
        kept.append(line)
    if repeats_recent_line and len(first) > 8 and at_line_start:
        # a whole-line suggestion that repeats a recent line verbatim is noise
        return ""
    return "\n".join(kept)


def _dedupe_suffix(text: str, suffix: str, line_prefix: str = "") -> str:
    """Remove the tail of the suggestion that the text after the cursor already provides."""
    rest_of_line = suffix.split("\n", 1)[0]
    if not rest_of_line.strip():
        return text
    first, sep, tail = text.partition("\n")
    # Longest tail of the suggestion's first line that the rest of the line starts with
    probe = rest_of_line.rstrip()
    for size in range(min(len(first), len(probe)), 0, -1):
        if first.endswith(probe[:size]) and (size == len(probe) or probe[:size].strip()):
            if size == len(probe) or not probe[:size].isalnum():
                stripped = first[: len(first) - size]
                # Only drop the overlap when the line is at least as balanced without it:
                # "print(len(" + "values)" + ")" needs its ")", "f(" + "x)" + ")" does not.
                if _imbalance(line_prefix + stripped + rest_of_line) <= _imbalance(line_prefix + first + rest_of_line):
                    first = stripped
                break
    # If the remaining line still has characters only in the suffix's closers, keep as is.
    if tail:
        # The rest of the cursor line stays after our insertion; a multi-line insertion
        # would push it to the last line, which is rarely what the user wants.
        return first
    return first + sep + tail


def _balance(text: str, request: CompletionRequest) -> str:
    """Drop closing brackets that close nothing and stop before a bracket that the suffix closes."""
    # Only quotes and brackets change the state below: the scans visit just those characters.
    line_prefix = request.prefix.rsplit("\n", 1)[-1]
    stack: list[str] = []
    in_string: str | None = None
    for ch in _QUOTES_AND_BRACKETS.findall(line_prefix):
        if in_string:
            if ch == in_string:
                in_string = None
            continue
        if ch in "\"'":
            in_string = ch
        elif ch in OPENERS:
            stack.append(ch)
        elif stack and stack[-1] == CLOSERS[ch]:
            stack.pop()
    closers_in_suffix = _closers_left_open(request.suffix.split("\n", 1)[0])
    quote: str | None = None
    for match in _QUOTES_AND_BRACKETS.finditer(text):
        ch = match.group()
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in OPENERS:
            stack.append(ch)
        else:
            cut = match.start()
            if not stack or stack[-1] != CLOSERS[ch]:
                return text[:cut]  # closes something that isn't open: the provider overshot
            if _suffix_closes(closers_in_suffix, stack) and "\n" not in text[:cut]:
                # the suffix already has this closer and those of every bracket still open around
                # it (an editor's auto-closed `]))`): let the suffix provide them
                return text[:cut]
            stack.pop()
    return text


def _closers_left_open(line: str) -> list[str]:
    """The closing brackets of `line` (the rest of the cursor's line) that close no bracket opened
    in it: those close brackets open before the cursor, innermost first."""
    stack: list[str] = []
    out: list[str] = []
    quote: str | None = None
    for ch in _QUOTES_AND_BRACKETS.findall(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in OPENERS:
            stack.append(ch)
        elif stack:
            stack.pop()
        else:
            out.append(ch)
    return out


def _suffix_closes(closers: list[str], stack: list[str]) -> bool:
    """Do `closers` close every bracket of `stack`, innermost first? Then a closer the suggestion
    types now would be one too many. With fewer closers (`f(g(|)`: one), which open bracket the
    suffix's closer belongs to is unknown, so the suggestion's own closers are kept until only
    as many brackets are open as the suffix closes."""
    if not closers or len(closers) < len(stack):
        return False
    return all(closers[j] == OPENERS[stack[-1 - j]] for j in range(len(stack)))


def _normalise_indent(text: str, request: CompletionRequest) -> str:
    if "\n" not in text:
        return text
    uses_tabs = "\n\t" in request.prefix and "\n    " not in request.prefix
    lines = text.split("\n")
    fixed = [lines[0]]
    for line in lines[1:]:
        indent = _indent_of(line)
        body = line[len(indent) :]
        if uses_tabs:
            indent = indent.replace("    ", "\t")
        else:
            indent = indent.replace("\t", "    ")
        fixed.append(indent + body)
    return "\n".join(fixed)


def postprocess(text: str, request: CompletionRequest) -> str | None:
    if not text:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    current_line_prefix = request.prefix.rsplit("\n", 1)[-1]
    text = _strip_echo(text, current_line_prefix)
    if not current_line_prefix.strip():
        # at the start of a line the provider may repeat the indentation we already have
        if text.startswith(current_line_prefix) and current_line_prefix:
            text = text[len(current_line_prefix) :]
    text = text.rstrip()
    # leading newline: the provider skipped to the next line; keep it only when the cursor line
    # already has content (then it is a real "next line" suggestion)
    if text.startswith("\n") and not current_line_prefix.strip():
        text = text.lstrip("\n")
        if not text.strip():
            return None
    text = _normalise_indent(text, request)
    text = _cut_lines(text, request, max(1, request.max_lines))
    text = _dedupe_suffix(text, request.suffix, current_line_prefix)
    text = _balance(text, request).rstrip()
    if not text.strip():
        return None
    return text


def first_shown(candidates: Iterable[Candidate], request: CompletionRequest) -> tuple[str, Candidate] | None:
    """What the server shows for a provider's answer: the first candidate whose text survives
    `postprocess`, cleaned, and that candidate (its provider, confidence, source); None when none
    does. The replay, the benchmarks and the simulated user take the same one."""
    for candidate in candidates:
        text = postprocess(candidate.text, request)
        if text:
            return text, candidate
    return None
